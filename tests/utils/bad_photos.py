"""Uploads that must be refused: not images, broken images, decompression bombs."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from tests.utils.photos import blank_jpeg


def text_file() -> bytes:
    return b"plant list\nbench 4: 120 trays\n" * 20


def gif_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (0, 128, 0)).save(buffer, format="GIF")
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    data = blank_jpeg(640, 480)
    return data[: len(data) // 2]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit PNG of width x height pixels, all black, compressed to a few dozen KB."""
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte + packed pixels
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_padded(size: int) -> bytes:
    """A real JPEG followed by padding up to `size` bytes (decoders ignore what follows the image)."""
    data = blank_jpeg(64, 48)
    return data + bytes(max(0, size - len(data)))


def panorama_jpeg(width: int = 9600, height: int = 800) -> bytes:
    """A 12:1 strip, as a phone's panorama of several benches."""
    return blank_jpeg(width, height)
