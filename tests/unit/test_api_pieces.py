"""The API's pure pieces: key tokens and scopes, cursors, request fingerprints, the COCO document."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest

from app.api.pagination import InvalidCursor, decode_cursor, encode_cursor
from app.api.schemas import DetectionOut, PhotoDetections, RegionDetections
from app.api.uploads import request_fingerprint
from app.api.views import coco_document
from app.apikeys import Principal, check_scopes, check_tenant, digest, new_token, token_prefix


def test_tokens_are_random_with_a_lookup_prefix_and_only_their_digest_is_kept() -> None:
    token, prefix = new_token()
    other, _ = new_token()

    assert token != other and token.startswith(f"dmt_{prefix}_") and len(token) == 4 + 8 + 1 + 43
    assert token_prefix(token) == prefix
    assert digest(token) == hashlib.sha256(token.encode()).hexdigest() != digest(other)
    for malformed in ("", "dmt_", token[:-1], token.replace("dmt_", "xyz_"), f"{token} ", "Bearer " + token):
        assert token_prefix(malformed) is None


def test_scopes_and_tenants_are_checked() -> None:
    assert check_scopes(["stock:read", "photos:read", "stock:read"]) == ["photos:read", "stock:read"]
    for bad in ([], ["photos:delete"], ["admin", "root"]):
        with pytest.raises(ValueError, match="scope"):
            check_scopes(bad)
    assert check_tenant("nursery-1.north_a") == "nursery-1.north_a"
    for bad_tenant in ("", "-x", "a b", "x" * 65, "tenant/../other"):
        with pytest.raises(ValueError):
            check_tenant(bad_tenant)


def test_admin_holds_every_scope_on_every_tenant() -> None:
    reader = Principal(1, "abcd0123", "r", "t", frozenset({"photos:read"}))
    admin = Principal(2, "abcd0124", "a", "t", frozenset({"admin"}))

    assert reader.allows("photos:read") and not reader.allows("photos:write") and not reader.all_tenants
    assert admin.allows("photos:write") and admin.allows("stock:read") and admin.all_tenants


def test_cursors_round_trip_in_utc_and_refuse_anything_else() -> None:
    moment = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))

    assert decode_cursor(encode_cursor(moment, 42)) == (moment.astimezone(UTC), 42)
    for bad_cursor in ("", "not-a-cursor", encode_cursor(moment, 2**40), "W10", "WyJ4IiwgMV0"):
        with pytest.raises(InvalidCursor):
            decode_cursor(bad_cursor)


def test_the_fingerprint_changes_with_the_bytes_the_name_or_a_form_field_and_nothing_else() -> None:
    base = request_fingerprint(b"photo", "a.jpg", {"bench": "B-1", "notes": "n"})

    assert base == request_fingerprint(b"photo", "a.jpg", {"notes": "n", "bench": "B-1"})  # field order
    assert len({base, request_fingerprint(b"photo!", "a.jpg", {"bench": "B-1", "notes": "n"}),
                request_fingerprint(b"photo", "b.jpg", {"bench": "B-1", "notes": "n"}),
                request_fingerprint(b"photo", "a.jpg", {"bench": "B-2", "notes": "n"})}) == 4


def test_coco_boxes_are_x_y_width_height_with_unique_ids_over_regions() -> None:
    view = PhotoDetections(photo_id=uuid4(), status="completed", width=640, height=480, regions=[
        RegionDetections(index=i, class_name="tray", bbox=(0, 0, 10, 10), polygon=[], count=2, detections=[
            DetectionOut(bbox=(1.0, 2.0, 4.5, 6.0), score=0.9), DetectionOut(bbox=(5.0, 5.0, 6.0, 9.0), score=0.4)])
        for i in range(2)])

    coco = coco_document(view, None)

    assert coco["images"] == [{"id": 1, "file_name": f"{view.photo_id}.jpg", "width": 640, "height": 480}]
    assert [a["id"] for a in coco["annotations"]] == [1, 2, 3, 4]
    assert coco["annotations"][0]["bbox"] == [1.0, 2.0, 3.5, 4.0] and coco["annotations"][0]["area"] == 14.0
    assert [a["attributes"]["region_index"] for a in coco["annotations"]] == [0, 0, 1, 1]
