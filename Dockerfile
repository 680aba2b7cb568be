# Image for the service's own processes (simulator, adapters, streams workers, WebSocket server).
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
COPY client ./client
COPY shfeeds_cli ./shfeeds_cli
RUN pip install --no-cache-dir .
ENTRYPOINT ["shfeeds"]
