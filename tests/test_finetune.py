"""Fine-tuning (sequential transfer), single-task baselines, resume, and their error paths."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from conftest import TINY, load_record, run_dirs
from mtl.checkpoint import load_checkpoint, net_state
from mtl.config import compose
from mtl.train import prepare


@pytest.fixture(scope="module")
def source(tmp_path_factory, data_cache) -> Path:
    """A tiny multitask run on fruits: the source every test here fine-tunes from (made once)."""
    from typer.testing import CliRunner

    from mtl_cli.main import app

    runs = tmp_path_factory.mktemp("source")
    args = ["run", "multitask", *TINY, f"data_dir={data_cache}", f"runs_dir={runs}", "trainer.max_epochs=1"]
    assert CliRunner().invoke(app, args).exit_code == 0
    [run_dir] = run_dirs(runs)
    return run_dir


def prepared(tiny, source, *extra):
    cfg = compose("finetune", [*tiny, "data=objects", f"source='{source}'", *extra])
    return prepare(cfg, log=lambda line: None)


def backbone_of(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith("backbone.")}


def test_at_step_0_backbone_and_matching_head_equal_the_source(tiny, source):
    p = prepared(tiny, source)
    theirs = net_state(load_checkpoint(source))
    mine = p.module.net.state_dict()
    for name, tensor in backbone_of(theirs).items():
        assert torch.equal(mine[name], tensor), name
    for name in ("heads.color.1.weight", "heads.color.1.bias"):
        assert torch.equal(mine[name], theirs[name])
    assert "heads.shape.1.weight" not in theirs  # the fruit net has no shape head at all
    assert p.transfer["heads"] == {
        "shape": "initialised: the source has no task of this name",
        "is_cube": "initialised: the source has no task of this name",
        "color": "transferred",
    }
    assert "heads.shape.1.weight" in p.transfer["initialised"]
    assert "heads.color.1.weight" in p.transfer["transferred"]
    assert p.transfer["note"] is None


def test_finetune_run_records_sequential_paradigm_source_and_report(mtl, tiny, tmp_path, source):
    result = mtl("run", "finetune", "--source", source, *tiny, "data=objects", "trainer.max_epochs=2")
    assert result.exit_code == 0, result.stderr
    assert "head 'color': transferred" in result.stdout
    [run_dir] = run_dirs(tmp_path / "runs" / "finetune")
    record = load_record(run_dir)
    assert (record["kind"], record["paradigm"], record["status"]) == ("finetune", "sequential", "complete")
    assert record["source"]["run_id"] == source.name
    assert record["source"]["data"] == "fruits" and record["source"]["label"] == "fruits/multitask"
    assert record["source"]["tasks"] == ["fruit", "color"]
    assert record["transfer"]["heads"]["color"] == "transferred"
    assert record["finetune"]["strategy"] == "full"
    assert record["test"]["color"]["accuracy"] > record["data"]["majority"]["color"] + 0.15


def test_transfer_chains_from_a_finetune_run(mtl, tiny, tmp_path, source):
    assert mtl("run", "finetune", "--source", source, *tiny, "data=objects", "trainer.max_epochs=1").exit_code == 0
    [first] = run_dirs(tmp_path / "runs")
    result = mtl("run", "finetune", "--source", first, *tiny, "data=fruits", "trainer.max_epochs=1")
    assert result.exit_code == 0, result.stderr
    assert "head 'color': transferred" in result.stdout


def test_no_common_task_transfers_only_the_backbone(tiny, source):
    p = prepared(tiny, source, "tasks=[shape]")
    assert p.transfer["note"] == "the source shares no task with the target: only the backbone transfers"


class Snapshots(pl.Callback):
    """The backbone's parameters at the end of every training epoch."""

    def __init__(self):
        self.epochs = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs.append({k: v.detach().clone() for k, v in pl_module.net.backbone.named_parameters()})


