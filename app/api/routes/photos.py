"""Photos: upload one, follow its processing, fetch its annotated image."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import CorrelationIdDep, MetadataDep, PhotoDep, UploadDep
from app.api.errors import ApiError
from app.api.schemas import ErrorBody, PhotoAccepted, PhotoStatus
from app.api.views import photo_status
from app.errors import (
    BrokerUnavailable,
    DatabaseUnavailable,
    InvalidImage,
    InvalidRegion,
    ObjectMissing,
    StorageUnavailable,
)
from app.intake import submit_photo
from app.storage import get_storage

router = APIRouter(prefix="/api/v1/photos", tags=["photos"])

RETRY_AFTER = {"Retry-After": "30"}
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (404, 413, 415, 422, 503)}


@router.post("", status_code=202, response_model=PhotoAccepted, responses=_ERRORS)
async def upload_photo(
    request: Request,
    response: Response,
    upload: UploadDep,
    metadata: MetadataDep,
    cid: CorrelationIdDep,
) -> PhotoAccepted:
    """Store the photo and queue its processing; answers before any model runs."""
    try:
        submission = await run_in_threadpool(
            lambda: submit_photo(upload.data, filename=upload.filename, correlation_id=cid, metadata=metadata)
        )
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
    status_url = str(request.url_for("get_photo", photo_id=submission.photo_uuid))
    response.headers["Location"] = status_url
    return PhotoAccepted(
        photo_id=UUID(submission.photo_uuid),
        session_id=UUID(submission.session_id),
        task_id=submission.task_id,
        status_url=status_url,
        correlation_id=submission.correlation_id,
    )


@router.get("/{photo_id}", response_model=PhotoStatus, responses=_ERRORS, name="get_photo")
def get_photo(request: Request, photo: PhotoDep) -> PhotoStatus:
    """Status, progress, per-region counts and timings of one photo."""
    session = photo.session

    def url(name: str, key: str | None) -> str | None:
        return str(request.url_for(name, photo_id=str(photo.uuid))) if key else None

    return photo_status(
        photo,
        annotated_url=url("get_annotated", session.annotated_key),
        thumbnail_url=url("get_thumbnail", session.thumbnail_key),
    )


_JPEG = {200: {"content": {"image/jpeg": {}}, "description": "a JPEG image"}, **_ERRORS}


@router.get("/{photo_id}/annotated", response_class=Response, responses=_JPEG, name="get_annotated")
def get_annotated(photo: PhotoDep) -> Response:
    """The photo with its regions and plants drawn on it (404 until it is rendered)."""
    return _stored_jpeg(photo.session.annotated_key, "annotated image")


@router.get("/{photo_id}/thumbnail", response_class=Response, responses=_JPEG, name="get_thumbnail")
def get_thumbnail(photo: PhotoDep) -> Response:
    """A small copy of the annotated image (404 until it is rendered)."""
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
