"""Photos for tests and a way to wait for their sessions to end."""

from __future__ import annotations

import io
import time
from functools import lru_cache

import numpy as np
from PIL import Image

from app.db.models import ProcessingSession, SessionStatus
from app.db.session import db_session
from app.ml.images import encode_jpeg
from app.ml.synthetic import SyntheticPhoto, render_photo


@lru_cache(maxsize=8)
def synthetic(seed: int, width: int = 2048, height: int = 1536) -> SyntheticPhoto:
    return render_photo(seed, width=width, height=height)


def synthetic_jpeg(seed: int, width: int = 2048, height: int = 1536) -> bytes:
    return encode_jpeg(synthetic(seed, width, height).image)


def blank_jpeg(width: int = 1024, height: int = 768, colour: tuple[int, int, int] = (120, 110, 95)) -> bytes:
    """A bare bench: no container, no plant."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = colour
    return encode_jpeg(image)


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def wait_final(photo_id: int, timeout: float = 180.0, recount_model: str = "") -> ProcessingSession:
    """The photo's counting session (or its recount by `recount_model`) once it ended."""
    deadline = time.monotonic() + timeout
    while True:
        with db_session() as db:
            session = db.query(ProcessingSession).filter_by(photo_id=photo_id, recount_model=recount_model).one()
            if SessionStatus(session.status).is_final:
                return session
        if time.monotonic() > deadline:
            raise TimeoutError(f"photo {photo_id} still {session.status} after {timeout} s")
        time.sleep(0.3)