def fit(p, epochs: int, *callbacks) -> None:
    loaders = [p.data.loader(s, 32, seed=0) for s in ("train", "val")]
    trainer = pl.Trainer(
        max_epochs=epochs, callbacks=[*p.module.strategy.callbacks(), *callbacks], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(p.module, *loaders)


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_linear_probe_leaves_the_backbone_bit_identical(tiny, source):
    p = prepared(tiny, source, "finetune=linear_probe")
    before = {k: v.clone() for k, v in p.module.net.backbone.state_dict().items()}
    heads_before = p.module.net.heads.state_dict()["color.1.weight"].clone()
    fit(p, 2)
    after = p.module.net.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # parameters and BN statistics
    assert not torch.equal(heads_before, p.module.net.heads.state_dict()["color.1.weight"])


class NormModes(pl.Callback):
    """Whether any of the backbone's batch norms was in training mode during a training step."""

    def __init__(self):
        self.training = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        norms = [m for m in pl_module.net.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert norms
        self.training.append(any(m.training for m in norms))


def test_linear_probe_trains_heads_on_the_features_they_are_evaluated_on(tiny, source):
    """Frozen batch norms normalise with the source's statistics in training too, not with each
    batch's (Lightning's freeze alone would leave them in training mode)."""
    p = prepared(tiny, source, "finetune=linear_probe")
    modes = NormModes()
    fit(p, 2, modes)
    assert modes.training and not any(modes.training)


def test_lp_ft_puts_the_batch_norms_back_in_training_mode_when_it_unfreezes(tiny, source):
    p = prepared(tiny, source, "finetune=lp_ft", "finetune.probe_epochs=1")
    modes = NormModes()
    fit(p, 2, modes)
    steps = len(modes.training) // 2
    assert not any(modes.training[:steps]) and all(modes.training[steps:])


def test_linear_probe_trains_an_architectures_fresh_task_modules(tiny, source):
    p = prepared(tiny, source, "finetune=linear_probe", "arch=mtan")
    net = p.module.net
    shared = [p.clone() for p in net.shared_parameters()]
    attention = [p.clone() for p in net.backbone.task_modules.parameters()]
    fit(p, 1)
    assert all(torch.equal(a, b) for a, b in zip(shared, net.shared_parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(attention, net.backbone.task_modules.parameters()))


def test_lp_ft_changes_the_backbone_only_after_the_switch(tiny, source):
    p = prepared(tiny, source, "finetune=lp_ft", "finetune.probe_epochs=1")
    start = {k: v.clone() for k, v in p.module.net.backbone.named_parameters()}
    snapshots = Snapshots()
    fit(p, 3, snapshots)
    assert same(start, snapshots.epochs[0])  # epoch 0: linear probe
    assert not same(start, snapshots.epochs[1])  # epoch 1 on: full fine-tuning


def test_gradual_unfreezes_one_block_per_epoch_from_the_top(tiny, source):
    p = prepared(tiny, source, "finetune=gradual", "finetune.unfreeze_every=1")
    snapshots = Snapshots()
    fit(p, 4, snapshots)
    start = {k[len("backbone.") :]: v for k, v in net_state(load_checkpoint(source)).items()}

    def changed(epoch: int, block: int) -> bool:
        names = [k for k in snapshots.epochs[epoch] if k.startswith(f"trunk.blocks.{block}.")]
        return not all(torch.equal(start[k], snapshots.epochs[epoch][k]) for k in names)

    # 3 blocks: epoch 0 heads only; epoch 1 block 2 trains; epoch 2 blocks 1-2; epoch 3 all.
    assert [changed(0, b) for b in range(3)] == [False, False, False]
    assert [changed(1, b) for b in range(3)] == [False, False, True]
    assert [changed(2, b) for b in range(3)] == [False, True, True]
    assert [changed(3, b) for b in range(3)] == [True, True, True]


def test_l2sp_penalty_is_zero_at_step_0_and_positive_after(tiny, source):
    p = prepared(tiny, source, "finetune=l2sp", "finetune.alpha=0.1")
    assert p.module.strategy.penalty(p.module).item() == 0.0
    fit(p, 1)
    assert p.module.strategy.penalty(p.module).item() > 0.0


def test_backbone_lr_factor_sets_discriminative_learning_rates(tiny, source):
    p = prepared(tiny, source, "finetune.backbone_lr_factor=0.1", "optim.lr=0.002")
    optimizer = p.module.configure_optimizers()
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == {"backbone": pytest.approx(0.0002), "heads": pytest.approx(0.002)}


def test_single_writes_one_run_per_task_each_with_one_head(mtl, tiny, tmp_path):
    result = mtl("run", "single", *tiny, "data=objects", "trainer.max_epochs=2")
    assert result.exit_code == 0, result.stderr
    records = [load_record(d) for d in run_dirs(tmp_path / "runs" / "single")]
    assert sorted(r["tasks"][0]["name"] for r in records) == ["color", "is_cube", "shape"]
    for r in records:
        assert (r["paradigm"], len(r["tasks"]), r["status"]) == ("none", 1, "complete")
        assert list(r["test"]) == [r["tasks"][0]["name"]]
    shape = next(r for r in records if r["tasks"][0]["name"] == "shape")
    assert shape["test"]["shape"]["accuracy"] > 0.5
    ckpt = load_checkpoint(run_dirs(tmp_path / "runs" / "single")[0])
    assert len({k.split(".")[2] for k in ckpt["state_dict"] if k.startswith("net.heads.")}) == 1


def test_train_fraction_selects_a_stratified_subset(mtl, tiny, tmp_path):
    assert mtl("run", "multitask", *tiny, "data.train_fraction=0.25", "trainer.max_epochs=1").exit_code == 0
    [run_dir] = run_dirs(tmp_path / "runs")
    assert load_record(run_dir)["data"]["train_size"] == 120


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from mtl_cli.main import main; main()", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )


def test_ctrl_c_marks_the_run_interrupted_and_resume_reaches_the_uninterrupted_result(tiny, tmp_path):
    epochs = ["trainer.max_epochs=3"]
    # uninterrupted reference
    reference = _cli("run", "multitask", *tiny, *epochs, f"runs_dir={tmp_path / 'reference'}")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    [ref_dir] = run_dirs(tmp_path / "reference")
    # interrupted after the first epoch's checkpoint exists
    interrupted = _cli("run", "multitask", *tiny, *epochs)
    deadline = time.time() + 300
    while not list((tmp_path / "runs").rglob("last.ckpt")) and time.time() < deadline:
        time.sleep(0.05)
    interrupted.send_signal(signal.SIGINT)
    code = interrupted.wait(timeout=120)
    stderr = interrupted.stderr.read()
    [run_dir] = run_dirs(tmp_path / "runs")
    record = load_record(run_dir)
    if record["status"] == "complete":
        pytest.skip("the run finished before the signal arrived")
    assert code == 130 and record["status"] == "interrupted"
    assert "Traceback" not in stderr and "--resume" in stderr
    resumed = _cli("run", "multitask", "--resume", str(run_dir))
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    final, expected = load_record(run_dir), load_record(ref_dir)
    assert final["status"] == "complete"
    assert final["test"] == expected["test"]
    assert [e["epoch"] for e in final["history"]] == [0, 1, 2]


@pytest.mark.parametrize(
    "make_source, message",
    [
        (lambda d, s: d / "missing.ckpt", "does not exist"),
        (lambda d, s: _write(d / "junk.ckpt", b"not a checkpoint"), "is not a readable checkpoint"),
        (lambda d, s: _truncated(d, s), "is not a readable checkpoint"),
        (lambda d, s: d, "is not a run directory"),
    ],
)
def test_bad_sources_exit_2_with_one_line_and_no_run(mtl, tiny, tmp_path, source, make_source, message):
    bad = make_source(tmp_path, source)
    before = run_dirs(tmp_path / "runs")
    result = mtl("run", "finetune", "--source", bad, *tiny, "data=objects")
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert run_dirs(tmp_path / "runs") == before


def test_source_with_a_different_backbone_names_the_first_mismatching_layer(mtl, tiny, tmp_path, source):
    result = mtl("run", "finetune", "--source", source, *tiny, "data=objects", "model.backbone.width=8")
    assert result.exit_code == 2
    assert "different backbone: layer 'backbone.trunk.blocks.0.0.weight' has shape" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_finetune_without_source_and_bad_resume_targets(mtl, tiny, tmp_path, source):
    result = mtl("run", "finetune", *tiny)
    assert result.exit_code == 2 and "missing --source" in result.stderr
    result = mtl("run", "multitask", "--resume", source)
    assert result.exit_code == 2 and "already complete" in result.stderr
    result = mtl("run", "multitask", "--resume", tmp_path)
    assert result.exit_code == 2 and "is not a run directory" in result.stderr


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _truncated(directory: Path, source: Path) -> Path:
    data = (source / "checkpoints" / "best.ckpt").read_bytes()
    return _write(directory / "truncated.ckpt", data[: len(data) // 2])
