"""Safe retries and listings through the real app: Idempotency-Key, duplicate photos, cursors, URLs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.api.main import app, create_app
from app.client import ApiError, DemeterClient
from app.config import Settings
from app.db import repository
from app.db.models import Photo, ProcessingSession, StockBatch, StockMovement
from app.db.session import db_session
from tests.utils.keys import make_api_key
from tests.utils.photos import blank_jpeg, synthetic_jpeg, wait_final
from tests.utils.processes import WorkerSet


@pytest.fixture(scope="module")
def http() -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def photos_with_key(tenant: str, key: str) -> int:
    with db_session() as db:
        return int(db.scalar(select(func.count()).select_from(Photo)
                             .where(Photo.tenant == tenant, Photo.idempotency_key == key)) or 0)


def movements_of(photo_uuid: str) -> list[int]:
    with db_session() as db:
        query = (select(StockMovement.quantity).join(StockBatch, StockBatch.id == StockMovement.batch_id)
                 .join(ProcessingSession, ProcessingSession.id == StockBatch.session_id)
                 .join(Photo, Photo.id == ProcessingSession.photo_id).where(Photo.uuid == uuid.UUID(photo_uuid)))
        return list(db.scalars(query))


def test_the_same_idempotency_key_twice_is_one_photo_and_one_set_of_movements(
        http: TestClient, workers: WorkerSet) -> None:
    client = DemeterClient(http, make_api_key("retries"))
    photo = synthetic_jpeg(9210, 1024, 768)

    first = client.upload_photo(photo, filename="bench.jpg", bench="B-3", idempotency_key="scan-0001")
    wait_final(_row_id(str(first.photo_id)))
    again = client.http.post("/api/v1/photos", headers={**client.auth, "Idempotency-Key": "scan-0001"},
                             files={"file": ("bench.jpg", photo)}, data={"bench": "B-3"})
    with pytest.raises(ApiError) as other_body:
        client.upload_photo(blank_jpeg(64, 48), filename="bench.jpg", bench="B-3", idempotency_key="scan-0001")
    with pytest.raises(ApiError) as other_field:
        client.upload_photo(photo, filename="bench.jpg", bench="B-4", idempotency_key="scan-0001")

    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.model_dump(mode="json")  # the first 202 answer again
    assert again.headers["Location"] == first.status_url
    for refused in (other_body.value, other_field.value):
        assert (refused.status, refused.code) == (409, "idempotency_key_reused")
    assert photos_with_key("retries", "scan-0001") == 1
    status = client.wait_for_photo(first.photo_id)
    counted = [region.count for region in status.regions if region.count is not None]
    assert counted and sorted(movements_of(str(first.photo_id))) == sorted(counted)  # one movement per region


def test_concurrent_twins_with_one_idempotency_key_make_one_photo(http: TestClient) -> None:
    client = DemeterClient(http, make_api_key("twins"))
    photo = blank_jpeg(160, 120)

    def send(_: int) -> tuple[int, str | None]:
        try:
            return 202, str(client.upload_photo(photo, idempotency_key="twin-1").photo_id)
        except ApiError as error:
            return error.status, error.code

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send, range(4)))

    assert photos_with_key("twins", "twin-1") == 1
    accepted = {body for status, body in answers if status == 202}
    assert len(accepted) == 1, answers  # every 202 names the one photo
    assert all(answer == (409, "idempotency_request_in_progress") for answer in answers if answer[0] != 202)


def test_idempotency_keys_are_per_tenant(http: TestClient) -> None:
    photo = blank_jpeg(96, 64)
    one = DemeterClient(http, make_api_key("tenant-one")).upload_photo(photo, idempotency_key="same")
    two = DemeterClient(http, make_api_key("tenant-two")).upload_photo(photo, idempotency_key="same")

    assert one.photo_id != two.photo_id


def test_byte_identical_photos_within_the_window_are_refused_or_flagged(
        monkeypatch: pytest.MonkeyPatch) -> None:
    photo, other = blank_jpeg(200, 100, (1, 2, 3)), blank_jpeg(200, 100, (4, 5, 6))
    monkeypatch.setenv("DUPLICATE_UPLOAD_WINDOW_SECONDS", "600")
    refusing = DemeterClient(TestClient(create_app(Settings())), make_api_key("dups"))
    monkeypatch.setenv("DUPLICATE_UPLOAD_ACTION", "flag")
    flagging = DemeterClient(TestClient(create_app(Settings())), make_api_key("dups"))
    monkeypatch.delenv("DUPLICATE_UPLOAD_WINDOW_SECONDS")
    unchecked = DemeterClient(TestClient(create_app(Settings())), make_api_key("dups"))

    first = refusing.upload_photo(photo)
    with pytest.raises(ApiError) as refused:
        refusing.upload_photo(photo, filename="renamed.jpg")
    different = refusing.upload_photo(other)
    flagged = flagging.upload_photo(photo)
    unflagged = unchecked.upload_photo(photo)

    assert (refused.value.status, refused.value.code) == (409, "duplicate_photo")
    assert str(first.photo_id) in refused.value.message
    assert first.duplicate_of is None and different.duplicate_of is None and unflagged.duplicate_of is None
    assert flagged.duplicate_of == first.photo_id
    assert flagging.get_photo(flagged.photo_id).duplicate_of == first.photo_id


def test_two_file_parts_are_refused(http: TestClient) -> None:
    client = DemeterClient(http, make_api_key("parts"))

    response = http.post("/api/v1/photos", headers=client.auth,
                         files=[("file", ("a.jpg", blank_jpeg(64, 48))), ("file", ("b.jpg", blank_jpeg(48, 64)))])

    assert response.status_code == 422 and response.json()["error"]["code"] == "multiple_files"
    assert client.list_photos().items == []


def test_urls_start_with_the_configured_public_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://demeter.example.org/")
    client = DemeterClient(TestClient(create_app(Settings()), base_url="http://evil.example"),
                           make_api_key("urls"))

    accepted = client.upload_photo(blank_jpeg(64, 48))

    assert accepted.status_url == f"https://demeter.example.org/api/v1/photos/{accepted.photo_id}"
    assert client.list_photos().items[0].status_url == accepted.status_url


def _row_id(photo_uuid: str) -> int:
    with db_session() as db:
        return int(db.scalars(select(Photo.id).where(Photo.uuid == uuid.UUID(photo_uuid))).one())


def _add_photos(tenant: str, n: int, **fields: object) -> list[str]:
    made = []
    with db_session() as db:
        for _ in range(n):
            photo, _ = repository.create_photo(db, storage_key=f"original/test/{uuid.uuid4()}.jpg", tenant=tenant,
                                               content_type="image/jpeg", width=64, height=48, size_bytes=1,
                                               **fields)  # type: ignore[arg-type]
            made.append(str(photo.uuid))
    return made


def test_photo_pages_neither_repeat_nor_skip_while_photos_are_added(http: TestClient) -> None:
    client = DemeterClient(http, make_api_key("paging"))
    existing = _add_photos("paging", 23)
    seen: list[str] = []
    cursor = None
    while True:
        page = client.list_photos(limit=5, cursor=cursor)
        seen += [str(item.photo_id) for item in page.items]
        _add_photos("paging", 2)  # inserted between pages, as another client would
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert len(seen) == len(set(seen))  # nothing twice
    assert set(existing) <= set(seen)  # nothing that existed is skipped
    assert seen[:23] == existing[::-1]  # newest first


def test_photo_filters(http: TestClient) -> None:
    client = DemeterClient(http, make_api_key("filters"))
    on_bench = _add_photos("filters", 2, metadata={"bench": "B-9"}, correlation_id="scan-77")
    _add_photos("filters", 3)
    with db_session() as db:
        repository.fail_session(db, photo_id=_row_id(on_bench[0]), reason="test")
    now = datetime.now(UTC)

    assert {str(p.photo_id) for p in client.iter_photos(bench="B-9")} == set(on_bench)
    assert {str(p.photo_id) for p in client.iter_photos(correlation_id="scan-77")} == set(on_bench)
    assert [str(p.photo_id) for p in client.iter_photos(status="failed")] == [on_bench[0]]
    assert len(list(client.iter_photos(created_after=now - timedelta(minutes=5)))) == 5
    assert list(client.iter_photos(created_before=now - timedelta(minutes=5))) == []
    with pytest.raises(ApiError) as bad:
        client.list_photos(cursor="not-a-cursor")
    assert (bad.value.status, bad.value.code) == (422, "invalid_cursor")


def test_stock_pages_with_totals_while_stock_is_added(http: TestClient) -> None:
    from tests.test_api_access import counted_photo

    client = DemeterClient(http, make_api_key("stock-paging"))
    for counts in ([5, 7], [11], [2, 3, 4]):
        counted_photo("stock-paging", counts)
    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        page = client.stock_movements(limit=2, cursor=cursor)
        seen += [item.movement_id for item in page.items]
        if cursor is None:
            assert page.totals.model_dump() == {"rows": 6, "quantity": 32}
        counted_photo("stock-paging", [100])  # inserted between pages
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert len(seen) == len(set(seen)) >= 6
    batches = client.stock_batches(limit=200, container_type="tray")
    assert batches.totals.rows == len(batches.items) >= 6
    assert client.stock_batches(container_type="segment").totals.model_dump() == {"rows": 0, "quantity": 0}


def test_uploads_past_the_per_key_rate_limit_get_429_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPLOAD_RATE_LIMIT", "3/minute")
    limited = TestClient(create_app(Settings()))
    busy = DemeterClient(limited, make_api_key("rate"))
    other = DemeterClient(limited, make_api_key("rate"))

    for _ in range(3):
        busy.upload_photo(blank_jpeg(64, 48))
    with pytest.raises(ApiError) as refused:
        busy.upload_photo(blank_jpeg(64, 48))

    assert (refused.value.status, refused.value.code) == (429, "rate_limited")
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    assert other.upload_photo(blank_jpeg(64, 48)).status == "pending"  # each key has its own window
    assert busy.get_photo(busy.list_photos().items[0].photo_id)  # reading is not limited
