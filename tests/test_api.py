"""The HTTP API on the real database, broker, storage and worker processes."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from app.api.main import app, create_app
from app.config import Settings, get_settings
from app.db import repository
from app.db.models import Photo
from app.db.session import db_session
from app.records import RegionProposal
from tests.utils.api_server import start_api
from tests.utils.bad_photos import bomb_png, gif_bytes, jpeg_padded, panorama_jpeg, text_file, truncated_jpeg
from tests.utils.keys import bearer
from tests.utils.photos import blank_jpeg, png_bytes, synthetic_jpeg
from tests.utils.processes import WorkerSet

PHOTOS = "/api/v1/photos"
DEAD_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture(scope="module")
def client(api_key: str) -> Iterator[TestClient]:
    with TestClient(app, headers=bearer(api_key)) as test_client:
        yield test_client


def stored_state() -> tuple[int, set[Path]]:
    """How many photo rows there are, and every uploaded original in the store.

    Only originals: annotated images of earlier tests' photos may still be landing.
    """
    with db_session() as db:
        photos = int(db.scalar(select(func.count()).select_from(Photo)) or 0)
    root = get_settings().storage_dir_resolved / "original"
    files = {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()
    return photos, files


def upload(client: TestClient | httpx.Client, photo: bytes, name: str = "bench.jpg",
           content_type: str = "image/jpeg", **kwargs: Any) -> httpx.Response:
    return client.post(PHOTOS, files={"file": (name, photo, content_type)}, **kwargs)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]


def wait_for(client: TestClient, url: str, done: Any, timeout: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(url).json()
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} still {body.get('status')} after {timeout} s: {body}")
        time.sleep(0.3)


def test_upload_then_status_then_annotated_image(client: TestClient, workers: WorkerSet) -> None:
    response = upload(client, synthetic_jpeg(9200, 1024, 768), data={"bench": "B-12", "notes": "north side"},
                      headers={"X-Correlation-ID": "api-e2e-1"})

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "pending" and accepted["correlation_id"] == "api-e2e-1"
    assert response.headers["Location"] == accepted["status_url"]
    assert accepted["status_url"].endswith(f"{PHOTOS}/{accepted['photo_id']}")
    body = wait_for(client, accepted["status_url"], lambda b: b["status"] in ("completed", "warning", "failed"))
    assert body["status"] in ("completed", "warning"), body["error"]
    # Provenance: the cards of the models that counted; a warning always says why.
    assert body["model_cards"]["detection"].startswith("plant_det@")
    assert body["model_cards"]["segmentation"].startswith("container_seg@")
    assert body["region_mode"] == "segment"
    assert (body["status"] == "warning") == bool(body["doubts"] or body["warnings"])
    assert all(doubt["check"] and doubt["message"] for doubt in body["doubts"])
    assert body["photo_id"] == accepted["photo_id"] and body["session_id"] == accepted["session_id"]
    assert body["task_id"] and body["correlation_id"] == "api-e2e-1"
    assert body["metadata"] == {"bench": "B-12", "notes": "north side"}
    assert (body["width"], body["height"], body["content_type"]) == (1024, 768, "image/jpeg")
    regions = body["regions"]
    assert body["progress"] == {"regions_done": len(regions), "regions_total": len(regions)}
    assert body["total_count"] == sum(r["count"] or 0 for r in regions)
    for index, region in enumerate(regions):
        assert region["index"] == index and region["class"] in ("tray", "segment")
        x1, y1, x2, y2 = region["bbox"]
        assert 0 <= x1 < x2 <= 1024 and 0 <= y1 < y2 <= 768
    timings = body["timings"]
    moments = [datetime.fromisoformat(timings[key]) for key in ("created_at", "started_at", "finished_at")]
    assert moments == sorted(moments)
    assert timings["total_seconds"] >= timings["processing_seconds"] >= 0

    # The annotated image and its thumbnail are rendered after the counts, on the io queue.
    body = wait_for(client, accepted["status_url"], lambda b: b["annotated_url"] and b["thumbnail_url"], 60)
    annotated = client.get(body["annotated_url"])
    thumbnail = client.get(body["thumbnail_url"])

    assert annotated.status_code == thumbnail.status_code == 200
    assert annotated.headers["content-type"] == thumbnail.headers["content-type"] == "image/jpeg"
    # The photo's own pixels keep their coordinates; the legend is a strip below them.
    width, height = Image.open(io.BytesIO(annotated.content)).size
    assert width == 1024 and height > 768
    assert max(Image.open(io.BytesIO(thumbnail.content)).size) <= 512
    # A box is drawn around every plant: more plant-box red pixels than plants, and none in the original.
    assert _plant_box_pixels(annotated.content) > body["total_count"] > 0
    assert _plant_box_pixels(synthetic_jpeg(9200, 1024, 768)) == 0


def _plant_box_pixels(jpeg: bytes) -> int:
    rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
    return int(((rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] < 110)).sum())


def webp_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buffer, format="WEBP")
    return buffer.getvalue()


@pytest.mark.parametrize(("photo", "suffix"), [(png_bytes(), ".png"), (webp_bytes(), ".webp")], ids=["png", "webp"])
def test_png_and_webp_are_accepted_whatever_their_name(client: TestClient, photo: bytes, suffix: str) -> None:
    before_rows, before_files = stored_state()

    response = upload(client, photo, name="photo.jpg", content_type="application/octet-stream")

    assert response.status_code == 202, response.text
    rows, files = stored_state()
    assert rows == before_rows + 1
    assert [path.suffix for path in files - before_files] == [suffix]  # the content decides, not the name


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("empty.jpg", b"", 422, "empty_file"),
        ("notes.jpg", text_file(), 415, "unsupported_media_type"),
        ("animation.jpg", gif_bytes(), 415, "unsupported_media_type"),
        ("cut.jpg", truncated_jpeg(), 422, "invalid_image"),
        ("bomb.png", bomb_png(20_000, 20_000), 422, "invalid_image"),  # Pillow's own bomb guard
        ("huge.png", bomb_png(10_000, 6_000), 422, "invalid_image"),  # over app.ml.images.MAX_PIXELS
    ],
    ids=["empty", "text-renamed-jpg", "gif", "truncated-jpeg", "bomb-400-mpx", "60-mpx"],
)
def test_bad_uploads_are_refused_and_leave_nothing(client: TestClient, name: str, data: bytes, status: int,
                                                   code: str) -> None:
    before = stored_state()

    response = upload(client, data, name=name)

    assert_error(response, status, code)
    assert stored_state() == before


def test_a_panorama_is_refused_with_the_limit_and_its_setting(client: TestClient) -> None:
    before = stored_state()

    response = upload(client, panorama_jpeg(9600, 800), name="nine-benches.jpg")

    assert_error(response, 422, "invalid_image")
    message = response.json()["error"]["message"]
    assert "9600x800" in message and "12.0:1" in message and "MAX_ASPECT_RATIO" in message
    assert stored_state() == before


@pytest.mark.parametrize("regions", ["not json", "[[0, 0, 10]]", "[[0, 0, 5000, 10]]", "[]"],
                         ids=["not-json", "three-numbers", "outside-the-photo", "none"])
def test_supplied_regions_that_cannot_be_counted_are_refused(client: TestClient, regions: str) -> None:
    before = stored_state()

    response = upload(client, png_bytes(), name="bench.png", data={"regions": regions})

    assert_error(response, 422, "invalid_regions")
    assert stored_state() == before


def test_bomb_is_refused_quickly(client: TestClient) -> None:
    data = bomb_png(20_000, 20_000)
    started = time.monotonic()

    response = upload(client, data, name="bomb.png", content_type="image/png")

    assert response.status_code == 422
    assert time.monotonic() - started < 5.0  # the header was enough: nothing was decompressed


def _multipart_stream(boundary: str, payload: bytes, chunk: int = 16 * 1024) -> Iterator[bytes]:
    yield (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
           "Content-Type: image/jpeg\r\n\r\n").encode()
    for start in range(0, len(payload), chunk):
        yield payload[start:start + chunk]
    yield f"\r\n--{boundary}--\r\n".encode()


def test_uploads_over_the_limit_are_refused_with_413(monkeypatch: pytest.MonkeyPatch, api_key: str) -> None:
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "20000")
    small = TestClient(create_app(Settings()), headers=bearer(api_key))
    before = stored_state()

    within = upload(small, jpeg_padded(19_000))
    just_over = upload(small, jpeg_padded(20_001))  # the file is read in chunks and counted
    far_over = upload(small, jpeg_padded(500_000))  # refused on its Content-Length, before reading
    # No Content-Length at all: the body is counted as it arrives and refused once past the limit.
    streamed = small.post(PHOTOS, content=_multipart_stream("xyz", jpeg_padded(500_000)),
                          headers={"Content-Type": "multipart/form-data; boundary=xyz"})

    assert within.status_code == 202, within.text
    for response in (just_over, far_over, streamed):
        assert_error(response, 413, "payload_too_large")
        assert "20000" in response.json()["error"]["message"]
        assert response.headers["X-Correlation-ID"]
    rows, files = stored_state()
    assert (rows, len(files)) == (before[0] + 1, len(before[1]) + 1)  # only the one within the limit


def test_unknown_photo_is_404(client: TestClient) -> None:
    unknown = uuid.uuid4()
    for path in (f"{PHOTOS}/{unknown}", f"{PHOTOS}/{unknown}/annotated", f"{PHOTOS}/{unknown}/thumbnail",
                 f"{PHOTOS}/not-a-uuid", f"{PHOTOS}/12"):
        assert_error(client.get(path), 404, "photo_not_found")
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")


def test_a_pending_photo_has_a_status_and_no_annotated_image_yet(client: TestClient) -> None:
    # Rows only, never queued: the status is deterministically "pending".
    with db_session() as db:
        photo, session = repository.create_photo(db, storage_key=f"original/test/{uuid.uuid4()}.jpg",
                                                 content_type="image/jpeg", width=640, height=480, size_bytes=1234)
        photo_uuid, session_uuid = str(photo.uuid), str(session.uuid)

    body = client.get(f"{PHOTOS}/{photo_uuid}").json()

    assert body["photo_id"] == photo_uuid and body["session_id"] == session_uuid
    assert body["status"] == "pending"
    assert body["progress"] == {"regions_done": 0, "regions_total": None}
    assert body["regions"] == [] and body["total_count"] is None
    assert body["timings"]["started_at"] is None and body["timings"]["total_seconds"] is None
    assert body["annotated_url"] is None and body["thumbnail_url"] is None
    assert_error(client.get(f"{PHOTOS}/{photo_uuid}/annotated"), 404, "not_rendered")
    assert_error(client.get(f"{PHOTOS}/{photo_uuid}/thumbnail"), 404, "not_rendered")


def test_status_lists_each_region_with_its_count_or_error(client: TestClient) -> None:
    # Rows written as the tasks write them, so the regions are known whatever the models find.
    with db_session() as db:
        photo, _ = repository.create_photo(db, storage_key=f"original/test/{uuid.uuid4()}.jpg",
                                           content_type="image/jpeg", width=800, height=600, size_bytes=1)
        photo_id, photo_uuid = photo.id, str(photo.uuid)
    with db_session() as db:
        repository.mark_processing(db, photo_id=photo_id, task_id="task-1")
        repository.save_regions(db, photo_id=photo_id, proposals=[
            RegionProposal("tray", 0.91, (10, 20, 300, 240), []),
            RegionProposal("segment", 0.77, (320, 20, 790, 590), []),
        ])
    with db_session() as db:
        repository.record_region_progress(db, photo_id=photo_id, region_index=0, count=24, mean_confidence=0.8)
    midway = client.get(f"{PHOTOS}/{photo_uuid}").json()
    with db_session() as db:
        repository.write_counts(db, photo_id=photo_id, results=[
            {"region_index": 0, "count": 24, "mean_confidence": 0.8, "detections": ""},
            {"region_index": 1, "failed": True, "error": "StorageUnavailable: gone"},
        ])
    with db_session() as db:  # progress arriving after aggregation (written off the tasks' path) changes nothing
        late = repository.record_region_progress(db, photo_id=photo_id, region_index=1, count=99,
                                                 mean_confidence=0.5)

    body = client.get(f"{PHOTOS}/{photo_uuid}").json()

    assert late is None
    assert midway["status"] == "processing" and midway["progress"] == {"regions_done": 1, "regions_total": 2}
    assert body["status"] == "warning" and body["task_id"] == "task-1"
    assert body["progress"] == {"regions_done": 2, "regions_total": 2}
    assert body["total_count"] == 24
    assert body["regions"] == [
        {"index": 0, "class": "tray", "confidence": 0.91, "bbox": [10, 20, 300, 240], "count": 24,
         "mean_confidence": 0.8, "error": None},
        {"index": 1, "class": "segment", "confidence": 0.77, "bbox": [320, 20, 790, 590], "count": None,
         "mean_confidence": None, "error": "StorageUnavailable: gone"},
    ]
    assert body["warnings"] == [{"region_index": 1, "error": "StorageUnavailable: gone"}]
    timings = body["timings"]
    assert timings["queued_seconds"] >= 0 and timings["processing_seconds"] >= 0
    assert timings["total_seconds"] == pytest.approx(timings["queued_seconds"] + timings["processing_seconds"],
                                                     abs=0.01)


def test_correlation_id_is_echoed_and_stored(client: TestClient) -> None:
    given = upload(client, blank_jpeg(320, 240), headers={"X-Correlation-ID": "bench-scan:42_a"})
    malformed = upload(client, blank_jpeg(320, 240), headers={"X-Correlation-ID": "no spaces allowed; drop table"})
    absent = upload(client, blank_jpeg(320, 240))

    assert given.status_code == malformed.status_code == absent.status_code == 202
    assert given.headers["X-Correlation-ID"] == given.json()["correlation_id"] == "bench-scan:42_a"
    for response in (malformed, absent):
        generated = response.headers["X-Correlation-ID"]
        assert len(generated) == 32 and generated == response.json()["correlation_id"]
    for response in (given, malformed, absent):
        with db_session() as db:
            photo = db.scalars(select(Photo).where(Photo.uuid == uuid.UUID(response.json()["photo_id"]))).one()
            assert photo.correlation_id == photo.session.correlation_id == response.headers["X-Correlation-ID"]
    # Errors carry it too.
    refused = upload(client, b"", headers={"X-Correlation-ID": "refused-1"})
    assert refused.status_code == 422 and refused.headers["X-Correlation-ID"] == "refused-1"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok", "storage": "ok"}}


def test_openapi_documents_typed_responses(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert client.get("/docs").status_code == 200
    upload_op = spec["paths"][PHOTOS]["post"]
    assert "multipart/form-data" in upload_op["requestBody"]["content"]
    assert {"202", "413", "415", "422", "503"} <= set(upload_op["responses"])
    assert upload_op["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/PhotoAccepted")
    status_op = spec["paths"][f"{PHOTOS}/{{photo_id}}"]["get"]
    assert status_op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/PhotoStatus")
    assert "class" in spec["components"]["schemas"]["RegionOut"]["properties"]


@pytest.fixture(scope="module")
def dead_broker_api(data_dir: Path) -> Iterator[str]:
    """The real API process, configured with a broker that refuses connections."""
    with WorkerSet(data_dir / "logs") as processes:
        yield start_api(processes, "api-dead-broker", {"BROKER_URL": DEAD_BROKER})


def test_broker_outage_answers_503_and_keeps_nothing(dead_broker_api: str, api_key: str) -> None:
    before = stored_state()
    with httpx.Client(base_url=dead_broker_api, timeout=60, headers=bearer(api_key)) as http:
        response = upload(http, blank_jpeg(320, 240), headers={"X-Correlation-ID": "broker-down-1"})
        ready = http.get("/readyz")

    assert_error(response, 503, "broker_unavailable")
    assert response.headers["Retry-After"] and response.headers["X-Correlation-ID"] == "broker-down-1"
    assert stored_state() == before
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert ready.json()["status"] == "unavailable"
    assert checks["database"] == checks["storage"] == "ok" and checks["broker"].startswith("error")
