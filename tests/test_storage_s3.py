"""S3Storage over the real S3 protocol (moto's server on loopback), and one photo end to end on it."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from app.errors import ObjectMissing, StorageUnavailable
from app.storage.s3 import S3Storage
from tests.utils.api_server import start_api, terminate_all
from tests.utils.keys import bearer
from tests.utils.photos import blank_jpeg
from tests.utils.processes import WorkerSet

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def start_s3() -> tuple[ThreadedMotoServer, str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS_ENV.items():
            patch.setenv(name, value)
        server, endpoint = start_s3()
        yield endpoint
        server.stop()


@pytest.fixture
def storage(s3_endpoint: str) -> S3Storage:
    store = S3Storage(bucket=f"photos-{uuid.uuid4().hex[:8]}", prefix="tenant-a", endpoint_url=s3_endpoint)
    store.ensure_bucket()
    return store


def test_put_get_delete_roundtrip(storage: S3Storage) -> None:
    key = "original/2024/05/01/abc.jpg"
    photo = blank_jpeg(64, 48)

    storage.put(key, photo, "image/jpeg")
    stored = storage.client.head_object(Bucket=storage.bucket, Key=f"tenant-a/{key}")

    assert storage.get(key) == photo
    assert stored["ContentType"] == "image/jpeg" and stored["ContentLength"] == len(photo)
    storage.ping()
    storage.delete(key)
    with pytest.raises(ObjectMissing):
        storage.get(key)
    storage.delete(key)  # deleting twice is not an error


def test_unknown_key_is_object_missing(storage: S3Storage) -> None:
    with pytest.raises(ObjectMissing):
        storage.get("original/never/written.jpg")


def test_missing_bucket_fails_ping(s3_endpoint: str) -> None:
    with pytest.raises(StorageUnavailable):
        S3Storage(bucket="no-such-bucket", endpoint_url=s3_endpoint).ping()


def test_stopped_server_is_storage_unavailable() -> None:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS_ENV.items():
            patch.setenv(name, value)
        server, endpoint = start_s3()
        store = S3Storage(bucket="short-lived", endpoint_url=endpoint)
        store.ensure_bucket()
        store.put("a.jpg", b"x", "image/jpeg")
        server.stop()

        for call in (lambda: store.get("a.jpg"), lambda: store.put("b.jpg", b"x", "image/jpeg"), store.ping,
                     lambda: store.delete("a.jpg")):
            started = time.monotonic()
            with pytest.raises(StorageUnavailable):
                call()
            assert time.monotonic() - started < 10  # refused at once, not hung


@pytest.fixture(scope="module")
def s3_pipeline(s3_endpoint: str) -> Iterator[tuple[str, S3Storage]]:
    """API, GPU and CPU workers as processes on STORAGE_BACKEND=s3.

    They get the embedded filesystem broker in their own DATA_DIR, so the session's
    workers (local storage, Redis) never see these photos, and these never see theirs.
    """
    bucket = f"e2e-{uuid.uuid4().hex[:8]}"
    storage = S3Storage(bucket=bucket, prefix="e2e", endpoint_url=s3_endpoint)
    storage.ensure_bucket()
    data_dir = Path(tempfile.mkdtemp(prefix="demeter-s3-"))
    env = {
        **AWS_ENV, "DATA_DIR": str(data_dir), "BROKER_URL": "", "RESULT_BACKEND": "",
        "STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": s3_endpoint, "S3_BUCKET": bucket, "S3_PREFIX": "e2e",
    }
    with WorkerSet(data_dir / "logs", env=env) as processes:
        processes.start("gpu", ["-m", "workers.gpu"])
        processes.start("cpu", ["-m", "workers.cpu", "--queues=cpu,io", "--concurrency=1"])
        yield start_api(processes, "api-s3", {}), storage
        terminate_all(processes)


def test_photo_end_to_end_on_s3(s3_pipeline: tuple[str, S3Storage], api_key: str) -> None:
    base_url, storage = s3_pipeline
    with httpx.Client(base_url=base_url, timeout=30, headers=bearer(api_key)) as http:
        assert http.get("/readyz").json()["checks"]["storage"] == "ok"
        response = http.post("/api/v1/photos", files={"file": ("bench.jpg", blank_jpeg(640, 480), "image/jpeg")})
        assert response.status_code == 202, response.text
        status_url = response.json()["status_url"]
        deadline = time.monotonic() + 180
        while not (body := http.get(status_url).json())["thumbnail_url"]:
            assert body["status"] != "failed", body["error"]
            assert time.monotonic() < deadline, f"no thumbnail after 180 s: {body}"
            time.sleep(0.5)
        annotated = http.get(body["annotated_url"])

    assert body["status"] == "completed"
    assert annotated.status_code == 200 and annotated.headers["content-type"] == "image/jpeg"
    s3 = boto3.client("s3", endpoint_url=storage.client.meta.endpoint_url, region_name="us-east-1")
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=storage.bucket)["Contents"]]
    assert sorted(key.split("/")[1] for key in keys) == ["annotated", "original", "thumbnail"]
    assert all(key.startswith("e2e/") for key in keys)
    annotated_key = next(key for key in keys if key.split("/")[1] == "annotated")
    assert storage.get(annotated_key.removeprefix("e2e/")) == annotated.content
