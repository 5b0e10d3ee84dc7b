"""Decoding and validating photos. Content decides the format, never the file name."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from app.errors import InvalidImage

# MPO is how Pillow names a JPEG with a multi-picture segment, as many cameras and phones write.
SUPPORTED_FORMATS = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp"}
MAX_PIXELS = 50_000_000  # ~ 8k x 6k; far above any bench camera, far below a decompression bomb


@dataclass(frozen=True)
class ImageInfo:
    format: str  # "JPEG" | "PNG" | "WEBP"
    width: int  # after EXIF orientation
    height: int

    @property
    def content_type(self) -> str:
        return SUPPORTED_FORMATS[self.format]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise InvalidImage("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"image has too many pixels: {exc}") from exc
    except Exception as exc:
        raise InvalidImage("not a readable image (JPEG, PNG or WebP expected)") from exc
    if image.format not in SUPPORTED_FORMATS:
        raise InvalidImage(f"unsupported image format {image.format!r} (JPEG, PNG or WebP expected)")
    if image.width * image.height > max_pixels:
        raise InvalidImage(f"image has {image.width * image.height} pixels, more than the limit of {max_pixels}")
    return image


def inspect_image(data: bytes, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Validate an upload fully (decodes it) and return its format and oriented size."""
    image = _open(data, max_pixels)
    try:
        image.load()
    except Exception as exc:
        raise InvalidImage(f"corrupt or truncated {image.format} image") from exc
    width, height = image.size
    if ImageOps.exif_transpose(image).size != (width, height):
        width, height = height, width
    return ImageInfo(format=str(image.format), width=width, height=height)


def decode_rgb(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Bytes -> H x W x 3 RGB uint8, EXIF orientation applied."""
    image = _open(data, max_pixels)
    try:
        image = ImageOps.exif_transpose(image)
        return np.asarray(image.convert("RGB"))
    except Exception as exc:
        raise InvalidImage(f"corrupt or truncated {image.format} image") from exc


def encode_jpeg(image_rgb: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image_rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
