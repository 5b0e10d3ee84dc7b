"""Checking that a PNG's pixel data is complete, in bounded memory.

Decoding a PNG to validate it holds the whole picture in memory (~3-4 bytes a pixel: 180 MiB
for a 7000 x 7000 photo, whatever its file size). This reads the compressed stream instead,
one piece of at most CHUNK_BYTES at a time, and checks what a decoder would fail on: the
zlib stream (its Adler-32 included) is intact, it inflates to exactly the bytes the header's
size announces (PNG spec, section 7: per row one filter byte then the packed pixels; Adam7
interlacing as seven sub-images), and every row's filter type is 0-4.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from app.errors import InvalidImage

CHUNK_BYTES = 1024 * 1024  # inflated bytes held at once
INPUT_BYTES = 64 * 1024  # compressed bytes fed at once
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples a pixel (PNG spec, table 11.1)
# Adam7 passes: (x start, y start, x step, y step) (PNG spec, section 8.2).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    view, position = memoryview(data), len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", view[position:position + 8])
        body = view[position + 8:position + 8 + length]
        if len(body) < length:
            raise InvalidImage(f"truncated PNG chunk {kind!r}")
        yield kind, body
        if kind == b"IEND":
            return
        position += 12 + length


def row_layout(width: int, height: int, bit_depth: int, colour_type: int, interlaced: bool) -> list[tuple[int, int]]:
    """[(rows, bytes a row including its filter byte)] of each (sub-)image, in stream order."""
    if colour_type not in _CHANNELS:
        raise InvalidImage(f"PNG colour type {colour_type} does not exist")
    bits = _CHANNELS[colour_type] * bit_depth
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    layout = []
    for x0, y0, dx, dy in passes:
        columns, rows = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if columns > 0 and rows > 0:
            layout.append((rows, 1 + (columns * bits + 7) // 8))
    return layout


def _row_starts(layout: list[tuple[int, int]]) -> Iterator[tuple[int, int, int]]:
    """(first byte, row length, rows) of each sub-image, as offsets in the inflated stream."""
    offset = 0
    for rows, row_bytes in layout:
        yield offset, row_bytes, rows
        offset += rows * row_bytes


def check_png(data: bytes) -> bytes | None:
    """Raise InvalidImage unless the PNG's pixel data is complete and well-formed; return its eXIf chunk.

    Memory: O(CHUNK_BYTES). The EXIF block is returned because Pillow's `getexif()` on a PNG decodes
    the whole image to look for it.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise InvalidImage("not a PNG")
    chunks = _chunks(data)
    kind, header = next(chunks, (b"", memoryview(b"")))
    if kind != b"IHDR" or len(header) != 13:
        raise InvalidImage("PNG without its IHDR header")
    width, height, bit_depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    layout = row_layout(width, height, bit_depth, colour_type, interlace == 1)
    expected = sum(rows * row_bytes for rows, row_bytes in layout)
    sub_images = list(_row_starts(layout))
    inflater, produced, exif = zlib.decompressobj(), 0, None
    try:
        for kind, body in chunks:
            if kind == b"eXIf":
                exif = bytes(body)
            if kind != b"IDAT" or inflater.eof:
                continue
            # Fed in small slices: the inflater's unconsumed tail is a copy, so it must stay small.
            for start in range(0, len(body), INPUT_BYTES):
                pending: bytes | memoryview = body[start:start + INPUT_BYTES]
                while pending and not inflater.eof:
                    piece = inflater.decompress(pending, CHUNK_BYTES)
                    _check_filters(piece, produced, sub_images)
                    produced += len(piece)
                    if produced > expected:
                        raise InvalidImage("PNG pixel data is longer than its size says")
                    pending = inflater.unconsumed_tail
    except zlib.error as exc:
        raise InvalidImage(f"corrupt PNG pixel data: {exc}") from exc
    if not inflater.eof or produced != expected:
        raise InvalidImage(f"truncated PNG: {produced} of {expected} bytes of pixel data")
    return exif


def _check_filters(piece: bytes, offset: int, sub_images: list[tuple[int, int, int]]) -> None:
    """Every row that starts inside `piece` (at `offset` in the stream) has a filter type 0-4."""
    end = offset + len(piece)
    for start, row_bytes, rows in sub_images:
        stop = start + rows * row_bytes
        if stop <= offset or start >= end:
            continue
        first = start + max(0, -(-(offset - start) // row_bytes)) * row_bytes  # first row start >= offset
        filters = piece[first - offset:min(end, stop) - offset:row_bytes]
        if filters and max(filters) > 4:
            raise InvalidImage("PNG row with an unknown filter type")
