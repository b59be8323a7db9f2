"""Scaling out: sweeps through Hydra's launchers, DDP (simulated on CPU) and mixed precision."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import load_record, run_dirs

# The launcher tests need complete runs, not good ones: a few batches each.
SHORT = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2"]


def test_a_two_job_sweep_writes_two_complete_runs_that_compare_groups(mtl, tiny, tmp_path):
    result = mtl("run", "multitask", "-m", *tiny, *SHORT, "seed=0,1")
    assert result.exit_code == 0, result.stderr
    runs = run_dirs(tmp_path / "runs")
    assert [r.parent.name for r in runs] == ["multitask", "multitask"]  # runs/<kind>/<run-id>/, nothing else
    records = [load_record(r) for r in runs]
    assert sorted(r["seed"] for r in records) == [0, 1]
    assert all(r["status"] == "complete" and set(r["test"]) == {"fruit", "color"} for r in records)
    assert "#0 seed=0" in result.stdout and "#1 seed=1" in result.stdout

    compared = mtl("compare", "--runs-dir", tmp_path / "runs", "--format", "json")
    assert compared.exit_code == 0, compared.stderr
    [section] = json.loads(compared.stdout)["sections"]
    [row] = section["rows"]
    assert (row["kind"], row["runs"], row["seeds"]) == ("multitask", 2, [0, 1])


def test_submitit_local_runs_a_job_in_its_own_process(mtl, tiny, tmp_path):
    result = mtl("run", "multitask", "-m", *tiny, *SHORT, "seed=0", "hydra/launcher=submitit_local")
    assert result.exit_code == 0, result.stderr
    [run_dir] = run_dirs(tmp_path / "runs")
    assert load_record(run_dir)["status"] == "complete"
    # submitit's own log of the job, out of the way under runs/.sweeps/
    [log] = (tmp_path / "runs" / ".sweeps").glob("*/.submitit/*/*_0_log.out")
    assert log.is_file()


def test_a_failing_job_is_reported_and_does_not_stop_the_others(tiny, tmp_path):
    from mtl.sweep import Job, run_jobs

    [outcome] = run_jobs([Job("multitask", (*tiny, "data.train_size=100000"))], log=lambda line: None)
    assert outcome.run_dirs == [] and "data.train_size=100000 but data 'fruits' has 480" in outcome.error
    assert not (tmp_path / "runs" / "multitask").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["seed=0,a"], "'seed' must be an integer, got 'a'"),
        (["data=fruits,nope"], "unknown data 'nope'"),
        (["seed=0,1", "hydra/launcher=jolib"], "unknown launcher 'jolib'; options: basic, joblib, slurm"),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=two"], "bad launcher setting: Error merging override hydra.launcher.n_jobs=two"),
        (["hydra/launcher=joblib", "hydra.launcher.n_job=2"], "Key 'n_job' not in 'JobLibLauncherConf'"),
        (["seed=interval(0,1)"], "unsupported sweep"),
        (["trainer=ddp_sim", "trainer.strategy=ddp", "seed=0,1"], "starts its other processes by running the command again"),
    ],
)
def test_invalid_sweep_or_launcher_fails_before_any_job_with_one_line(mtl, tiny, tmp_path, args, message):
    result = mtl("run", "multitask", "-m", *tiny, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "launching" not in result.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["seed=0,1"], "'seed=0,1' is a sweep: add -m"),
        (["hydra/launcher=joblib"], "sets how a sweep's jobs are launched"),
        (["hydra.launcher.n_jobs=2"], "sets how a sweep's jobs are launched"),
        (["hydra.run.dir=/tmp/x"], "only sweeps use: add -m (mtl run multitask -m ...); to choose where runs go, set runs_dir=PATH"),
        (["hydra.job.name=launcher"], "'hydra.job.name=launcher' is a Hydra setting, which only sweeps use"),
    ],
)
def test_sweep_syntax_without_multirun_says_to_add_m(mtl, tiny, args, message):
    result = mtl("run", "multitask", *tiny, *args)
    assert result.exit_code == 2 and message in result.stderr


def test_the_slurm_launcher_composes_with_resources_from_the_trainer():
    from mtl.sweep import Job, check

    jobs = [Job("multitask", ("trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2", f"seed={s}")) for s in (0, 1)]
    plan = check(jobs, ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=600"])
    assert plan.launcher == "slurm"
    settings = plan.settings
    assert (settings["partition"], settings["timeout_min"]) == ("gpu", 600)
    assert (settings["nodes"], settings["tasks_per_node"], settings["gpus_per_node"]) == (2, 4, 4)
    assert settings["submitit_folder"].startswith("runs/.sweeps/")


def test_ddp_sim_records_what_a_single_process_evaluation_of_its_checkpoints_gives(mtl, tiny, tmp_path, data_cache):
    from omegaconf import OmegaConf

    from mtl.checkpoint import load_checkpoint, net_from_checkpoint
    from mtl.data.build import build_data
    from mtl.evaluate import evaluate

    # odd split sizes: a padding DistributedSampler would count an example twice
    odd = ["data.splits.val=161", "data.splits.test=241"]
    result = mtl("run", "multitask", *tiny, *odd, "trainer=ddp_sim", "trainer.max_epochs=2")
    assert result.exit_code == 0, result.stderr
    [run_dir] = run_dirs(tmp_path / "runs")  # the second process wrote no run of its own
    record = load_record(run_dir)
    assert record["status"] == "complete"
    assert [e["epoch"] for e in record["history"]] == [0, 1]  # trained in spawned workers, recorded here
    assert len(record["task_weights"]) == 2

    evaluated = evaluate(str(run_dir), data_dir=str(data_cache))
    for task in ("fruit", "color"):
        assert record["test"][task]["accuracy"] == pytest.approx(evaluated["test"][task]["accuracy"], abs=1e-9)
        assert record["test"][task]["accuracy"] > record["data"]["majority"][task] + 0.05

    # the last epoch's validation accuracy, all-reduced over both processes, is the exact one
    last = load_checkpoint(run_dir / record["checkpoints"]["last"])
    val = build_data(OmegaConf.create(record["config"]["data"]), data_cache).splits["val"]
    with torch.no_grad():
        outputs = net_from_checkpoint(last)(val.x)
    for task in ("fruit", "color"):
        accuracy = (outputs[task].argmax(1) == val.y[task]).float().mean().item()
        assert record["history"][-1][f"val/{task}/accuracy"] == pytest.approx(accuracy, abs=1e-6)


@pytest.mark.parametrize("method", ["ew", "pcgrad"])  # a loss weighting, and a gradient method (manual optimisation)
def test_bf16_mixed_precision_on_cpu_trains_above_chance(mtl, tiny, tmp_path, monkeypatch, method):
    from mtl.module import MultiTaskModule

    # the dtype the heads' outputs have in training steps: bfloat16 only if autocast is really on
    seen: set[torch.dtype] = set()
    losses = MultiTaskModule.losses

    def recording(self, outputs, targets):
        seen.update(o.dtype for o in outputs.values())
        return losses(self, outputs, targets)

    monkeypatch.setattr(MultiTaskModule, "losses", recording)
    result = mtl("run", "multitask", *tiny, "trainer.precision=bf16-mixed", "trainer.max_epochs=2", f"method={method}")
    assert result.exit_code == 0, result.stderr
    assert seen == {torch.bfloat16}
    [run_dir] = run_dirs(tmp_path / "runs")
    record = load_record(run_dir)
    assert record["config"]["trainer"]["precision"] == "bf16-mixed"
    for task in ("fruit", "color"):
        assert record["test"][task]["accuracy"] > record["data"]["majority"][task] + 0.15
