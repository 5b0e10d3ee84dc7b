"""Upload validation and decoding: every byte of a photo is checked, its size is the one a grower sees,
and every pixel format becomes the picture a grower sees (wide samples scaled, never clipped)."""

from __future__ import annotations

import functools
import io

import cv2
import numpy as np
import pytest
from PIL import ExifTags, Image

from app.errors import InvalidImage
from app.ml.images import decode_rgb, inspect_image
from app.ml.pipeline import analyse_photo
from app.ml.registry import get_registry
from tests.utils.bad_photos import panorama_jpeg
from tests.utils.photos import synthetic, synthetic_jpeg


def _jpeg_with_orientation(orientation: int, width: int = 64, height: int = 48) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 140, 60)).save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


def test_a_photo_cut_near_its_end_is_refused() -> None:
    data = synthetic_jpeg(9001)

    with pytest.raises(InvalidImage, match="corrupt or truncated"):
        inspect_image(data[: int(len(data) * 0.97)])


def test_a_whole_photo_reports_its_full_size() -> None:
    info = inspect_image(synthetic_jpeg(9001))

    assert (info.format, info.width, info.height) == ("JPEG", 2048, 1536)


@pytest.mark.parametrize(("orientation", "size"), [(1, (64, 48)), (3, (64, 48)), (6, (48, 64)), (8, (48, 64))])
def test_exif_orientation_decides_width_and_height(orientation: int, size: tuple[int, int]) -> None:
    info = inspect_image(_jpeg_with_orientation(orientation))

    assert (info.width, info.height) == size


@pytest.mark.parametrize(("orientation", "shape"), [(1, (48, 64, 3)), (6, (64, 48, 3)), (8, (64, 48, 3))])
def test_decoded_photos_are_upright(orientation: int, shape: tuple[int, int, int]) -> None:
    assert decode_rgb(_jpeg_with_orientation(orientation)).shape == shape


def _png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8/uint16 gray (H x W) or RGB (H x W x 3) array, written by OpenCV (which keeps 16 bits)."""
    channels_last = array[..., ::-1] if array.ndim == 3 else array  # OpenCV writes BGR
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(channels_last))
    assert ok
    return encoded.tobytes()


def _widen(array8: np.ndarray, seed: int = 0) -> np.ndarray:
    """8-bit samples -> 16-bit ones as a camera writes them: the 8 bits on top, noise below."""
    noise = np.random.default_rng(seed).integers(0, 256, array8.shape, dtype=np.uint16)
    return array8.astype(np.uint16) * 256 + noise


@functools.lru_cache(maxsize=1)
def _gray_bench() -> np.ndarray:
    return np.asarray(Image.fromarray(synthetic(9000, 1024, 768).image).convert("L"))


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    gray8 = _gray_bench()

    decoded = decode_rgb(_png(_widen(gray8)))

    assert decoded.shape == (*gray8.shape, 3)
    assert np.abs(decoded[..., 0].astype(int) - gray8).max() <= 1
    assert (decoded[..., 0] == decoded[..., 2]).all()


def test_48_bit_rgb_is_scaled_not_clipped() -> None:
    rgb8 = synthetic(9000, 1024, 768).image

    decoded = decode_rgb(_png(_widen(rgb8)))

    assert np.abs(decoded.astype(int) - rgb8).max() <= 1


def _counted(data: bytes) -> tuple[int, int]:
    analysis = analyse_photo(decode_rgb(data), get_registry())
    return len(analysis.regions), analysis.total


def test_16_bit_grayscale_counts_like_its_8_bit_twin() -> None:
    gray8 = _gray_bench()

    regions8, count8 = _counted(_png(gray8))
    regions16, count16 = _counted(_png(_widen(gray8)))

    assert count8 > 100  # the twin itself is counted, so the comparison means something
    assert regions16 == regions8
    assert abs(count16 - count8) <= 0.05 * count8


def test_48_bit_rgb_counts_like_its_8_bit_twin() -> None:
    rgb8 = synthetic(9000, 1024, 768).image

    regions8, count8 = _counted(_png(rgb8))
    regions16, count16 = _counted(_png(_widen(rgb8)))

    assert count8 > 100
    assert regions16 == regions8
    assert abs(count16 - count8) <= 0.05 * count8


def test_a_panorama_is_refused_naming_the_limit() -> None:
    with pytest.raises(InvalidImage, match=r"12\.0:1.*3:1 \(MAX_ASPECT_RATIO\)"):
        inspect_image(panorama_jpeg(9600, 800), max_aspect_ratio=3.0)


def test_a_photo_within_the_aspect_limit_is_accepted() -> None:
    assert inspect_image(panorama_jpeg(2400, 800), max_aspect_ratio=3.0).width == 2400
