"""PNG validation in bounded memory: what a full decode would refuse, refused without decoding."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app.errors import InvalidImage
from app.ml.images import inspect_image
from app.ml.pngcheck import CHUNK_BYTES, check_png, row_layout


def png(mode: str, size: tuple[int, int] = (300, 200), seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 4), np.uint8)
    image = Image.fromarray(pixels, "RGBA").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def rebuilt(raw_rows: bytes, width: int, height: int, idat_parts: int = 1) -> bytes:
    """An 8-bit greyscale PNG whose inflated pixel data is exactly `raw_rows`."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    compressed = zlib.compress(raw_rows)
    step = -(-len(compressed) // idat_parts)
    idats = b"".join(chunk(b"IDAT", compressed[i:i + step]) for i in range(0, len(compressed), step))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + idats + chunk(b"IEND", b""))


def grey_rows(width: int, height: int, filter_type: int = 0) -> bytes:
    return b"".join(bytes([filter_type]) + bytes(i % 251 for i in range(width)) for _ in range(height))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "1", "LA", "I;16"])
def test_valid_pngs_of_every_colour_type_pass(mode: str) -> None:
    data = png(mode)
    check_png(data)
    assert (inspect_image(data).width, inspect_image(data).height) == (300, 200)


def test_pixel_data_split_over_many_idat_chunks_and_longer_than_one_piece_passes() -> None:
    width, height = 2000, 1200  # 2.4 MB inflated: several CHUNK_BYTES pieces
    assert width * height > 2 * CHUNK_BYTES
    check_png(rebuilt(grey_rows(width, height), width, height, idat_parts=7))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (rebuilt(grey_rows(50, 40)[:-50], 50, 40), "truncated PNG"),  # a row short
        (rebuilt(grey_rows(50, 41), 50, 40), "longer than its size"),  # a row too many
        (rebuilt(grey_rows(50, 40, filter_type=7), 50, 40), "unknown filter type"),
        (png("RGB")[:-2000], "truncated"),  # the file cut short
    ],
    ids=["short-rows", "extra-rows", "bad-filter", "cut-file"],
)
def test_broken_pixel_data_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImage, match=message):
        check_png(data)
    with pytest.raises(InvalidImage):
        inspect_image(data)


def test_a_flipped_byte_in_the_compressed_data_is_refused() -> None:
    data = bytearray(rebuilt(grey_rows(300, 200), 300, 200))
    data[60] ^= 0xFF  # inside the IDAT payload

    with pytest.raises(InvalidImage):
        check_png(bytes(data))


def test_adam7_sub_images_follow_the_png_specification() -> None:
    # 8 x 8 RGB, 8-bit: passes of 1x1, 1x1, 2x1, 2x2, 4x2, 4x4 and 8x4 pixels (PNG spec, figure 8.1).
    assert row_layout(8, 8, 8, 2, interlaced=True) == [(1, 4), (1, 4), (1, 7), (2, 7), (2, 13), (4, 13), (4, 25)]
    assert row_layout(1, 1, 8, 2, interlaced=True) == [(1, 4)]  # only the first pass has pixels
    assert row_layout(10, 3, 1, 0, interlaced=False) == [(3, 3)]  # 10 one-bit pixels: 2 bytes + filter


def test_a_png_turned_by_its_exif_orientation_reports_the_turned_size() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200)).save(buffer, format="PNG", exif=exif.tobytes())

    info = inspect_image(buffer.getvalue())

    assert (info.width, info.height) == (200, 300)
