"""Training slices are cut as inference cuts them, labels follow the pixels, photos (not slices) are held out;
the threshold calibration picks the count-minimising threshold."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from app.config import PROJECT_ROOT
from app.ml.calibration import PhotoCounts, choose_threshold, count_photo, match_count
from app.ml.cards import default_card, parse_card, read_card
from app.ml.labels import LabelledPhoto
from app.ml.sliced import SliceParams, letterboxed_tiles, region_windows
from app.ml.training import (
    DEFAULT_REHEARSAL,
    REHEARSAL_SEEDS,
    STRIDE,
    TrainPlan,
    add_rehearsal,
    default_style_photos,
    describe_base,
    nominal_batch,
    rehearsal_photos,
    split_photos,
    tile_label_lines,
    write_slices,
)


def _labelled(name: str) -> LabelledPhoto:
    return LabelledPhoto(Path(name), 100, 100, np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, bool))


@pytest.mark.parametrize(("shape", "imgsz"), [((1536, 2048), 320), ((3000, 4000), 320), ((700, 1000), 160)])
def test_slice_labels_land_on_their_plants(shape: tuple[int, int], imgsz: int) -> None:
    """White squares drawn in a photo are white in the training tile exactly where their label says."""
    height, width = shape
    rng = np.random.default_rng(1)
    image = np.zeros((height, width, 3), np.uint8)
    side = 40
    corners = np.column_stack([rng.uniform(0, width - side, 60), rng.uniform(0, height - side, 60)]).round()
    boxes = np.column_stack([corners, corners + side]).astype(np.float64)
    for x1, y1, x2, y2 in boxes.astype(int):
        image[y1:y2, x1:x2] = 255
    params = SliceParams(imgsz=imgsz)

    windows = region_windows(shape, (0, 0, width, height), params)
    tiles, box = letterboxed_tiles(image, windows, imgsz, STRIDE, rect=False)

    assert windows[0, 2] - windows[0, 0] == params.slice_pixels(width, height)  # the inference slice size
    assert tiles.shape[1:] == (imgsz, imgsz, 3)
    labelled = 0
    for window, tile in zip(windows, tiles, strict=True):
        for line in tile_label_lines(boxes, np.zeros(len(boxes), np.int64), window, box):
            _, cx, cy, w, h = (float(v) for v in line.split())
            if w * imgsz < 6 or h * imgsz < 6:
                continue  # a sliver cut by the slice edge
            x, y = round(cx * imgsz), round(cy * imgsz)
            assert tile[y, x].min() > 200, (window, line)
            labelled += 1
        # A plant whose centre is in the window is labelled there (once per window it is centred in).
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = np.all((centres >= window[:2]) & (centres < window[2:]), axis=1)
        assert len(tile_label_lines(boxes, np.zeros(len(boxes), np.int64), window, box)) == inside.sum()
    assert labelled > 30


def test_whole_photos_are_held_out() -> None:
    photos = tuple(_labelled(f"p{i}.jpg") for i in range(10))

    train, held = split_photos(photos, 0.2, seed=0)

    assert len(held) == 2 and len(train) == 8
    assert {p.name for p in train} | {p.name for p in held} == {p.name for p in photos}
    assert split_photos(photos, 0.2, seed=0) == (train, held)  # deterministic
    assert len(split_photos(photos[:2], 0.9, seed=0)[0]) == 1  # always something to train on
    with pytest.raises(ValueError, match="at least 2"):
        split_photos(photos[:1], 0.2, seed=0)


def test_matching_by_centre_distance() -> None:
    labels = np.array([[0, 0, 20, 20], [100, 100, 120, 120], [200, 200, 200, 200]], np.float64)
    found = np.array([[2, 2, 22, 22], [1, 1, 21, 21], [150, 150, 170, 170]], np.float64)

    assert match_count(found, labels) == 1  # two boxes on one plant match once; a far box matches none
    assert match_count(found[:0], labels) == 0


def test_threshold_with_the_lowest_count_error_wins() -> None:
    thresholds = (0.1, 0.2, 0.3)
    results = [PhotoCounts("a", 100, (130, 101, 60), (95, 95, 60)), PhotoCounts("b", 50, (70, 52, 20), None)]

    chosen = choose_threshold(results, thresholds)

    assert chosen.threshold == 0.2
    assert chosen.count_mape == pytest.approx((0.01 + 0.04) / 2)
    assert chosen.worst_photo == "b" and chosen.worst_error == pytest.approx(0.04)
    assert chosen.precision == pytest.approx(95 / 101) and chosen.recall == pytest.approx(0.95)  # boxed photos only


def test_a_tie_takes_the_middle_of_the_widest_range() -> None:
    """Two photos counted right from 0.1 to 0.5 (and by chance at 0.8): not the range's edge, its middle."""
    thresholds = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    results = [PhotoCounts("a", 1, (1, 1, 1, 1, 1, 0, 0, 1), None), PhotoCounts("b", 1, (1, 1, 1, 1, 1, 0, 0, 1), None)]

    assert choose_threshold(results, thresholds).threshold == 0.3
    assert choose_threshold(results, thresholds[:4]).threshold == 0.3  # an even run: its upper middle


