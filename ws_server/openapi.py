"""The OpenAPI 3.1 document of the plain HTTP side, served at ``/openapi.json``: feed queries, GTFS-Realtime,
static GTFS, record schemas and health. Built from the same tables the endpoints use (query parameters,
error codes, limits), so the document cannot drift from them."""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

from schemas import TIERS

from .agreement_routes import ERRORS as PLATFORM_ERRORS
from .http_query import DEFAULT_LIMIT, ERRORS, LIST_PARAMS, MAX_LIMIT
from .protocol.messages import MAX_LIST

_ERROR = {"$ref": "#/components/responses/Error"}
_NOT_MODIFIED = {"$ref": "#/components/responses/NotModified"}
_VALIDATORS = {
    "ETag": {"$ref": "#/components/headers/ETag"},
    "Last-Modified": {"$ref": "#/components/headers/LastModified"},
}
_CONDITIONAL = [
    {"$ref": "#/components/parameters/IfNoneMatch"},
    {"$ref": "#/components/parameters/IfModifiedSince"},
]
_KEYED: list[dict[str, list[str]]] = [
    {},
    {"bearer": []},
    {"apiKeyHeader": []},
    {"apiKeyQuery": []},
]  # {}: no key, the public tier


def _query(name: str, description: str, schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "description": description}
    param["schema"] = schema
    if example is not None:
        param["example"] = example
    return param


_LIST_PARAMS: dict[str, tuple[str, str | None]] = {
    "district": ("one or more (at most 16) districts: Chinese name, English name or adcode", "Huangpu"),
    "routes": (f"route ids (at most {MAX_LIST}), compared as strings", "71,M2"),
    "ids": (f"entity ids (at most {MAX_LIST})", None),
}


def _list_param(name: str) -> dict[str, Any]:
    """A filter list of the WebSocket's ``Filter``, comma-separated (one the table does not know yet too)."""
    what, example = _LIST_PARAMS.get(name, (f"the WebSocket filter's `{name}` list (at most {MAX_LIST})", None))
    return _query(name, f"comma-separated: {what}", {"type": "string", "minLength": 1}, example)


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _ERROR for status in statuses}


def _error_codes_table() -> str:
    rows = [f"- `{code}` ({status}): {meaning}" for code, (status, meaning) in ERRORS.items()]
    return "Error codes (`error.code`):\n\n" + "\n".join(rows)


def _op(op_id: str, summary: str, params: list[tuple[str, str, bool]], statuses: tuple[int, ...],
        *, keyed: bool = False, path_param: str | None = None, csv: bool = False) -> dict[str, Any]:  # fmt: skip
    """One endpoint of ``ws_server.agreement_routes``: its parameters (in the query string: the port reads no
    request body) and JSON answers."""
    parameters = [_query(n, d, {"type": "string"}) | {"required": r} for n, d, r in params]
    if path_param:
        parameters.insert(0, {"name": path_param, "in": "path", "required": True, "schema": {"type": "string"}})
    content: dict[str, Any] = {"application/json": {"schema": {}}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    responses: dict[str, Any] = {str(statuses[0]): {"description": "Done", "content": content}}
    responses |= _errors(*statuses[1:])
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "parameters": parameters, "responses": responses}
    if keyed:
        op["security"] = _KEYED[1:]
    return op


def _platform_paths() -> dict[str, Any]:
    """Agreements, usage and feedback (docs/agreements.md)."""
    usage_params = [("day", "YYYY-MM-DD, Shanghai time (default today)", False), ("format", "json or csv", False)]
    paths = {
        "/v1/agreements": {"post": _op("applyForKey", "Apply for a registered key (issued at once) or a licensed one",
            [("tier", "registered or licensed", True), ("applicant", "who is asking, with a contact", True),
             ("purpose", "licensed: what the data is for", False), ("feeds", "licensed: comma-separated", False),
             ("term_days", "licensed: the term asked for", False), ("allow_ips", "comma-separated CIDRs", False)],
            (201, 400, 503))},
        "/v1/agreements/{id}": {"get": _op("claimKey", "A request's state, and its key once, when approved",
            [("token", "the claim token given at application", True)], (200, 404, 503), path_param="id")},
        "/v1/usage": {"get": _op("ownUsage", "The calling key's usage per feed", usage_params, (200, 400, 401),
                                 keyed=True, csv=True)},
        "/v1/feedback": {"post": _op("reportProblem", "Report a wrong record or a broken feed",
            [("feed", "the feed", True), ("entity_id", "the record's id", False), ("problem", "what is wrong", True)],
            (201, 400, 429))},
        "/v1/feedback/{id}": {"get": _op("reportStatus", "A report's status and reply, for its reporter",
            [("token", "the token given with the report", True)], (200, 404), path_param="id")},
        "/v1/operator/agreements": {"get": _op("listAgreements", "Every agreement (operator key)", [],
                                               (200, 401, 403), keyed=True)},
        "/v1/operator/agreements/{id}": {"get": _op("showAgreement", "One agreement with its history (operator key)",
                                                    [], (200, 401, 403, 404), keyed=True, path_param="id")},
        "/v1/operator/agreements/{id}/{action}": {"post": _op("decideAgreement",
            "approve, reject or withdraw (operator key; logged to audit.operator)",
            [("reason", "said to the applicant", False), ("expires_at", "approve: epoch ms", False)],
            (200, 401, 403, 404, 409), keyed=True, path_param="id")},
        "/v1/operator/usage": {"get": _op("usage", "Usage per key, agreement and feed (operator key)",
            [*usage_params, ("key", "a key id", False), ("agreement", "an agreement id", False)],
            (200, 401, 403), keyed=True, csv=True)},
        "/v1/operator/feedback": {"get": _op("listReports", "Feedback reports (operator key)",
            [("feed", "", False), ("owner", "publisher id", False), ("status", "open, confirmed, ...", False)],
            (200, 401, 403), keyed=True)},
        "/v1/operator/feedback/{id}": {"post": _op("answerReport", "Set a report's status and reply (operator key)",
            [("status", "confirmed, fixed or rejected", True), ("reply", "read by the reporter", False)],
            (200, 401, 403, 404, 409), keyed=True, path_param="id")},
    }  # fmt: skip
    action = {"name": "action", "in": "path", "required": True,
              "schema": {"type": "string", "enum": ["approve", "reject", "withdraw"]}}  # fmt: skip
    paths["/v1/operator/agreements/{id}/{action}"]["post"]["parameters"].insert(1, action)
    return paths


