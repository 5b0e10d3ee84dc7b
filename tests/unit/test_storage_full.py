"""A full disk under local storage: a clear StorageUnavailable (503 at upload), no partial file left."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.errors import StorageUnavailable
from app.storage.local import LocalStorage


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a real file system that fills up (needs the privilege to mount, else skipped)."""
    root = tmp_path / "small"
    root.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(root)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield root
    finally:
        subprocess.run(["umount", str(root)], check=True)


def test_a_write_to_a_full_disk_is_storage_unavailable_and_leaves_nothing(full_disk: Path) -> None:
    storage = LocalStorage(full_disk)
    storage.put("small/fits.jpg", b"x" * 1024, "image/jpeg")

    with pytest.raises(StorageUnavailable, match="No space left"):
        storage.put("big/does-not-fit.jpg", b"x" * 200_000, "image/jpeg")

    assert sorted(p.name for p in full_disk.rglob("*") if p.is_file()) == ["fits.jpg"]  # no .tmp- file
    storage.delete("small/fits.jpg")
    storage.put("big/does-not-fit.jpg", b"x" * 40_000, "image/jpeg")  # space is back: it works again
