# Image for the service's own processes (simulator, adapters, streams workers, WebSocket server).
# The map page's web-map library comes from the npm registry, pinned by web/package-lock.json.
FROM node:20-slim AS map-assets
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY settings ./settings
COPY schemas ./schemas
COPY kafka_admin ./kafka_admin
COPY geo ./geo
COPY adapters ./adapters
COPY streams ./streams
COPY ws_server ./ws_server
COPY --from=map-assets /web/node_modules/maplibre-gl/dist/maplibre-gl.mjs /web/node_modules/maplibre-gl/dist/maplibre-gl-worker.mjs /web/node_modules/maplibre-gl/dist/maplibre-gl.css /web/node_modules/maplibre-gl/LICENSE.txt ./ws_server/static/vendor/
COPY client ./client
COPY catalog ./catalog
COPY control_plane ./control_plane
COPY access ./access
COPY agreements ./agreements
COPY archive ./archive
COPY replay ./replay
COPY shfeeds_cli ./shfeeds_cli
RUN pip install --no-cache-dir .
ENTRYPOINT ["shfeeds"]
