"""The API's OpenAPI document, made as precise as the handlers are.

The handlers take their path parameters as plain strings and parse them
themselves (so a malformed one gets this API's own 400, not FastAPI's), which
leaves FastAPI's generated schema saying "any string". This fills in what the
handlers actually accept, the bodies they read by hand, and the error shape
every 4xx carries, so clients and schemathesis see the real contract.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

HEX32 = "^[0-9a-fA-F]{64}$"

PARAMETERS: dict[str, dict[str, Any]] = {
    "block_hash": {"type": "string", "pattern": HEX32, "description": "block hash, display (reversed) hex"},
    "txid": {"type": "string", "pattern": HEX32, "description": "transaction id, display (reversed) hex"},
    "outpoint": {"type": "string", "pattern": "^[0-9a-fA-F]{64}:[0-9]{1,10}$", "description": "TXID:VOUT"},
    "height": {"type": "string", "pattern": "^[0-9]{1,10}$"},
    "start_height": {"type": "string", "pattern": "^[0-9]{1,10}$"},
    "claim_script": {"type": "string", "pattern": "^([0-9a-fA-F]{2}){1,520}$", "description": "scriptPubKey, hex"},
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string", "description": "stable machine-readable reason"},
        "message": {"type": "string"},
    },
}

REQUEST_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("/tx", "post"): {
        "required": True,
        "content": {
            "text/plain": {
                "schema": {"type": "string", "pattern": "^([0-9a-fA-F]{2})+$", "description": "raw transaction, hex"}
            }
        },
    },
}


def refine(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with parameter patterns, hand-read bodies and the error shape."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            for param in op.get("parameters", []):
                refined = PARAMETERS.get(param.get("name", ""))
                if refined is not None:
                    param["schema"] = {**refined, "title": param.get("schema", {}).get("title", param["name"])}
            body = REQUEST_BODIES.get((path, method))
            if body is not None:
                op["requestBody"] = body
            responses = op.setdefault("responses", {})
            # FastAPI's own 422 never reaches a client: validation errors are
            # answered 400 with the shape below.
            auto = responses.get("422")
            if auto is not None and auto.get("description") == "Validation Error":
                del responses["422"]
            for status, entry in responses.items():
                if status[:1] in ("4", "5"):
                    entry["content"] = {"application/json": {"schema": error_ref}}
            responses.setdefault(
                "4XX", {"description": "refused", "content": {"application/json": {"schema": error_ref}}}
            )
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


def install(app: FastAPI) -> None:
    """Serve the refined document at /openapi.json (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = refine(
                get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
