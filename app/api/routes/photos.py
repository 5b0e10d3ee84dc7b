"""Photos: upload one, follow its processing, fetch its annotated image."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

import anyio
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import CorrelationIdDep, MetadataDep, PhotoDep, SettingsDep, UploadDep, public_url
from app.api.errors import ApiError
from app.api.pagination import MAX_PAGE, NO_NUL, InvalidCursor, encode_cursor
from app.api.queries import PhotoFilters, find_by_idempotency_key, list_photos, photo_detections
from app.api.schemas import (
    ErrorBody,
    PhotoAccepted,
    PhotoDetections,
    PhotoPage,
    PhotoStatus,
    PhotoSummary,
    SessionState,
    UtcDatetime,
)
from app.api.security import PhotosReader, Uploader
from app.api.uploads import request_fingerprint
from app.api.views import coco_document, detections_view, photo_status
from app.apikeys import Principal
from app.db.models import Photo
from app.db.session import db_session
from app.errors import (
    BrokerUnavailable,
    DatabaseUnavailable,
    InvalidImage,
    InvalidRegion,
    ObjectMissing,
    StorageUnavailable,
)
from app.intake import (
    DuplicatePhoto,
    DuplicatePolicy,
    IdempotencyKeyTaken,
    Submission,
    submit_photo,
)
from app.storage import get_storage

router = APIRouter(prefix="/api/v1/photos", tags=["photos"])

RETRY_AFTER = {"Retry-After": "30"}
AUTH_ERRORS = (401, 403)
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (*AUTH_ERRORS, 404, 503)}
_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (*AUTH_ERRORS, 409, 413, 415, 422, 429, 503)
}
_UPLOAD_ERRORS[409]["description"] = (
    "the Idempotency-Key was used with another request, its first request is still in progress, "
    "or the same photo was uploaded within DUPLICATE_UPLOAD_WINDOW_SECONDS"
)

IdempotencyKeyHeader = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
    description="Makes retries safe: the same key with the same request answers the first photo's 202 again "
                "(nothing new is stored or counted); the same key with another request is 409. Scoped to "
                "the key's tenant, kept as long as the photo.",
)]
CorrelationHeader = Annotated[str | None, Header(
    alias="X-Correlation-ID",
    description="Your id for this photo (1-64 of A-Z a-z 0-9 . _ : -), carried through every log line and "
                "echoed on the answer; a fresh one is made when it is absent or malformed.",
)]


@router.post("", status_code=202, response_model=PhotoAccepted, responses=_UPLOAD_ERRORS)
async def upload_photo(
    request: Request,
    response: Response,
    principal: Uploader,
    settings: SettingsDep,
    upload: UploadDep,
    metadata: MetadataDep,
    cid: CorrelationIdDep,
    idempotency_key: IdempotencyKeyHeader = None,
    x_correlation_id: CorrelationHeader = None,  # read by the middleware; declared for the schema
) -> PhotoAccepted:
    """Store the photo and queue its processing; answers before any model runs. Scope `photos:write`."""
    fingerprint = request_fingerprint(upload.data, upload.filename, metadata)
    if idempotency_key is not None:
        earlier = await run_in_threadpool(_earlier_upload, principal, idempotency_key)
        if earlier is not None:
            return _replay(earlier, fingerprint, request, settings, response)
    try:
        submission = await anyio.to_thread.run_sync(
            lambda: submit_photo(upload.data, filename=upload.filename, correlation_id=cid, metadata=metadata,
                                 tenant=principal.tenant, idempotency_key=idempotency_key,
                                 request_sha256=fingerprint, duplicates=DuplicatePolicy.from_settings(settings)),
            limiter=request.app.state.upload_slots,
        )
    except IdempotencyKeyTaken as exc:
        # A concurrent twin took the key between our look-up and our insert.
        assert idempotency_key is not None
        earlier = await run_in_threadpool(_earlier_upload, principal, idempotency_key)
        if earlier is None:
            raise ApiError(409, "idempotency_request_in_progress", "a request with this Idempotency-Key is in "
                           "progress; try again in a moment", headers={"Retry-After": "1"}) from exc
        return _replay(earlier, fingerprint, request, settings, response)
    except DuplicatePhoto as exc:
        raise ApiError(409, "duplicate_photo", str(exc)) from exc
    except InvalidRegion as exc:
        raise ApiError(422, "invalid_regions", str(exc)) from exc
    except InvalidImage as exc:
        raise ApiError(422, "invalid_image", str(exc)) from exc
    except BrokerUnavailable as exc:
        raise ApiError(503, "broker_unavailable", "the task queue is unreachable; nothing was kept, try again later",
                       headers=RETRY_AFTER) from exc
    except StorageUnavailable as exc:
        raise ApiError(503, "storage_unavailable", "the photo store is unreachable; try again later",
                       headers=RETRY_AFTER) from exc
    except DatabaseUnavailable as exc:
        raise ApiError(503, "database_unavailable", "the database is unreachable; try again later",
                       headers=RETRY_AFTER) from exc
    return _accepted(submission, request, settings, response)


def _accepted(submission: Submission, request: Request, settings: SettingsDep, response: Response) -> PhotoAccepted:
    status_url = public_url(request, settings, "get_photo", photo_id=submission.photo_uuid)
    response.headers["Location"] = status_url
    return PhotoAccepted(
        photo_id=UUID(submission.photo_uuid),
        session_id=UUID(submission.session_id),
        task_id=submission.task_id,
        status_url=status_url,
        correlation_id=submission.correlation_id,
        duplicate_of=UUID(submission.duplicate_of) if submission.duplicate_of else None,
    )


def _earlier_upload(principal: Principal, key: str) -> Photo | None:
    with db_session() as db:
        return find_by_idempotency_key(db, tenant=principal.tenant, key=key)


def _replay(photo: Photo, fingerprint: str, request: Request, settings: SettingsDep,
            response: Response) -> PhotoAccepted:
    """The first answer again for the same request; 409 for another request, or while the first is still queuing."""
    if photo.request_sha256 != fingerprint:
        raise ApiError(409, "idempotency_key_reused", "this Idempotency-Key was used with another request "
                       f"(photo {photo.uuid}); use a new key for a new photo")
    if photo.session.task_id is None:
        raise ApiError(409, "idempotency_request_in_progress", "a request with this Idempotency-Key is in "
                       "progress; try again in a moment", headers={"Retry-After": "1"})
    response.headers["Idempotent-Replayed"] = "true"
    submission = Submission(photo.id, str(photo.uuid), str(photo.session.uuid), photo.session.task_id,
                            photo.correlation_id or "", "",
                            str(photo.duplicate_of) if photo.duplicate_of else None)
    return _accepted(submission, request, settings, response)


@router.get("", response_model=PhotoPage, responses={**_ERRORS, 422: {"model": ErrorBody}})
def list_photos_route(
    request: Request,
    settings: SettingsDep,
    principal: PhotosReader,
    status: SessionState | None = None,
    created_after: Annotated[UtcDatetime | None, Query(description="inclusive, ISO 8601 with a zone")] = None,
    created_before: Annotated[UtcDatetime | None, Query(description="exclusive, ISO 8601 with a zone")] = None,
    correlation_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._:-]{1,64}$")] = None,
    bench: Annotated[str | None, Query(max_length=64, pattern=NO_NUL,
                                       description="the `bench` form field of the upload")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page")] = None,
) -> PhotoPage:
    """The key's tenant's photos, newest first, filtered; page with `cursor`. Scope `photos:read`."""
    filters = PhotoFilters(tenant=None if principal.all_tenants else principal.tenant, status=status,
                           created_after=created_after, created_before=created_before,
                           correlation_id=correlation_id, bench=bench)
    try:
        with db_session() as db:
            rows = list_photos(db, filters=filters, limit=limit, cursor=cursor)
    except InvalidCursor as exc:
        raise ApiError(422, "invalid_cursor", str(exc)) from exc
    items = [
        PhotoSummary(
            photo_id=photo.uuid, session_id=session.uuid, status=session.status,  # type: ignore[arg-type]
            created_at=photo.created_at, finished_at=session.finished_at, correlation_id=photo.correlation_id,
            filename=photo.original_filename, metadata=photo.metadata_json or {}, total_count=session.total_count,
            duplicate_of=photo.duplicate_of,
            status_url=public_url(request, settings, "get_photo", photo_id=str(photo.uuid)),
        )
        for photo, session in rows
    ]
    last = rows[-1][0] if len(rows) == limit else None
    return PhotoPage(items=items, next_cursor=encode_cursor(last.created_at, last.id) if last else None)


@router.get("/{photo_id}", response_model=PhotoStatus, responses=_ERRORS, name="get_photo")
def get_photo(request: Request, settings: SettingsDep, photo: PhotoDep) -> PhotoStatus:
    """Status, progress, per-region counts and timings of one photo. Scope `photos:read`."""
    session = photo.session

    def url(name: str, key: str | None) -> str | None:
        return public_url(request, settings, name, photo_id=str(photo.uuid)) if key else None

    return photo_status(
        photo,
        annotated_url=url("get_annotated", session.annotated_key),
        thumbnail_url=url("get_thumbnail", session.thumbnail_key),
    )


@router.get("/{photo_id}/detections", response_model=PhotoDetections, name="get_detections",
            responses={**_ERRORS, 200: {"content": {"application/json": {}}, "description":
                       "`format=json`: PhotoDetections; `format=coco`: a COCO JSON document (images, categories, "
                       "annotations) that Label Studio's and CVAT's COCO importers read"}})
def get_detections(photo: PhotoDep, format: Literal["json", "coco"] = "json") -> Any:
    """Every plant found on the photo, by region, as JSON or COCO. Scope `photos:read`."""
    with db_session() as db:
        found = photo_detections(db, session_id=photo.session.id)
    view = detections_view(photo, found)
    if format == "coco":
        return JSONResponse(coco_document(view, photo.original_filename))  # its own shape, not PhotoDetections
    return view


_JPEG = {200: {"content": {"image/jpeg": {}}, "description": "a JPEG image"}, **_ERRORS}


@router.get("/{photo_id}/annotated", response_class=Response, responses=_JPEG, name="get_annotated")
def get_annotated(photo: PhotoDep) -> Response:
    """The photo with its regions and plants drawn on it (404 until it is rendered). Scope `photos:read`."""
    return _stored_jpeg(photo.session.annotated_key, "annotated image")


@router.get("/{photo_id}/thumbnail", response_class=Response, responses=_JPEG, name="get_thumbnail")
def get_thumbnail(photo: PhotoDep) -> Response:
    """A small copy of the annotated image (404 until it is rendered). Scope `photos:read`."""
    return _stored_jpeg(photo.session.thumbnail_key, "thumbnail")


def _stored_jpeg(key: str | None, what: str) -> Response:
    if key is None:
        raise ApiError(404, "not_rendered", f"the {what} has not been rendered yet")
    try:
        data = get_storage().get(key)
    except ObjectMissing as exc:
        raise ApiError(404, "not_rendered", f"the {what} is not in the store") from exc
    except StorageUnavailable as exc:
        raise ApiError(503, "storage_unavailable", "the photo store is unreachable", headers=RETRY_AFTER) from exc
    # A rendered image never changes (a second rendering writes the same picture under the same key).
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})
