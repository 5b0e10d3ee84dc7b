"""Decoding and validating photos. Content decides the format, never the file name.

One decoder for everything that reads a photo: upload validation (`inspect_image`), the GPU
workers (`decode_rgb`) and the annotated image (`open_rgb`). Every pixel format it accepts is
turned into 8-bit RGB by scaling, never by clipping: Pillow's own `convert("RGB")` clamps a
16-bit grayscale PNG (mode `I;16`, values up to 65535) to 255, an all-white picture.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps

from app.errors import InvalidImage
from app.ml.pngcheck import check_png

# MPO is how Pillow names a JPEG with a multi-picture segment, as many cameras and phones write.
SUPPORTED_FORMATS = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp"}
MAX_PIXELS = 50_000_000  # ~ 8k x 6k; far above any bench camera, far below a decompression bomb
# Pillow modes of 16 or 32 bits a sample, as a 16-bit grayscale PNG opens (I;16 in Pillow >= 10, I before).
# A 48-bit RGB PNG opens as plain RGB: Pillow keeps the high byte of each sample, which is scaling already.
_WIDE_GRAY_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
_WIDE_GRAY_MAX = 65535  # PNG stores at most 16 bits a sample; Pillow's mode I holds them unscaled


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


# EXIF orientations 5 to 8 turn the picture by 90 degrees: its displayed width and height swap.
_QUARTER_TURNS = {5, 6, 7, 8}


# Every 8 x 8 block of a Huffman-coded JPEG costs at least one bit (its DC code; baseline adds an
# end-of-block code): ITU T.81, F.1.2. libjpeg fills missing blocks with grey and only warns, so a
# header that claims more pixels than the data can hold is caught by counting instead.
MIN_JPEG_BITS_PER_BLOCK = 1


def _check_jpeg_size(size_bytes: int, width: int, height: int) -> None:
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    if size_bytes * 8 < blocks * MIN_JPEG_BITS_PER_BLOCK:
        raise InvalidImage(f"the JPEG claims {width} x {height} pixels but holds too few bytes for them "
                           f"({size_bytes} bytes, at least {blocks * MIN_JPEG_BITS_PER_BLOCK // 8} needed)")


def _check_aspect_ratio(width: int, height: int, max_aspect_ratio: float | None) -> None:
    if max_aspect_ratio is None:
        return
    ratio = max(width, height) / max(1, min(width, height))
    if ratio > max_aspect_ratio:
        raise InvalidImage(
            f"image is {width}x{height} pixels, an aspect ratio of {ratio:.1f}:1, above the limit of "
            f"{max_aspect_ratio:g}:1 (MAX_ASPECT_RATIO): the container finder works on the whole photo at "
            f"a fixed size and sees nothing on a panorama; upload each bench as its own photo"
        )


def inspect_image(data: bytes, max_pixels: int = MAX_PIXELS, max_aspect_ratio: float | None = None) -> ImageInfo:
    """Validate an upload fully (every byte of it is read) and return its format and oriented size.

    A JPEG is decoded at 1/8 scale (Pillow's draft mode): the decoder still reads all of the
    compressed data, so a truncated or corrupt file fails here, at about a third of a full decode's cost,
    and 1/64 of its memory. A PNG's compressed pixel data is checked as a stream in bounded memory
    (app/ml/pngcheck.py), never decoded whole. A WebP is decoded in full (no partial decoder exists).
    Raises InvalidImage for unreadable or unsupported data, and for a long side more than
    `max_aspect_ratio` times the short one (None: no limit).
    """
    image = _open(data, max_pixels)
    width, height = image.size
    _check_aspect_ratio(width, height, max_aspect_ratio)
    exif: Image.Exif | None = None
    try:
        if image.format == "PNG":
            exif = Image.Exif()
            if (block := check_png(data)) is not None:
                exif.load(block)
        elif image.format in ("JPEG", "MPO"):
            _check_jpeg_size(len(data), width, height)
            image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
        else:
            image.load()
    except InvalidImage:
        raise
    except Exception as exc:
        raise InvalidImage(f"corrupt or truncated {image.format} image") from exc
    if (exif if exif is not None else image.getexif()).get(ExifTags.Base.Orientation) in _QUARTER_TURNS:
        width, height = height, width
    return ImageInfo(format=str(image.format), width=width, height=height)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any decoded Pillow image -> 8-bit RGB, wide samples scaled to 0..255 (never clipped).

    16-bit grayscale (0..65535) becomes value * 255 / 65535, rounded; every other mode goes
    through Pillow's conversion (palette, gray, alpha, CMYK), which is exact for 8-bit data.
    """
    if image.mode == "RGB":
        return image
    if image.mode in _WIDE_GRAY_MODES:
        wide = np.asarray(image).astype(np.int64).clip(0, _WIDE_GRAY_MAX)
        gray = ((wide * 255 + _WIDE_GRAY_MAX // 2) // _WIDE_GRAY_MAX).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    return image.convert("RGB")


def open_rgb(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Bytes -> a decoded RGB Pillow image, EXIF orientation applied (in place: no copies of the photo)."""
    image = _open(data, max_pixels)
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        return to_rgb(image)
    except Exception as exc:
        raise InvalidImage(f"corrupt or truncated {image.format} image") from exc


def decode_rgb(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Bytes -> H x W x 3 RGB uint8, EXIF orientation applied."""
    return np.asarray(open_rgb(data, max_pixels))


def decode_rgb_cuda(data: bytes) -> np.ndarray | None:
    """A plain JPEG decoded by nvJPEG on the GPU (`torchvision.io.decode_jpeg(device="cuda")`), as
    `decode_rgb` gives it (H x W x 3 RGB uint8, on the host); None where that path does not apply (not a
    baseline 3-channel JPEG, an EXIF orientation to apply, no CUDA, a decoder error): `decode_rgb` then.

    Checked on a GPU by tests/test_gpu.py; timed against Pillow by benchmarks/bench_decode.py.
    """
    try:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        with Image.open(io.BytesIO(data)) as header:  # reads the header only
            turned = header.getexif().get(ExifTags.Base.Orientation, 1) != 1
            if header.format != "JPEG" or header.mode != "RGB" or turned:
                return None
        if not torch.cuda.is_available():
            return None
        encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device="cuda")
        # C x H x W -> H x W x C on the GPU, then one contiguous copy to the host. Reordering on the host after
        # the copy made a 4000x3000 photo cost 97.5 ms instead of 32.7 (7.3 of them nvJPEG itself; H200).
        return decoded.permute(1, 2, 0).contiguous().cpu().numpy()
    except Exception:  # any failure here falls back to Pillow, which reports bad data properly
        return None


def encode_jpeg(image_rgb: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image_rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
