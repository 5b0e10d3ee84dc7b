"""A small typed client for the HTTP API, on httpx. Copy it or import it.

    from app.client import DemeterClient

    with DemeterClient.connect("http://127.0.0.1:8000", api_key="dmt_...") as demeter:
        accepted = demeter.upload_photo(Path("bench.jpg").read_bytes(), filename="bench.jpg", bench="B-12",
                                        idempotency_key="bench-12-2026-11-30")
        status = demeter.wait_for_photo(accepted.photo_id)
        print(status.status, status.total_count)

Every answer is parsed into the API's own response models (app.api.schemas); an error answer
raises `ApiError` with its status, code and message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from types import TracebackType
from typing import Any
from uuid import UUID

import httpx

from app.api.schemas import (
    BatchPage,
    MovementPage,
    PhotoAccepted,
    PhotoDetections,
    PhotoPage,
    PhotoStatus,
    PhotoSummary,
)

FINAL_STATES = ("completed", "warning", "failed")


class ApiError(Exception):
    """An error answer: `status` (HTTP), `code` (stable, machine-readable), `message`, `headers`."""

    def __init__(self, status: int, code: str, message: str, headers: httpx.Headers) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.headers = status, code, message, headers


class DemeterClient:
    """The API at `http`'s base URL, authenticated with `api_key` (a bearer token)."""

    def __init__(self, http: httpx.Client, api_key: str) -> None:
        self.http = http
        self.auth = {"Authorization": f"Bearer {api_key}"}

    @classmethod
    def connect(cls, base_url: str, api_key: str, timeout: float = 30.0) -> DemeterClient:
        return cls(httpx.Client(base_url=base_url, timeout=timeout), api_key)

    def __enter__(self) -> DemeterClient:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request with the key; raises ApiError for a 4xx or 5xx."""
        headers = {**self.auth, **kwargs.pop("headers", {})}
        response = self.http.request(method, path, headers=headers, **kwargs)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                code, message = str(error["code"]), str(error["message"])
            except (ValueError, KeyError, TypeError):
                code, message = f"http_{response.status_code}", response.text[:200]
            raise ApiError(response.status_code, code, message, response.headers)
        return response

    def upload_photo(self, data: bytes, *, filename: str = "photo.jpg", bench: str | None = None,
                     notes: str | None = None, correlation_id: str | None = None,
                     idempotency_key: str | None = None) -> PhotoAccepted:
        """POST /api/v1/photos (scope photos:write). Send an idempotency_key to make retries safe."""
        headers = {}
        if correlation_id:
            headers["X-Correlation-ID"] = correlation_id
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        form = {key: value for key, value in {"bench": bench, "notes": notes}.items() if value is not None}
        response = self.request("POST", "/api/v1/photos", files={"file": (filename, data)}, data=form,
                                headers=headers)
        return PhotoAccepted.model_validate(response.json())

    def get_photo(self, photo_id: UUID | str) -> PhotoStatus:
        return PhotoStatus.model_validate(self.request("GET", f"/api/v1/photos/{photo_id}").json())

    def wait_for_photo(self, photo_id: UUID | str, timeout: float = 300.0, poll: float = 0.5) -> PhotoStatus:
        """Poll until the photo is completed, warning or failed; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (status := self.get_photo(photo_id)).status not in FINAL_STATES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"photo {photo_id} still {status.status} after {timeout} s")
            time.sleep(poll)
        return status

    def annotated_image(self, photo_id: UUID | str) -> bytes:
        """The annotated JPEG (ApiError 404 `not_rendered` until it is drawn)."""
        return self.request("GET", f"/api/v1/photos/{photo_id}/annotated").content

    def detections(self, photo_id: UUID | str) -> PhotoDetections:
        return PhotoDetections.model_validate(self.request("GET", f"/api/v1/photos/{photo_id}/detections").json())

    def detections_coco(self, photo_id: UUID | str) -> dict[str, Any]:
        """COCO JSON of one photo (images, categories, annotations), as Label Studio and CVAT import it."""
        response = self.request("GET", f"/api/v1/photos/{photo_id}/detections", params={"format": "coco"})
        body: dict[str, Any] = response.json()
        return body

    def list_photos(self, *, status: str | None = None, created_after: datetime | None = None,
                    created_before: datetime | None = None, correlation_id: str | None = None,
                    bench: str | None = None, limit: int = 50, cursor: str | None = None) -> PhotoPage:
        params = _params(status=status, created_after=created_after, created_before=created_before,
                         correlation_id=correlation_id, bench=bench, limit=limit, cursor=cursor)
        return PhotoPage.model_validate(self.request("GET", "/api/v1/photos", params=params).json())

    def iter_photos(self, **filters: Any) -> Iterator[PhotoSummary]:
        """Every photo matching the filters, newest first, page by page."""
        cursor = None
        while True:
            page = self.list_photos(**filters, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def stock_batches(self, *, limit: int = 50, cursor: str | None = None, **filters: Any) -> BatchPage:
        """GET /api/v1/stock/batches (scope stock:read); filters: photo_id, container_type, created_after/before."""
        response = self.request("GET", "/api/v1/stock/batches", params=_params(limit=limit, cursor=cursor, **filters))
        return BatchPage.model_validate(response.json())

    def stock_movements(self, *, limit: int = 50, cursor: str | None = None, **filters: Any) -> MovementPage:
        """GET /api/v1/stock/movements (scope stock:read); filters as for batches, and movement_type."""
        response = self.request("GET", "/api/v1/stock/movements",
                                params=_params(limit=limit, cursor=cursor, **filters))
        return MovementPage.model_validate(response.json())


def _params(**values: Any) -> dict[str, str]:
    return {key: value.isoformat() if isinstance(value, datetime) else str(value)
            for key, value in values.items() if value is not None}
