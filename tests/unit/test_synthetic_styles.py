"""The generator's style options change only what they name: the default style renders byte-identically."""

from __future__ import annotations

import hashlib

import pytest

from app.ml.synthetic import STYLES, render_photo

# SHA-256 of the pixels and ground truth rendered before the style options existed.
DEFAULT_RENDERS = {
    (9000, 2048, 1536): ("a05d84f24be9581265e84db933fef28fe10cfebc2a98830ca005346f4201916d", 716),
    (1234, 1024, 768): ("7d2fe40088222546544d36a6deab982c63073869d6263832c5d43d684e0b64c5", 619),
    (9001, 640, 480): ("2fa3bd6f175ce87bc933f85b06d2a383bdfb321f7b7071621495553ff67ffce1", 669),
}


def _digest(seed: int, width: int, height: int, style: str = "default") -> tuple[str, int]:
    photo = render_photo(seed, width, height, style=STYLES[style])
    digest = hashlib.sha256(photo.image.tobytes())
    digest.update(repr([(c.kind, c.polygon, c.bbox, c.plants) for c in photo.containers]).encode())
    return digest.hexdigest(), photo.true_count


@pytest.mark.parametrize("key", sorted(DEFAULT_RENDERS))
def test_default_style_renders_byte_identically(key: tuple[int, int, int]) -> None:
    assert _digest(*key) == DEFAULT_RENDERS[key]


def test_second_style_differs_and_labels_empty_cells() -> None:
    default = render_photo(9001, 1024, 768)
    perlite = render_photo(9001, 1024, 768, style=STYLES["perlite"])

    assert len(default.containers) == len(perlite.containers)  # the same bench layout
    assert perlite.image.tobytes() != default.image.tobytes()
    assert sum(len(c.empty_cells) for c in perlite.containers if c.kind == "tray") > 0
    # Larger plants: fewer of them, and a larger median size.
    sides = [((b[2] - b[0]) * (b[3] - b[1])) ** 0.5 for c in perlite.containers for b in c.plants]
    base = [((b[2] - b[0]) * (b[3] - b[1])) ** 0.5 for c in default.containers for b in c.plants]
    assert sorted(sides)[len(sides) // 2] > 1.4 * sorted(base)[len(base) // 2]
    assert _digest(9001, 640, 480, "perlite") == _digest(9001, 640, 480, "perlite")  # deterministic
