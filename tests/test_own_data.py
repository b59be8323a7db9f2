"""Bring your own data: an image folder with a CSV manifest, a CSV table, partial labels, and
`mtl data check` (every problem it reports, with its line number)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import load_record, run_dirs

COLORS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 70, 230)}
FAST = ["trainer.enable_progress_bar=false", "loader.batch_size=32", "model.backbone.width=8"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared, busy machine: a second intra-op thread that waits for a core
    makes each step many times slower than one thread alone (measured: 10-50x at 16×16)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def draw_images(folder: Path, n: int, seed: int) -> list[dict]:
    """n small pictures of one square on noise, with learnable labels: its colour, its size
    (small / large) and its shade (dark / light). Every tenth is a 24×24 JPEG: any format and
    size is fine."""
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        color, size, shade = rng.choice(list(COLORS)), rng.choice(["small", "large"]), rng.choice(["dark", "light"])
        image = rng.integers(90, 150, (16, 16, 3)).astype(np.float32)
        side = 4 if size == "small" else 10
        y, x = rng.integers(0, 16 - side + 1, 2)
        image[y : y + side, x : x + side] = np.array(COLORS[color]) * (0.45 if shade == "dark" else 1.0)
        picture = Image.fromarray(image.astype(np.uint8))
        name = f"img/{seed}-{i:03d}.{'jpg' if i % 10 == 0 else 'png'}"
        (picture.resize((24, 24)) if i % 10 == 0 else picture).save(folder / name)
        rows.append({"path": name, "color": color, "size": size, "shade": shade})
    return rows


def image_manifest(folder: Path, n: int, seed: int, columns: list[str], blank: dict[str, float] | None = None) -> Path:
    rows = draw_images(folder, n, seed)
    rng = np.random.default_rng(seed + 100)
    for task, share in (blank or {}).items():
        for row in rows:
            if rng.random() < share:
                row[task] = ""
    return write_csv(folder / "labels.csv", ["path", *columns], [[r["path"], *(r[c] for c in columns)] for r in rows])


def above_chance(record: dict, task: str, margin: float = 0.15) -> bool:
    return record["test"][task]["accuracy"] > record["data"]["majority"][task] + margin


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """300 images; the size label is blank in about half the rows."""
    folder = tmp_path_factory.mktemp("shapes")
    return image_manifest(folder, 300, seed=1, columns=["color", "size"], blank={"size": 0.5})


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory, shapes) -> Path:
    """One multitask run on the shapes manifest, shared: its record, and as a fine-tune source."""
    from typer.testing import CliRunner

    from mtl_cli.main import app

    root = tmp_path_factory.mktemp("shapes-runs")
    args = ["run", "multitask", "data=images_csv", f"data.manifest={shapes}", "data.image_size=16", "trainer.max_epochs=5",
            f"runs_dir={root}", f"data_dir={root / 'data'}", *FAST]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    [run_dir] = run_dirs(root)
    return run_dir


def test_multitask_on_an_image_manifest_learns_and_masks_partial_labels(shapes_run, shapes):
    record = load_record(shapes_run)
    assert record["status"] == "complete" and record["data"]["name"] == "labels"
    assert [(t["name"], t["kind"], t["classes"]) for t in record["tasks"]] == [
        ("color", "multiclass", ["blue", "green", "red"]), ("size", "binary", ["large", "small"])
    ]
    train = record["data"]["split_sizes"]["train"]
    assert record["data"]["labelled"]["color"] == train
    # about half the size labels are blank: those rows count for colour only
    assert 0.35 * train < record["data"]["labelled"]["size"] < 0.65 * train
    assert above_chance(record, "color", 0.3) and above_chance(record, "size")
    # what was inferred is in the saved config: a rerun from it sees the same tasks
    assert record["config"]["data"]["tasks"]["color"]["classes"] == ["blue", "green", "red"]


def test_single_task_runs_on_an_image_manifest(mtl, tmp_path, shapes):
    result = mtl("run", "single", "data=images_csv", f"data.manifest={shapes}", "data.image_size=16",
                 "trainer.max_epochs=4", f"runs_dir={tmp_path / 'runs'}", f"data_dir={tmp_path / 'data'}", *FAST)
    assert result.exit_code == 0, result.stderr
    records = {load_record(d)["tasks"][0]["name"]: load_record(d) for d in run_dirs(tmp_path / "runs")}
    assert set(records) == {"color", "size"}
    assert all(above_chance(r, name) for name, r in records.items())


def test_finetune_from_one_manifest_to_another(mtl, tmp_path, shapes_run):
    target = image_manifest(tmp_path / "target", 240, seed=2, columns=["size", "shade"])
    result = mtl("run", "finetune", "--source", shapes_run, "data=images_csv", f"data.manifest={target}",
                 "data.image_size=16", "trainer.max_epochs=5", f"runs_dir={tmp_path / 'runs'}",
                 f"data_dir={tmp_path / 'data'}", *FAST)
    assert result.exit_code == 0, result.stderr
    [run_dir] = run_dirs(tmp_path / "runs")
    record = load_record(run_dir)
    assert record["paradigm"] == "sequential" and record["source"]["data"] == "labels"
    assert record["transfer"]["heads"] == {"size": "transferred", "shade": "initialised: the source has no task of this name"}
    assert above_chance(record, "size") and above_chance(record, "shade")


def test_image_cache_serves_the_second_build_and_memory_maps_when_large(tmp_path, shapes, monkeypatch):
    from omegaconf import OmegaConf

    import mtl.data.images as images
    from mtl.config import compose
    from mtl.data.build import build_data

    cfg = compose("multitask", ["data=images_csv", f"data.manifest={shapes}", "data.image_size=12", "data.color=grey"])
    first = build_data(cfg.data, tmp_path)
    assert first.input_shape == (1, 12, 12)
    assert first.facts["images"].startswith("300 read; sizes seen: 16×16 (270), 24×24 (30)")

    def no_decoding(*args):
        raise AssertionError("the cache should have served these images")

    monkeypatch.setattr(images, "decode", no_decoding)
    opened = []
    monkeypatch.setattr(images, "_available_memory", lambda: 0)  # the cache is "larger than memory"
    monkeypatch.setattr(images, "_open", lambda path, original=images._open: opened.append(original(path)) or opened[-1])
    second = build_data(OmegaConf.create(first.spec), tmp_path)
    assert isinstance(opened[0], np.memmap)
    assert np.array_equal(first.splits["test"].x.numpy(), second.splits["test"].x.numpy())
    assert len(list((tmp_path / "images_csv").glob("*.npy"))) == 1


def test_data_check_summarises_and_preview_draws_an_image_manifest(mtl, tmp_path, shapes):
    args = ["data=images_csv", f"data.manifest={shapes}", "data.image_size=16", f"data_dir={tmp_path}"]
    result = mtl("data", "check", *args)
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    for expected in ("no problems found", "rows 300", "sizes seen: 16×16 (270), 24×24 (30)", "splits train", "color", "multiclass"):
        assert expected in text, expected
    out = tmp_path / "grid.png"
    assert mtl("data", "preview", *args, "--out", out, "--n", "9").exit_code == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------- tabular


def write_table(path: Path, n: int, seed: int, categories=("a", "b", "c")) -> Path:
    """x1, x2 numeric, cat categorical, noise; `label` (yes/no) from x1 and cat, `value` from x2 and
    cat, in the thousands (as real targets are: it must not swamp the label's loss)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        x1, x2, noise = rng.normal(size=3)
        cat = rng.choice(categories)
        label = "yes" if x1 + (1.5 if cat == "a" else 0) > 0.5 else "no"
        value = 1000 + 300 * x2 + 200 * (cat == "b") + rng.normal(0, 20)
        rows.append([f"{x1:.3f}", f"{x2:.3f}", cat, f"{noise:.3f}", label, f"{value:.3f}"])
    return write_csv(path, ["x1", "x2", "cat", "noise", "label", "value"], rows)


def test_tabular_classification_and_regression_both_learn_and_compare_shows_both(mtl, tmp_path):
    table = write_table(tmp_path / "table.csv", 500, seed=3)
    common = ["data=tabular_csv", f"data.file={table}", "data.tasks=[label,value]", "trainer.max_epochs=5",
              "trainer.enable_progress_bar=false", f"runs_dir={tmp_path / 'runs'}"]
    for kind in ("multitask", "single"):
        result = mtl("run", kind, *common)
        assert result.exit_code == 0, result.stderr
    multitask = next(load_record(d) for d in run_dirs(tmp_path / "runs") if d.parent.name == "multitask")
    assert multitask["backbone"] == "mlp"  # chosen by data=tabular_csv
    assert [(t["name"], t["kind"], t["metric"]) for t in multitask["tasks"]] == [
        ("label", "binary", "accuracy"), ("value", "regression", "mae")
    ]
    assert above_chance(multitask, "label")
    assert multitask["test"]["value"]["r2"] > 0.5
    # the encoding fitted on the train split is stored with the run
    assert multitask["config"]["data"]["features"]["cat"] == {"type": "categorical", "categories": ["a", "b", "c"]}

    result = mtl("compare", tmp_path / "runs", "--format", "md")
    assert result.exit_code == 0, result.stderr
    assert "label (accuracy ↑, %)" in result.stdout and "value (mae ↓)" in result.stdout
    assert "Δm" in result.stdout

    # another table lacking category 'c' is encoded as the run was: same inputs, eval works
    other = write_table(tmp_path / "other.csv", 200, seed=4, categories=("a", "b"))
    result = mtl("eval", tmp_path / "runs" / "multitask" / multitask["run_id"],
                 "data=tabular_csv", f"data.file={other}", "data.tasks=[label,value]")
    assert result.exit_code == 0, result.stderr
    assert "label" in result.stdout and "value" in result.stdout


def test_tabular_data_with_the_cnn_says_to_use_the_mlp(mtl, tmp_path):
    table = write_table(tmp_path / "table.csv", 60, seed=5)
    result = mtl("run", "multitask", "data=tabular_csv", f"data.file={table}", "data.tasks=[label]", "model=cnn",
                 f"runs_dir={tmp_path / 'runs'}")
    assert result.exit_code == 2
    assert "use model=mlp" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------- data check problems


@pytest.fixture(scope="module")
def small_images(tmp_path_factory) -> tuple[Path, list[list[str]]]:
    """12 valid rows (path, color, size, split): train 6, val 3, test 3, both colours in each."""
    folder = tmp_path_factory.mktemp("small")
    (folder / "img").mkdir()
    rows = []
    splits = ["train"] * 6 + ["val"] * 3 + ["test"] * 3
    for i, split in enumerate(splits):
        color = ["red", "green"][i % 2]
        Image.fromarray(np.full((8, 8, 3), COLORS[color], np.uint8)).save(folder / f"img/{i}.png")
        rows.append([f"img/{i}.png", color, ["small", "large"][(i // 2) % 2], split])
    (folder / "img/broken.png").write_text("not an image")
    return folder, rows


HEADER = ["path", "color", "size", "split"]


def _edit(rows, line, column, value):
    rows = [list(r) for r in rows]
    rows[line - 2][HEADER.index(column)] = value
    return rows


# case -> (manifest rows from the valid ones, or (header, rows); overrides; expected message)
BROKEN = {
    "missing image": (lambda r: _edit(r, 5, "path", "img/nope.png"), [], "line 5: image 'img/nope.png' not found"),
    "unreadable image": (lambda r: _edit(r, 6, "path", "img/broken.png"), [], "line 6: cannot read image"),
    "empty image path": (lambda r: _edit(r, 3, "path", ""), [], "line 3: empty image path"),
    "unknown column": (lambda r: r, ["data.tasks=[color,shape]"], "line 1: no column 'shape' for task 'shape'"),
    "no path column": (lambda r: r, ["data.path_column=file"], "line 1: no image path column 'file'"),
    "repeated column": (lambda r: (HEADER[:3] + ["color"], r), ["data.split_column=null"], "line 1: column 'color' appears 2 times"),
    "no rows": (lambda r: [], [], "line 1: the file has a header but no rows"),
    "ragged row": (lambda r: r[:3] + [r[3][:2]] + r[4:], [], "line 5: 2 fields, the header has 4"),
    "empty task column": (lambda r: [row[:2] + [""] + row[3:] for row in r], [], "line 1: task column 'size' is empty in every row"),
    "identifier column": (lambda r: (HEADER + ["id"], [row + [f"x{i}"] for i, row in enumerate(r * 3)]), [],
                          "line 1: column 'id' has 36 different values in 36 rows"),
    "unknown kind": (lambda r: r, ["data.tasks={color: categorical}"], "line 1: task 'color' has kind 'categorical'"),
    "not a declared class": (lambda r: _edit(r, 7, "color", "teal"), ["data.tasks={color: {classes: [red, green]}}"],
                             "line 7: 'teal' is not a class of task 'color'"),
    "regression value not a number": (lambda r: _edit(r, 8, "size", "huge"), ["data.tasks={size: regression}"],
                                      "line 8: task 'size' is a regression task but 'huge' is not a number"),
    "bad split name": (lambda r: _edit(r, 4, "split", "training"), [], "line 4: split 'training' is not one of train, val, test"),
    "class absent from train": (lambda r: _edit(r, 13, "color", "blue"), [],
                                "line 13: class 'blue' of task 'color' is in the test split but in no training row"),
    "empty split": (lambda r: [row[:3] + ["train" if row[3] == "val" else row[3]] for row in r], [],
                    "line 1: the val split would be empty: no row has 'val'"),
    "empty drawn split": (lambda r: [row[:3] for row in r[:4]], ["data.split_column=null"],
                          "line 1: the test split would be empty: data.split_fractions.test of 4 rows gives none"),
    "task unlabelled in a split": (lambda r: [row[:2] + (["", row[3]] if row[3] == "test" else row[2:]) for row in r], [],
                                   "line 1: task 'size' has 0 labelled rows in the test split"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_data_check_reports_each_problem_with_its_line(mtl, small_images, tmp_path, case):
    folder, rows = small_images
    edit, overrides, expected = BROKEN[case]
    edited = edit(rows)
    header, edited = edited if isinstance(edited, tuple) else (HEADER[: len(edited[0])] if edited else HEADER, edited)
    manifest = write_csv(folder / f"{case.replace(' ', '_')}.csv", header, edited)
    result = mtl("data", "check", "data=images_csv", f"data.manifest={manifest}", f"data_dir={tmp_path}", *overrides)
    assert result.exit_code == 2, result.stdout
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_problems_come_all_at_once_and_mtl_run_refuses_before_writing(mtl, small_images, tmp_path):
    folder, rows = small_images
    rows = _edit(_edit(_edit(rows, 9, "path", "img/gone.png"), 3, "split", "?"), 11, "path", "img/broken.png")
    manifest = write_csv(folder / "three.csv", HEADER, rows)
    args = ["data=images_csv", f"data.manifest={manifest}", f"data_dir={tmp_path / 'data'}"]
    check = mtl("data", "check", *args)
    run = mtl("run", "multitask", *args, f"runs_dir={tmp_path / 'runs'}")
    for result in (check, run):
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert "3 problems in" in lines[0] and "three.csv" in lines[0]
        assert [line.split(":")[0].strip() for line in lines[1:]] == ["line 3", "line 9", "line 11"]
        assert "Traceback" not in result.stderr
    assert check.stderr == run.stderr
    assert not (tmp_path / "runs").exists()


def test_tabular_problems_have_lines_too(mtl, tmp_path):
    table = write_table(tmp_path / "table.csv", 40, seed=6)
    lines = table.read_text().splitlines()
    lines[5] = "abc," + lines[5].split(",", 1)[1]
    cells = [line.split(",") for line in lines]
    for row in cells[1:]:
        row[3] = ""  # the noise column, empty everywhere
    table.write_text("\n".join(",".join(row) for row in cells) + "\n")
    common = ["data=tabular_csv", f"data.file={table}", "data.tasks=[label,value]"]
    result = mtl("data", "check", *common, "data.features={x1: numeric, noise: numeric, nope: numeric, label: numeric, cat: ordinal}")
    assert result.exit_code == 2
    for expected in (
        "line 1: no feature column 'nope'",
        "line 1: column 'label' is a task; it cannot also be a feature",
        "line 1: feature 'cat' has type 'ordinal'; use numeric or categorical",
        "line 1: feature column 'noise' is empty in every row",
        "line 6: feature 'x1' is numeric but 'abc' is not a number",
    ):
        assert expected in result.stderr, expected
    none = mtl("data", "check", *common, "data.features=[]")
    assert none.exit_code == 2 and "line 1: no feature columns" in none.stderr
    missing = mtl("data", "check", "data=tabular_csv", f"data.file={table}")
    assert missing.exit_code == 2 and "data.tasks=[col1,col2]" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
