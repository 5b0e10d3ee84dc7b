"""Checks that need a CUDA GPU. Skipped where torch sees none (the CI machine has none); on a GPU machine
`./scripts/test.sh tests/test_gpu.py` runs them against the same services as the rest of the suite."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from app import names
from app.config import Settings
from app.intake import submit_photo
from app.ml.images import decode_rgb, decode_rgb_cuda, encode_jpeg
from app.ml.pipeline import slice_params
from app.ml.registry import ModelRegistry
from app.ml.sliced import agreement, detect_in_region
from tests.utils.photos import synthetic, synthetic_jpeg, wait_final
from tests.utils.processes import WorkerSet

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_nvjpeg_decodes_a_photo_as_pillow_does() -> None:
    data = synthetic_jpeg(9100)

    on_gpu, on_host = decode_rgb_cuda(data), decode_rgb(data)

    assert on_gpu is not None
    assert on_gpu.shape == on_host.shape and on_gpu.dtype == np.uint8
    # Both decode the same 4:2:0 JPEG; they may round the IDCT and upsample chroma differently.
    difference = np.abs(on_gpu.astype(np.int16) - on_host.astype(np.int16))
    assert difference.mean() < 2.0, difference.mean()


def test_a_turned_photo_or_another_format_is_left_to_pillow() -> None:
    image = Image.fromarray(synthetic(9100).image)
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90 degrees to display
    turned = io.BytesIO()
    image.save(turned, format="JPEG", exif=exif)
    png = io.BytesIO()
    image.save(png, format="PNG")

    assert decode_rgb_cuda(turned.getvalue()) is None
    assert decode_rgb_cuda(png.getvalue()) is None


def test_the_engine_at_fp16_on_cuda_finds_the_plants_it_finds_at_fp32_on_the_cpu() -> None:
    photo = synthetic(9511).image
    height, width = photo.shape[:2]
    params = slice_params(Settings())
    found = {}
    for device, precision in (("cpu", "fp32"), ("cuda:0", "fp16")):
        settings = Settings().model_copy(update={"device": device, "detection_runtime": "torch",
                                                 "detection_precision": precision})
        detector = ModelRegistry(settings).tile_detector()
        found[device] = detect_in_region(detector, photo, (0, 0, width, height), params).boxes

    f1, count_difference = agreement(found["cuda:0"], found["cpu"])
    assert f1 >= 0.98 and count_difference <= 0.01, (f1, count_difference)


def test_the_gpu_worker_counts_on_cuda_and_decodes_with_nvjpeg(workers: WorkerSet) -> None:
    from app.celery_app import app as celery

    info = celery.send_task(names.PROCESS_INFO_TASK, queue="gpu_queue_0").get(timeout=60)
    assert info["cuda_available"] and info["cuda_initialized"], info
    truth = synthetic(9100)
    submission = submit_photo(encode_jpeg(truth.image), filename="gpu.jpg", correlation_id="gpu-test-1")

    session = wait_final(submission.photo_id)

    assert session.status == "completed", (session.error, session.doubts)
    assert abs((session.total_count or 0) - truth.true_count) <= 0.08 * truth.true_count
    loads = [line for line in workers.logs("gpu") if line.get("event") == "photo loaded"
             and line.get("photo_id") == submission.photo_id]
    assert [line["decoder"] for line in loads] == ["nvjpeg"]
