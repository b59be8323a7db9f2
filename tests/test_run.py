"""`mtl run multitask` end to end through the command line, and its error paths."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import load_record, run_dirs


def test_multitask_run_learns_every_task_and_writes_a_complete_record(mtl, tiny, tmp_path):
    result = mtl("run", "multitask", *tiny, "trainer.max_epochs=4")
    assert result.exit_code == 0, result.stderr
    [run_dir] = run_dirs(tmp_path / "runs")
    assert run_dir.parent.name == "multitask"
    record = load_record(run_dir)
    assert record["status"] == "complete"
    assert (record["kind"], record["paradigm"], record["data"]["name"]) == ("multitask", "joint", "fruits")
    assert [t["name"] for t in record["tasks"]] == ["fruit", "color"]
    assert record["tasks"][1]["classes"] == ["red", "green", "yellow", "orange", "brown", "blue", "purple"]
    for task in record["tasks"]:
        accuracy = record["test"][task["name"]]["accuracy"]
        # clearly above both uniform chance and always answering the most common class
        assert accuracy > record["data"]["majority"][task["name"]] + 0.15, (task["name"], accuracy)
    assert [e["epoch"] for e in record["history"]] == [0, 1, 2, 3]
    assert {"train/fruit/loss", "val/color/accuracy", "val/score"} <= set(record["history"][0])
    assert record["data"]["train_size"] == 480
    assert record["seed"] == 0 and record["versions"]["torch"].startswith("2.13")
    assert record["timing"]["wall_s"] > 0 and record["error"] is None
    assert (run_dir / record["checkpoints"]["best"]).is_file()
    assert (run_dir / "config.yaml").is_file()
    for task in ("fruit", "color"):
        assert f"{task}" in result.stdout
    assert str(run_dir.name) in result.stdout.replace("\n", "")


def test_best_checkpoint_reloads_to_identical_test_predictions(mtl, tiny, tmp_path, data_cache):
    from omegaconf import OmegaConf

    from mtl.checkpoint import load_checkpoint, net_from_checkpoint
    from mtl.data.build import build_data

    assert mtl("run", "multitask", *tiny, "trainer.max_epochs=2").exit_code == 0
    [run_dir] = run_dirs(tmp_path / "runs")
    record = load_record(run_dir)
    checkpoint = load_checkpoint(run_dir)
    data = build_data(OmegaConf.create(record["config"]["data"]), data_cache)
    x, y = data.splits["test"].x, data.splits["test"].y
    first = net_from_checkpoint(checkpoint)
    second = net_from_checkpoint(load_checkpoint(run_dir / record["checkpoints"]["best"]))
    with torch.no_grad():
        a, b = first(x), second(x)
    for task in ("fruit", "color"):
        assert torch.equal(a[task], b[task])
        # and they are the predictions the run scored: the recorded accuracy, recomputed
        accuracy = (a[task].argmax(1) == y[task]).float().mean().item()
        assert accuracy == pytest.approx(record["test"][task]["accuracy"], abs=1e-6)


def test_eval_prints_the_same_accuracy_as_the_run(mtl, tiny, tmp_path, data_cache):
    assert mtl("run", "multitask", *tiny, "data=objects", "trainer.max_epochs=1").exit_code == 0
    [run_dir] = run_dirs(tmp_path / "runs")
    record = load_record(run_dir)
    # by default the checkpoint's own data set (objects, with the run's splits), not the config default
    result = mtl("eval", run_dir, f"data_dir={data_cache}")
    assert result.exit_code == 0, result.stderr
    assert "objects" in result.stdout
    for task in ("shape", "is_cube", "color"):
        assert f"{record['test'][task]['accuracy']:.3f}" in result.stdout
    # data=fruits: another data set, only the task whose head fits
    result = mtl("eval", run_dir, f"data_dir={data_cache}", "data=fruits", "data.splits.train=480")
    assert result.exit_code == 0, result.stderr
    assert "fruits" in result.stdout and "not evaluated (no matching head): fruit" in result.stdout


def test_help_and_config_errors_do_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from mtl_cli.main import app\n"
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['run', '--help']); assert r.exit_code == 0\n"
        "r = CliRunner().invoke(app, ['run', 'multitask', 'data=nope']); assert r.exit_code == 2\n"
        "heavy = [m for m in ('torch', 'pytorch_lightning', 'lightning') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["data=fruts"], "unknown data 'fruts'"),
        (["trainer.max_epoch=2"], "unknown config key 'trainer.max_epoch'"),
        (["trainer.max_epochs=two"], "must be an integer"),
        (["data.train_size=100000"], "data.train_size=100000 but data 'fruits' has 480 training examples"),
        (["tasks=[fruit,taste]"], "data 'fruits' has no task 'taste'"),
        (["model.backbone.name=resnet999"], "unknown backbone 'resnet999'"),
        (["trainer.accelerator=tpu-ish"], "bad trainer setting"),
        (["optim.name=lamb"], "unknown optimizer 'lamb'; set optim.name to one of adamw, adam, sgd"),
    ],
)
def test_user_mistakes_exit_2_with_one_line_and_no_run_directory(mtl, tiny, tmp_path, args, message):
    result = mtl("run", "multitask", *tiny, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["optim.name=lamb"], "unknown optimizer 'lamb'"),
        (["source=runs/x"], "--source is only for `mtl run finetune`, not `mtl run single`"),
    ],
)
def test_single_task_mistakes_are_caught_the_same_way(mtl, tiny, tmp_path, args, message):
    result = mtl("run", "single", *tiny, *args)
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "runs").exists()


def test_data_preview_writes_a_png(mtl, tmp_path, data_cache):
    out = tmp_path / "grid.png"
    result = mtl("data", "preview", "data=objects", f"data_dir={data_cache}", "data.splits.train=480", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stratified_subset_is_reproducible_and_keeps_class_shares():
    from mtl.data.build import subset_indices

    labels = np.repeat([0, 1, 2], [600, 300, 100])
    a = subset_indices(labels, 100, None, seed=7, name="x")
    b = subset_indices(labels, 100, None, seed=7, name="x")
    assert np.array_equal(a, b) and len(a) == 100
    assert np.bincount(labels[a]).tolist() == [60, 30, 10]
    assert not np.array_equal(a, subset_indices(labels, 100, None, seed=8, name="x"))
    assert len(subset_indices(labels, None, 0.25, seed=7, name="x")) == 250


def test_every_task_selection_trains_on_the_same_low_data_subset(tiny):
    """Fairness: a single-task run on the last task sees the examples the multitask run sees."""
    from mtl.config import compose
    from mtl.data.build import build_data

    cfg = compose("multitask", [*tiny, "data=objects", "data.train_size=60"])
    everything = build_data(cfg.data, cfg.data_dir)
    last = everything.tasks[-1].name
    alone = build_data(cfg.data, cfg.data_dir, [last])
    assert torch.equal(alone.splits["train"].x, everything.splits["train"].x)
    assert torch.equal(alone.splits["train"].y[last], everything.splits["train"].y[last])
    view = everything.only([last])
    assert [t.name for t in view.tasks] == [last] and list(view.splits["train"].y) == [last]
    assert view.splits["train"].x.data_ptr() == everything.splits["train"].x.data_ptr()  # shared, not copied
