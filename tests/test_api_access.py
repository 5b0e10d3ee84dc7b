"""API keys, scopes and tenants, through the real app and database (and the CLI that makes the keys)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.api.main import app
from app.api.schemas import BatchPage, MovementPage
from app.apikeys import digest, token_prefix
from app.cli import main as cli
from app.client import ApiError, DemeterClient
from app.db import repository
from app.db.models import ApiKey
from app.db.session import db_session
from app.records import RegionProposal, encode_detections
from tests.utils.keys import bearer, make_api_key
from tests.utils.photos import blank_jpeg

UNKNOWN = str(uuid.uuid4())


@pytest.fixture(scope="module")
def http() -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def as_key(http: TestClient, token: str) -> DemeterClient:
    return DemeterClient(http, token)


def protected_operations(http: TestClient) -> list[tuple[str, str]]:
    """(method, path with ids filled in) of every operation under /api/v1, from the OpenAPI document."""
    spec = http.get("/openapi.json").json()
    return [(method.upper(), path.replace("{photo_id}", UNKNOWN))
            for path, operations in spec["paths"].items() if path.startswith("/api/v1")
            for method in operations]


def counted_photo(tenant: str, counts: list[int]) -> tuple[int, str]:
    """A photo of `tenant` counted as the workers count one (one region per count): (row id, UUID)."""
    with db_session() as db:
        photo, _ = repository.create_photo(db, storage_key=f"original/test/{uuid.uuid4()}.jpg", tenant=tenant,
                                           content_type="image/jpeg", width=800, height=600, size_bytes=1)
        photo_id, photo_uuid = photo.id, str(photo.uuid)
    with db_session() as db:
        repository.mark_processing(db, photo_id=photo_id, task_id=f"task-{photo_uuid}")
        repository.save_regions(db, photo_id=photo_id, proposals=[
            RegionProposal("tray", 0.9, (10 + 100 * i, 20, 90 + 100 * i, 240), []) for i in range(len(counts))])
    with db_session() as db:
        repository.write_counts(db, photo_id=photo_id, results=[
            {"region_index": i, "count": count, "mean_confidence": 0.8, "detections": ""}
            for i, count in enumerate(counts)])
    return photo_id, photo_uuid


def test_every_photo_and_stock_route_answers_401_without_a_valid_key(http: TestClient) -> None:
    operations = protected_operations(http)
    assert {("POST", "/api/v1/photos"), ("GET", "/api/v1/photos"), ("GET", "/api/v1/stock/batches"),
            ("GET", "/api/v1/stock/movements"), ("GET", f"/api/v1/photos/{UNKNOWN}/detections")} <= set(operations)
    for method, path in operations:
        for headers in ({}, bearer("dmt_0123abcd_" + "x" * 43), {"Authorization": "Basic dXNlcjpwYXNz"}):
            response = http.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert response.json()["error"]["code"] in ("not_authenticated", "invalid_api_key")
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200


def test_a_key_without_the_routes_scope_gets_403(http: TestClient) -> None:
    stock_only = bearer(make_api_key("scopes", ["stock:read"]))
    photos_only = bearer(make_api_key("scopes", ["photos:read"]))

    upload = http.post("/api/v1/photos", headers=photos_only, files={"file": ("a.jpg", blank_jpeg(64, 48))})
    listing = http.get("/api/v1/photos", headers=stock_only)
    status = http.get(f"/api/v1/photos/{UNKNOWN}", headers=stock_only)
    stock = http.get("/api/v1/stock/movements", headers=photos_only)

    for response in (upload, listing, status, stock):
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "insufficient_scope"
    assert http.get("/api/v1/photos", headers=photos_only).status_code == 200
    assert http.get("/api/v1/stock/movements", headers=stock_only).status_code == 200


def test_a_tenant_sees_neither_the_photos_nor_the_stock_of_another(http: TestClient) -> None:
    alice = as_key(http, make_api_key("alice"))
    bob = as_key(http, make_api_key("bob"))
    admin = as_key(http, make_api_key("operators", ["admin"]))
    uploaded = alice.upload_photo(blank_jpeg(320, 240), filename="alice.jpg")
    _, counted = counted_photo("alice", [12, 30])

    for photo in (str(uploaded.photo_id), counted):
        for path in ("", "/annotated", "/thumbnail", "/detections"):
            response = http.get(f"/api/v1/photos/{photo}{path}", headers=bob.auth)
            assert response.status_code == 404 and response.json()["error"]["code"] == "photo_not_found"
        assert alice.get_photo(photo).photo_id == uuid.UUID(photo)
        assert admin.get_photo(photo).photo_id == uuid.UUID(photo)  # admin: every tenant
    assert {p.photo_id for p in alice.iter_photos()} >= {uploaded.photo_id, uuid.UUID(counted)}
    assert not {str(p.photo_id) for p in bob.iter_photos()} & {str(uploaded.photo_id), counted}
    for listing in ("stock_batches", "stock_movements"):
        def pages(client: DemeterClient, listing: str = listing, **filters: object) -> BatchPage | MovementPage:
            page: BatchPage | MovementPage = getattr(client, listing)(**filters)
            return page

        assert pages(alice, photo_id=counted).totals.model_dump() == {"rows": 2, "quantity": 42}
        assert pages(bob, photo_id=counted).totals.model_dump() == {"rows": 0, "quantity": 0}
        assert all(item.photo_id != uuid.UUID(counted) for item in pages(bob, limit=200).items)
        assert pages(admin, photo_id=counted).totals.rows == 2


def test_keys_cli_prints_the_secret_once_and_a_revoked_key_is_refused_at_once(
        http: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["keys", "create", "--name", "inventory-sync", "--tenant", "cli-tenant", "--scope", "photos:read",
                "--scope", "stock:read", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    token = created["key"]
    assert created["scopes"] == ["photos:read", "stock:read"] and created["tenant"] == "cli-tenant"
    with db_session() as db:
        row = db.scalars(select(ApiKey).where(ApiKey.id == created["id"])).one()
    assert row.digest == digest(token) != token and row.prefix == token_prefix(token)  # only the digest is kept
    assert cli(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert row.prefix in listed and token not in listed and "inventory-sync" in listed
    assert http.get("/api/v1/photos", headers=bearer(token)).status_code == 200

    assert cli(["keys", "revoke", row.prefix]) == 0
    assert "revoked key" in capsys.readouterr().out

    refused = http.get("/api/v1/photos", headers=bearer(token))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert cli(["keys", "list"]) == 0 and row.prefix not in capsys.readouterr().out
    assert cli(["keys", "create", "--name", "x", "--scope", "photos:delete"]) == 2  # unknown scope


def test_a_wrong_secret_with_a_real_prefix_is_refused(http: TestClient) -> None:
    token = make_api_key("default")
    forged = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")

    assert http.get("/api/v1/photos", headers=bearer(forged)).status_code == 401
    assert http.get("/api/v1/photos", headers=bearer(token)).status_code == 200


def test_the_openapi_document_declares_the_bearer_scheme_on_every_protected_route(http: TestClient) -> None:
    spec = http.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "dmt_<prefix>_<secret>",
        "description": "An API key made by `demeter keys create`, sent as `Authorization: Bearer <key>`."}
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            assert (operation.get("security") == [{"ApiKey": []}]) == path.startswith("/api/v1"), path


def test_errors_of_the_client_carry_status_and_code(http: TestClient) -> None:
    client = as_key(http, make_api_key("default"))

    with pytest.raises(ApiError) as raised:
        client.get_photo(UNKNOWN)

    assert (raised.value.status, raised.value.code) == (404, "photo_not_found")


def test_detections_as_json_and_as_coco(http: TestClient) -> None:
    import numpy as np

    key = as_key(http, make_api_key("coco"))
    with db_session() as db:
        photo, _ = repository.create_photo(db, storage_key=f"original/test/{uuid.uuid4()}.jpg", tenant="coco",
                                           content_type="image/jpeg", width=800, height=600, size_bytes=1,
                                           original_filename="bench-7.jpg")
        photo_id, photo_uuid = photo.id, str(photo.uuid)
    with db_session() as db:
        repository.mark_processing(db, photo_id=photo_id, task_id="t")
        repository.save_regions(db, photo_id=photo_id, proposals=[
            RegionProposal("tray", 0.9, (0, 0, 400, 300), [[0.0, 0.0], [400.0, 0.0], [400.0, 300.0]])])
    boxes = np.array([[10, 20, 30, 50], [100.5, 100, 120.5, 130]], np.float32)
    with db_session() as db:
        repository.write_counts(db, photo_id=photo_id, results=[
            {"region_index": 0, "count": 2, "mean_confidence": 0.7,
             "detections": encode_detections(boxes, np.array([0.9, 0.5], np.float32))}])

    plain = key.detections(photo_uuid)
    coco = key.detections_coco(photo_uuid)

    assert plain.status == "completed" and (plain.width, plain.height) == (800, 600)
    [region] = plain.regions
    assert region.count == 2 and region.polygon == [[0.0, 0.0], [400.0, 0.0], [400.0, 300.0]]
    assert [(d.bbox, d.score) for d in region.detections] == [((10, 20, 30, 50), 0.9),
                                                             ((100.5, 100, 120.5, 130), 0.5)]
    assert coco["images"] == [{"id": 1, "file_name": "bench-7.jpg", "width": 800, "height": 600}]
    assert coco["categories"] == [{"id": 1, "name": "plant", "supercategory": "plant"}]
    assert [a["bbox"] for a in coco["annotations"]] == [[10, 20, 20, 30], [100.5, 100, 20, 30]]
    assert [a["area"] for a in coco["annotations"]] == [600, 600]
    assert {a["image_id"] for a in coco["annotations"]} == {1}
    assert [a["id"] for a in coco["annotations"]] == [1, 2]
    assert all(a["iscrowd"] == 0 and a["category_id"] == 1 for a in coco["annotations"])
    assert {"info", "licenses"} <= set(coco)


def test_docs_pages_load_only_local_assets_and_the_schema_documents_headers_and_errors(http: TestClient) -> None:
    for page, assets in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")), ("/redoc", ("redoc.standalone.js",))):
        html = http.get(page).text
        external = [url for url in re.findall(r"""(?:src|href)=["']([^"']+)""", html) if "://" in url]
        assert external == [], (page, external)  # nothing from a CDN: the page works offline
        for asset in assets:
            path = re.search(rf"""["']([^"']*/{re.escape(asset)})["']""", html)
            assert path, (page, asset)
            served = http.get(path.group(1))
            assert served.status_code == 200 and len(served.content) > 10_000
    spec = http.get("/openapi.json").json()
    upload = spec["paths"]["/api/v1/photos"]["post"]
    headers = {p["name"] for p in upload["parameters"] if p["in"] == "header"}
    assert {"Idempotency-Key", "X-Correlation-ID"} <= headers
    assert {"401", "403", "409", "413", "415", "422", "429", "503"} <= set(upload["responses"])
    for code in ("401", "409", "429"):
        assert upload["responses"][code]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