def document() -> dict[str, Any]:
    tier_list = ", ".join(TIERS)
    feed_query = {
        "get": {
            "operationId": "queryFeed",
            "summary": "Current state of a feed, filtered, paged",
            "description": (
                "The entities a WebSocket subscription with the same filter would hold after its snapshot, "
                "at the tier of the key (no key: public), with the same record schemas "
                "(`/schemas/{feed}/{tier}.json`). Use at most one of bbox, near, district; routes and ids "
                "narrow further. Coordinates are GCJ-02 unless `crs=wgs84` (licensed and operator tiers). "
                "Pages are in entity id order; follow `next_cursor` until it is null.\n\n" + _error_codes_table()
            ),
            "security": _KEYED,
            "parameters": [
                {
                    "name": "feed",
                    "in": "path",
                    "required": True,
                    "description": "A feed a WebSocket client can subscribe to (for example bus, metro, parking, "
                    "charging, scenic); any other name gets 404 `unknown_feed`.",
                    "schema": {"type": "string", "minLength": 1},
                    "example": "parking",
                },
                _query(
                    "bbox",
                    "min_lng,min_lat,max_lng,max_lat in the request's crs",
                    {"type": "string", "pattern": r"^[^,]+,[^,]+,[^,]+,[^,]+$"},
                    "121.46,31.22,121.49,31.24",
                ),
                _query(
                    "near",
                    "lng,lat,radius in metres (at most 50000), in the request's crs",
                    {"type": "string", "pattern": r"^[^,]+,[^,]+,[^,]+$"},
                    "121.4737,31.2304,800",
                ),
                *(_list_param(name) for name in LIST_PARAMS),
                _query(
                    "crs",
                    "coordinate system of the filter and of the records; wgs84 for licensed and operator keys",
                    {"type": "string", "enum": ["gcj02", "wgs84"], "default": "gcj02"},
                ),
                _query(
                    "limit",
                    "entities per page",
                    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                ),
                _query("cursor", "`next_cursor` of the previous page", {"type": "string"}),
                *_CONDITIONAL,
            ],
            "responses": {
                "200": {
                    "description": "One page of the feed's current records",
                    "headers": {
                        "ETag": {"$ref": "#/components/headers/ETag"},
                        "X-Shfeeds-Tier": {"$ref": "#/components/headers/Tier"},
                    },
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FeedPage"}}},
                },
                "304": _NOT_MODIFIED,
                **_errors(400, 401, 403, 404, 429, 503),
            },
        }
    }
    gtfs_rt = {
        "get": {
            "operationId": "vehiclePositions",
            "summary": "GTFS-Realtime VehiclePositions of the tier's buses and metro trains",
            "description": (
                "A FULL_DATASET FeedMessage; positions in WGS-84 for every tier. Entities past their "
                "`expires_at` (or marked stale) are left out. Rebuilt at most once a second; ETag and "
                "Last-Modified change only when the entities do. gzip when Accept-Encoding allows it."
            ),
            "security": _KEYED,
            "parameters": [
                _query(
                    "format",
                    "pb: the protobuf FeedMessage; json: the same message as JSON (for debugging)",
                    {"type": "string", "enum": ["pb", "json"], "default": "pb"},
                ),
                *_CONDITIONAL,
            ],
            "responses": {
                "200": {
                    "description": "The feed",
                    "headers": {**_VALIDATORS, "X-Shfeeds-Tier": {"$ref": "#/components/headers/Tier"}},
                    "content": {
                        "application/x-protobuf": {
                            "schema": {"type": "string", "contentMediaType": "application/x-protobuf"}
                        },
                        "application/json": {"schema": {"type": "object"}},
                    },
                },
                "304": _NOT_MODIFIED,
                "400": {"$ref": "#/components/responses/PlainError"},
                "401": {"$ref": "#/components/responses/PlainError"},
                "429": {"$ref": "#/components/responses/PlainError"},
                "503": {"$ref": "#/components/responses/PlainError"},
            },
        }
    }
    static_gtfs = {
        "get": {
            "operationId": "staticGtfs",
            "summary": "Static GTFS of the published bus and metro network",
            "parameters": [{"$ref": "#/components/parameters/IfNoneMatch"}],
            "responses": {
                "200": {
                    "description": "The GTFS zip",
                    "headers": {"ETag": {"$ref": "#/components/headers/ETag"}},
                    "content": {
                        "application/zip": {"schema": {"type": "string", "contentMediaType": "application/zip"}}
                    },
                },
                "304": _NOT_MODIFIED,
            },
        }
    }
    schema_json = {"application/schema+json": {"schema": {"type": "object"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Shanghai Open Feeds HTTP API",
            "version": "1",
            "description": (
                "Plain HTTP on the WebSocket port (docs/http.md). Keys and tiers as on the WebSocket "
                f"(tiers: {tier_list}); the live protocol itself is in docs/asyncapi.yaml."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": {
            "/v1/feeds/{feed}": feed_query,
            "/gtfs-rt/vehicle-positions.pb": gtfs_rt,
            "/gtfs/static.zip": static_gtfs,
            "/schemas/records.json": {
                "get": {
                    "operationId": "recordSchemas",
                    "summary": "JSON Schemas of every feed's records, per tier",
                    "responses": {"200": {"description": "feed → tier → JSON Schema", "content": schema_json}},
                }
            },
            "/schemas/{feed}/{tier}.json": {
                "get": {
                    "operationId": "recordSchema",
                    "summary": "JSON Schema of one feed's records at one tier",
                    "parameters": [
                        {"name": "feed", "in": "path", "required": True, "schema": {"type": "string"}},
                        {
                            "name": "tier",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": list(TIERS)},
                        },
                    ],
                    "responses": {
                        "200": {"description": "The schema", "content": schema_json},
                        "404": {"$ref": "#/components/responses/PlainError"},
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "The node's figures (connections, streams, sources, latency)",
                    "responses": {
                        "200": {
                            "description": "Figures",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
                        }
                    },
                }
            },
            **_platform_paths(),
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "key"},
            },
            "parameters": {
                "IfNoneMatch": {
                    "name": "If-None-Match",
                    "in": "header",
                    "required": False,
                    "description": "ETag(s) the client holds: 304 when one matches",
                    "schema": {"type": "string"},
                },
                "IfModifiedSince": {
                    "name": "If-Modified-Since",
                    "in": "header",
                    "required": False,
                    "description": "HTTP date: 304 when the content has not changed since (ignored with If-None-Match)",
                    "schema": {"type": "string"},
                },
            },
            "headers": {
                "ETag": {"description": "Entity tag of the representation", "schema": {"type": "string"}},
                "LastModified": {"description": "When the content last changed", "schema": {"type": "string"}},
                "Tier": {
                    "description": "The access tier that answered",
                    "schema": {"type": "string", "enum": list(TIERS)},
                },
            },
            "responses": {
                "NotModified": {
                    "description": "The client's copy is current",
                    "headers": {"ETag": {"$ref": "#/components/headers/ETag"}},
                },
                "Error": {
                    "description": "A refused request",
                    "headers": {"Retry-After": {"description": "seconds (with 429)", "schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
                "PlainError": {
                    "description": "A refused request, as a line of text",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
            },
            "schemas": {
                "FeedPage": {
                    "type": "object",
                    "required": ["feed", "tier", "crs", "total", "count", "next_cursor", "records"],
                    "properties": {
                        "feed": {"type": "string"},
                        "tier": {"type": "string", "enum": list(TIERS)},
                        "crs": {"type": "string", "enum": ["gcj02", "wgs84"]},
                        "total": {"type": "integer", "minimum": 0, "description": "entities matching, all pages"},
                        "count": {"type": "integer", "minimum": 0, "description": "entities on this page"},
                        "next_cursor": {"type": ["string", "null"], "description": "null on the last page"},
                        "records": {
                            "type": "array",
                            "description": "Records as the WebSocket delivers them: /schemas/{feed}/{tier}.json",
                            "items": {"$ref": "#/components/schemas/Record"},
                        },
                    },
                },
                "Record": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {"id": {"type": "string"}, "state": {"type": "string", "enum": ["stale"]}},
                    "additionalProperties": True,
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string", "enum": list(dict.fromkeys([*ERRORS, *PLATFORM_ERRORS]))},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
                "Health": {
                    "type": "object",
                    "properties": {"node": {"type": "string"}, "connections": {"type": "integer"}},
                },
            },
        },
    }


@cache
def openapi_body() -> bytes:
    return orjson.dumps(document())
