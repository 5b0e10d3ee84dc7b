"""Dependencies shared by the routes: settings, the correlation id, a photo or 404."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import Depends, File, Form, Path, Request, UploadFile

from app.api.errors import ApiError
from app.api.limits import too_large
from app.api.queries import find_photo
from app.api.security import PhotosReader
from app.api.uploads import Upload, UploadTooLarge, clean_filename, read_limited, sniff_content_type
from app.config import Settings
from app.db.models import Photo
from app.db.session import db_session
from app.observability import correlation


def api_settings(request: Request) -> Settings:
    """The settings the app was built with (tests build apps with their own)."""
    settings: Settings = request.app.state.settings
    return settings


def request_correlation_id(request: Request) -> str:
    """Set by CorrelationIdMiddleware; a fresh one if the middleware is not installed."""
    value = getattr(request.state, "correlation_id", None)
    return value if isinstance(value, str) else correlation.new_correlation_id()


SettingsDep = Annotated[Settings, Depends(api_settings)]


def public_url(request: Request, settings: Settings, name: str, **params: str) -> str:
    """An absolute URL of route `name`: under PUBLIC_BASE_URL when set, else from the request."""
    path = request.app.url_path_for(name, **params)
    base = settings.public_base_url.rstrip("/") or str(request.base_url).rstrip("/")
    return f"{base}{path}"
CorrelationIdDep = Annotated[str, Depends(request_correlation_id)]


def photo_or_404(
    principal: PhotosReader,
    photo_id: Annotated[str, Path(description="the photo's UUID", examples=["3f2b8c1e-5d4a-4b7e-9a61-0c2d3e4f5a6b"])],
) -> Photo:
    """Malformed, unknown and other tenants' ids are all simply "no such photo" (404, never 403)."""
    try:
        photo_uuid = UUID(photo_id)
    except ValueError:
        photo_uuid = None
    photo = None
    if photo_uuid is not None:
        with db_session() as db:
            photo = find_photo(db, photo_uuid=photo_uuid,
                               tenant=None if principal.all_tenants else principal.tenant)
    if photo is None:
        raise ApiError(404, "photo_not_found", f"no photo with id {photo_id[:64]!r}")
    return photo


async def photo_upload(
    request: Request,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="the photo: JPEG, PNG or WebP")],
) -> Upload:
    """The uploaded bytes, within the size limit, announcing a supported image type.

    Whether the image really decodes is left to intake (it decodes it once, fully).
    Two `file` parts are refused (422), not silently reduced to the last one.
    """
    if len((await request.form()).getlist("file")) > 1:
        raise ApiError(422, "multiple_files", "one photo per upload: the request has several `file` parts")
    try:
        data = await read_limited(file, settings.max_upload_bytes)
    except UploadTooLarge as exc:
        raise too_large(settings.max_upload_bytes) from exc
    if not data:
        raise ApiError(422, "empty_file", "the uploaded file is empty")
    if sniff_content_type(data) is None:
        raise ApiError(415, "unsupported_media_type", "not a JPEG, PNG or WebP image (judged by its content)")
    return Upload(data=data, filename=clean_filename(file.filename))


MAX_SUPPLIED_REGIONS = 100


def _supplied_regions(text: str) -> list[list[int]]:
    """`regions` form field: a JSON list of [x1, y1, x2, y2] boxes in photo pixels."""
    try:
        boxes = json.loads(text)
    except ValueError as exc:
        raise ApiError(422, "invalid_regions", "regions must be JSON: [[x1, y1, x2, y2], ...]") from exc
    if (not isinstance(boxes, list) or not 0 < len(boxes) <= MAX_SUPPLIED_REGIONS
            or not all(isinstance(b, list) and len(b) == 4 and all(isinstance(v, int) for v in b) for b in boxes)):
        raise ApiError(422, "invalid_regions",
                       f"regions must be 1 to {MAX_SUPPLIED_REGIONS} boxes of 4 whole numbers [x1, y1, x2, y2]")
    return boxes


def photo_metadata(
    bench: Annotated[str | None, Form(max_length=64, description="where the photo was taken")] = None,
    notes: Annotated[str | None, Form(max_length=1000)] = None,
    region_mode: Annotated[Literal["segment", "whole"] | None, Form(
        description="segment: find the containers; whole: count the whole photo as one region "
                    "(default: the REGION_MODE setting)")] = None,
    regions: Annotated[str | None, Form(
        max_length=10_000, description="the regions to count, JSON [[x1, y1, x2, y2], ...] in photo pixels "
                                       "(a fixed bench camera); they replace segmentation",
        examples=["[[0, 0, 1024, 768], [1024, 0, 2048, 768]]"])] = None,
) -> dict[str, Any]:
    """The optional form fields stored with the photo."""
    fields: dict[str, Any] = {"bench": bench, "notes": notes, "region_mode": region_mode}
    if regions:
        fields["regions"] = _supplied_regions(regions)
    return {key: value for key, value in fields.items() if value}


PhotoDep = Annotated[Photo, Depends(photo_or_404)]
UploadDep = Annotated[Upload, Depends(photo_upload)]
MetadataDep = Annotated[dict[str, Any], Depends(photo_metadata)]
