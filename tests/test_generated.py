"""The generated scenarios: deterministic, labelled truthfully, balanced, knob-driven, cached."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from mtl.data import generated
from mtl.data.generated import COLORS, generate_splits, render, task_classes
from mtl.errors import UserError


def color_index(name: str) -> int:
    return COLORS.index(name)


def nearest_reference_colour(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """For each image, the index in COLORS of the reference RGB nearest to the mean
    colour of its masked pixels."""
    inside = masks[..., None]
    mean_rgb = (images * inside).sum(axis=(1, 2)) / inside.sum(axis=(1, 2))
    reference = generated.COLOR_REFERENCE_RGB.astype(float)
    return np.argmin(((mean_rgb[:, None, :] - reference[None]) ** 2).sum(-1), axis=1)


def test_task_classes_share_one_colour_vocabulary():
    assert task_classes("fruits") == {"fruit": ("apple", "orange", "banana"), "color": COLORS}
    assert task_classes("objects") == {
        "shape": ("cube", "ball", "triangle"),
        "is_cube": ("no", "yes"),
        "color": COLORS,
    }


@pytest.mark.parametrize("scenario", generated.SCENARIOS)
def test_render_shapes_and_dtypes(scenario):
    images, labels, masks = render(scenario, 10, seed=0, image_size=40, return_masks=True)
    assert images.shape == (10, 40, 40, 3) and images.dtype == np.uint8
    assert masks.shape == (10, 40, 40) and masks.dtype == bool
    assert set(labels) == set(task_classes(scenario))
    for task, values in labels.items():
        assert values.shape == (10,) and values.dtype == np.int64
        assert 0 <= values.min() and values.max() < len(task_classes(scenario)[task])
    # Every image shows its object: a solid patch, neither a speck nor the whole frame.
    covered = masks.mean(axis=(1, 2))
    assert covered.min() > 0.03 and covered.max() < 0.8


def test_same_seed_same_data_and_different_seed_different_data():
    first_images, first_labels = render("fruits", 300, seed=7)
    again_images, again_labels = render("fruits", 300, seed=7)
    other_images, other_labels = render("fruits", 300, seed=8)
    assert np.array_equal(first_images, again_images)
    assert all(np.array_equal(first_labels[t], again_labels[t]) for t in first_labels)
    assert not np.array_equal(first_images, other_images)
    assert not np.array_equal(first_labels["fruit"], other_labels["fruit"])
    # Labels have their own stream: the same whatever the image size.
    _, small_labels = render("fruits", 300, seed=7, image_size=8)
    assert all(np.array_equal(first_labels[t], small_labels[t]) for t in first_labels)


def test_a_split_does_not_depend_on_the_other_splits():
    small_val = generate_splits("objects", {"train": 300, "val": 20}, seed=3)
    large_val = generate_splits("objects", {"val": 50, "train": 300, "test": 10}, seed=3)
    assert np.array_equal(small_val["train"][0], large_val["train"][0])
    for task in task_classes("objects"):
        assert np.array_equal(small_val["train"][1][task], large_val["train"][1][task])
    # Splits come from different streams, so they share no images.
    assert not np.array_equal(small_val["val"][0], small_val["train"][0][:20])


@pytest.mark.parametrize("scenario", generated.SCENARIOS)
def test_colour_label_matches_the_pixels_of_the_object(scenario):
    images, labels, masks = render(scenario, 400, seed=1, return_masks=True)
    agreement = np.mean(nearest_reference_colour(images, masks) == labels["color"])
    # Hue jitter, shading and noise blur neighbouring colours on purpose, but the label
    # must still be the nearest colour for the large majority of images.
    assert agreement > 0.85
    clean_images, clean_labels, clean_masks = render(
        scenario, 400, seed=1, return_masks=True, hue_jitter=0.0, noise=0.0
    )
    assert np.mean(nearest_reference_colour(clean_images, clean_masks) == clean_labels["color"]) > 0.97


def test_is_cube_agrees_with_shape_and_cubes_are_not_round():
    images, labels, masks = render("objects", 300, seed=2, return_masks=True, rotation=0.0)
    cube = task_classes("objects")["shape"].index("cube")
    ball = task_classes("objects")["shape"].index("ball")
    assert np.array_equal(labels["is_cube"], (labels["shape"] == cube).astype(np.int64))
    # Unrotated, a cube fills more of its bounding box than a ball (pi/4) or a triangle (1/2).
    rows, columns = masks.any(axis=2), masks.any(axis=1)
    fill = masks.sum(axis=(1, 2)) / (rows.sum(1) * columns.sum(1))
    assert fill[labels["shape"] == cube].mean() > fill[labels["shape"] == ball].mean() + 0.05


@pytest.mark.parametrize("scenario", generated.SCENARIOS)
def test_kinds_are_balanced_and_every_scenario_colour_appears(scenario):
    _, labels = render(scenario, 601, seed=4, image_size=LABELS_ONLY)
    kind_task = "fruit" if scenario == "fruits" else "shape"
    assert set(np.bincount(labels[kind_task], minlength=3)) <= {200, 201}
    used = {COLORS[i] for i in np.unique(labels["color"])}
    assert used == set(generated.SCENARIO_COLORS[scenario])


def test_object_colour_is_uniform_and_independent_of_shape():
    _, labels = render("objects", 1800, seed=5, image_size=LABELS_ONLY)
    counts = np.zeros((3, len(COLORS)), int)
    np.add.at(counts, (labels["shape"], labels["color"]), 1)
    used = [color_index(c) for c in generated.SCENARIO_COLORS["objects"]]
    assert counts[:, color_index("brown")].sum() == 0
    # 100 expected per (shape, colour) cell.
    assert counts[:, used].min() > 60 and counts[:, used].max() < 140


# Label-only tests draw tiny images: labels come from their own stream, whatever the size.
LABELS_ONLY = 8


def fruit_colour_counts(color_correlation: float, n: int = 1500) -> np.ndarray:
    _, labels = render("fruits", n, seed=6, image_size=LABELS_ONLY, color_correlation=color_correlation)
    counts = np.zeros((3, len(COLORS)), int)
    np.add.at(counts, (labels["fruit"], labels["color"]), 1)
    return counts


def test_full_colour_correlation_gives_only_typical_colours():
    counts = fruit_colour_counts(1.0)
    fruits = task_classes("fruits")["fruit"]
    for fruit, row in zip(fruits, counts):
        seen = {COLORS[i] for i in np.flatnonzero(row)}
        assert seen == set(generated.TYPICAL_FRUIT_COLORS[fruit])
    assert counts[fruits.index("apple"), color_index("brown")] == 0


def test_zero_colour_correlation_makes_colour_independent_of_fruit():
    counts = fruit_colour_counts(0.0)
    used = [color_index(c) for c in generated.SCENARIO_COLORS["fruits"]]
    # 100 expected per (fruit, colour) cell: brown apples and red bananas included.
    assert counts[:, used].min() > 60 and counts[:, used].max() < 140


def test_partial_colour_correlation_sits_in_between():
    counts = fruit_colour_counts(0.5)
    fruits = task_classes("fruits")["fruit"]
    brown_apples = counts[fruits.index("apple"), color_index("brown")] / counts[fruits.index("apple")].sum()
    # Half the apples draw uniformly over five colours: about 10% brown.
    assert 0.05 < brown_apples < 0.16


def test_unknown_knob_is_a_user_error_naming_it_and_the_valid_ones():
    with pytest.raises(UserError, match="brightness") as raised:
        render("fruits", 4, seed=0, brightness=2.0)
    message = str(raised.value)
    assert "\n" not in message
    assert all(knob in message for knob in generated.DEFAULT_KNOBS)
    with pytest.raises(UserError, match="brightness"):
        generate_splits("fruits", {"train": 4}, seed=0, knobs={"brightness": 2.0})


@pytest.mark.parametrize(
    "knobs", [{"color_correlation": 1.5}, {"noise": -0.1}, {"scale_range": (0.9, 0.2)}, {"clutter": "many"}]
)
def test_out_of_range_knob_values_are_user_errors(knobs):
    with pytest.raises(UserError, match=next(iter(knobs))):
        render("fruits", 4, seed=0, **knobs)


def test_unknown_scenario_is_a_user_error_naming_it_and_the_valid_ones():
    with pytest.raises(UserError, match="vegetables") as raised:
        render("vegetables", 4, seed=0)
    assert "fruits" in str(raised.value) and "objects" in str(raised.value)
    with pytest.raises(UserError, match="vegetables"):
        generate_splits("vegetables", {"train": 4}, seed=0)


def roughness(images: np.ndarray) -> float:
    """Mean absolute difference between horizontally neighbouring pixels."""
    return float(np.abs(np.diff(images.astype(float), axis=2)).mean())


def test_noise_knob_roughens_the_images():
    plain, _ = render("objects", 50, seed=0, noise=0.0, clutter=0)
    noisy, _ = render("objects", 50, seed=0, noise=0.2, clutter=0)
    assert roughness(noisy) > 2 * roughness(plain)


def test_cache_round_trip_reloads_without_regenerating(tmp_path, monkeypatch):
    sizes = {"train": 40, "test": 20}
    first = generate_splits("objects", sizes, seed=1, knobs={"noise": 0.1}, cache_dir=tmp_path)
    [cached] = (tmp_path / "generated").iterdir()
    scenario, digest = cached.stem.split("-")
    assert scenario == "objects" and cached.suffix == ".npz"
    assert len(digest) == 12 and int(digest, 16) >= 0

    def no_rendering(*args, **kwargs):
        raise AssertionError("regenerated although the cache holds this configuration")

    monkeypatch.setattr(generated, "render", no_rendering)
    second = generate_splits("objects", sizes, seed=1, knobs={"noise": 0.1}, cache_dir=tmp_path)
    assert list(second) == list(first)
    for split in sizes:
        assert np.array_equal(first[split][0], second[split][0])
        for task in task_classes("objects"):
            assert np.array_equal(first[split][1][task], second[split][1][task])
    # Spelling out a default is the same configuration; changing a knob is not.
    generate_splits("objects", sizes, seed=1, knobs={"noise": 0.1, "clutter": 3}, cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="regenerated"):
        generate_splits("objects", sizes, seed=1, knobs={"noise": 0.2}, cache_dir=tmp_path)


def test_preview_writes_a_png(tmp_path):
    from mtl.data.preview import preview_grid

    images, labels = render("objects", 6, seed=0)
    path = preview_grid(images, labels, task_classes("objects"), tmp_path / "sub" / "preview.png", n=4)
    assert path == tmp_path / "sub" / "preview.png"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 2000


def test_generator_modules_do_not_import_torch():
    # `mtl data preview` and config checks must stay light: numpy and matplotlib only.
    package = Path(generated.__file__).parent
    for module in ("generated.py", "preview.py"):
        tree = ast.parse((package / module).read_text())
        nodes = list(ast.walk(tree))
        imported = {alias.name for node in nodes if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in nodes if isinstance(node, ast.ImportFrom) and node.module}
        assert not any(name == "torch" or name.startswith("torch.") for name in imported), module
