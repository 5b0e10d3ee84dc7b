"""Upload validation: every byte of a photo is checked, and its size is the one a grower sees."""

from __future__ import annotations

import io

import pytest
from PIL import ExifTags, Image

from app.errors import InvalidImage
from app.ml.images import decode_rgb, inspect_image
from tests.utils.photos import synthetic_jpeg


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