def test_count_photo_uses_only_counted_classes() -> None:
    photo = LabelledPhoto(Path("x.jpg"), 100, 100, np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float64),
                          np.array([0, 1]), np.zeros(2, bool))

    def count_at(_image: np.ndarray, thresholds: list[float]) -> list[np.ndarray]:
        return [np.array([[0, 0, 10, 10]], np.float64) for _ in thresholds]

    counts = count_photo("x.jpg", np.zeros((1, 1, 3), np.uint8), count_at, (0.1, 0.5), labels=photo)

    assert counts.true_count == 1 and counts.counted == (1, 1) and counts.matched == (1, 1)


def test_rehearsal_by_default_only_for_a_synthetic_base() -> None:
    """The shipped detector's card names the generator: it rehearses; a grower-trained base does not."""
    shipped = parse_card(json.loads((PROJECT_ROOT / "models" / "plant_det.card.json").read_text()))
    grown = parse_card({**shipped.document, "training_data": {"source": "/data/bench-a"}})
    plan = TrainPlan(Path("d"), Path("o"), "n", Path("w.pt"), SliceParams())

    assert rehearsal_photos(plan, shipped) == DEFAULT_REHEARSAL > 0
    assert rehearsal_photos(plan, grown) == 0
    assert rehearsal_photos(plan, default_card("w.pt", "detect")) == 0
    assert rehearsal_photos(replace(plan, rehearsal=0), shipped) == 0
    assert rehearsal_photos(replace(plan, rehearsal=3), grown) == 3
    with pytest.raises(ValueError):
        rehearsal_photos(replace(plan, rehearsal=len(REHEARSAL_SEEDS) + 1), shipped)


def test_rehearsal_slices_join_the_training_split_only(tmp_path: Path) -> None:
    """Default-style slices, cut as the grower's, are sampled into train/ under their own names, their
    plants labelled with the grower's plant class; nothing lands elsewhere."""
    params = SliceParams(imgsz=160)
    photos = default_style_photos(tmp_path / "photos", REHEARSAL_SEEDS[0], 1, plant_class=2)
    train = tmp_path / "data" / "train"
    write_slices([], train, params, print)

    moved = add_rehearsal(train, photos, params, limit=5, progress=print)

    assert moved == 5
    assert sorted(p.parent.name for p in (tmp_path / "data").rglob("*") if p.is_file()) == ["images"] * 5 + [
        "labels"] * 5
    names = sorted(p.stem for p in (train / "images").iterdir())
    assert names == sorted(p.stem for p in (train / "labels").iterdir())
    assert all(name.startswith(f"rehearsal_{photos[0].image.stem}_") for name in names)
    classes = {line.split()[0] for p in (train / "labels").iterdir() for line in p.read_text().splitlines()}
    assert classes == {"2"}
    assert photos[0].width == 2048 and len(photos[0].boxes) > 100


@pytest.mark.parametrize(("slices", "batch"), [(1, 8), (8, 8), (9, 8), (20, 8), (40, 4), (30, 16)])
def test_a_few_photos_step_the_optimizer_every_epoch(slices: int, batch: int) -> None:
    """Ultralytics accumulates nbs / batch batches per optimizer step, counted across epochs: with the
    default nbs (64) ten photos of one pot each (one batch an epoch) would step once every 8 epochs."""
    batches_per_epoch = -(-slices // batch)
    accumulate = max(round(nominal_batch(slices, batch) / batch), 1)  # ultralytics' trainer, nbs -> steps
    assert accumulate <= batches_per_epoch
    assert max(round(64 / batch), 1) > batches_per_epoch  # the default would not


def test_larger_sets_keep_ultralytics_nominal_batch() -> None:
    assert nominal_batch(305, 8) == 64  # the synthetic second-style set: 38 batches an epoch


def test_the_card_names_the_base_model_and_its_weights_digest() -> None:
    weights = PROJECT_ROOT / "models" / "plant_det.pt"
    shipped = read_card(weights.with_name("plant_det.card.json"), weights, "detect")
    plan = TrainPlan(Path("d"), Path("o"), "n", weights, SliceParams(), base_name="shipped")

    described = describe_base(plan, shipped)

    assert described == {"name": "shipped", "weights": "plant_det.pt",
                         "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(), "card_id": shipped.id}
    assert shipped.known and shipped.id.endswith(described["weights_sha256"][:12])
    assert describe_base(replace(plan, base_name=""), shipped)["name"] == "plant_det.pt"
