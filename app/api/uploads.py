"""Reading an uploaded file within its limit, and telling what kind of file it claims to be.

The sniff only looks at the signature bytes: it separates "not an image we take"
(415) from "an image we take, but broken" (422, found later by decoding it fully).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from fastapi import UploadFile

CHUNK_BYTES = 1024 * 1024

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


MAX_FILENAME_CHARS = 255  # photos.original_filename


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None


class UploadTooLarge(Exception):
    """The file has more bytes than allowed."""


async def read_limited(upload: UploadFile, limit: int) -> bytes:
    """Read at most `limit` bytes in chunks; one byte more raises UploadTooLarge."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(min(CHUNK_BYTES, limit + 1 - size)):
        size += len(chunk)
        if size > limit:
            raise UploadTooLarge(f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def sniff_content_type(data: bytes) -> str | None:
    """The supported image type the leading bytes announce, or None."""
    for signature, content_type in _SIGNATURES:
        if data.startswith(signature):
            return content_type
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def clean_filename(name: str | None) -> str | None:
    """The client's file name, kept only as a label: base name, printable, at most 255 characters."""
    if not name:
        return None
    base = PureWindowsPath(PurePosixPath(name).name).name
    printable = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return printable[:MAX_FILENAME_CHARS] or None


def request_fingerprint(data: bytes, filename: str | None, metadata: dict[str, str]) -> str:
    """Hex SHA-256 of what makes an upload "the same request": the file's bytes, its name and the form fields."""
    described = json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "filename": filename, "metadata": metadata},
                           sort_keys=True)
    return hashlib.sha256(described.encode()).hexdigest()
