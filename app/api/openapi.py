"""The OpenAPI document as clients should read it: clean schema names, the real 422 body.

FastAPI names a multipart body after its route (`Body_upload_photo_api_v1_photos_post`) and
documents 422 with its own `HTTPValidationError`, which this API never sends (every error,
validation included, is an `ErrorBody`; see app/api/errors.py). Both are corrected here.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

RENAMES = {"Body_upload_photo_api_v1_photos_post": "PhotoUpload"}
UNUSED = ("HTTPValidationError", "ValidationError")
_ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


def tidy(schema: dict[str, Any]) -> dict[str, Any]:
    """The document with RENAMES applied and every 422 answer described by ErrorBody."""
    text = json.dumps(schema)
    for old, new in RENAMES.items():
        text = text.replace(f'"#/components/schemas/{old}"', f'"#/components/schemas/{new}"')
    tidied: dict[str, Any] = json.loads(text)
    components = tidied.get("components", {}).get("schemas", {})
    for old, new in RENAMES.items():
        if old in components:
            components[new] = components.pop(old)
    for operations in tidied.get("paths", {}).values():
        for operation in operations.values():
            invalid = operation.get("responses", {}).get("422")
            if invalid is not None:
                invalid["description"] = "the request does not match the API (`details` lists each problem)"
                invalid["content"] = {"application/json": {"schema": _ERROR_BODY}}
    for name in UNUSED:
        components.pop(name, None)
    return tidied


def install(app: FastAPI) -> None:
    """Serve the tidied document at /openapi.json (built once, on first request)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if not getattr(app.state, "openapi_tidied", False):
            app.openapi_schema = tidy(generate())
            app.state.openapi_tidied = True
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
