"""`mtl study`: a tiny study end to end, its resume after an interruption, and its errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY, load_record, run_dirs

TINY_STUDY = """
name: tiny
description: a smoke-sized fruits-to-objects
seeds: 1
train_sizes: [60, null]
common: [trainer.max_epochs=1]
runs:
  - {id: source, kind: multitask, overrides: [data=fruits], sized: false}
  - {id: single, kind: single, overrides: [data=objects]}
  - {id: multitask, kind: multitask, overrides: [data=objects]}
  - {id: probe, kind: finetune, source: source, overrides: [data=objects, finetune=linear_probe]}
"""


@pytest.fixture
def study_file(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_STUDY)
    return path


def _args(study_file, tmp_path, data_cache):
    return ["study", str(study_file), "--runs-dir", str(tmp_path / "runs"), *TINY, f"data_dir={data_cache}"]


def test_tiny_study_runs_every_job_then_prints_and_plots_the_comparison(mtl, study_file, tmp_path, data_cache):
    result = mtl(*_args(study_file, tmp_path, data_cache))
    assert result.exit_code == 0, result.stderr
    home = tmp_path / "runs" / "studies" / "tiny"
    index = json.loads((home / "study.json").read_text())["jobs"]
    # source once (unsized); per size: single (3 tasks), multitask, probe
    assert sorted(index) == sorted(
        ["source/size=full/seed=0"]
        + [f"{r}/size={s}/seed=0" for r in ("single", "multitask", "probe") for s in ("60", "full")]
    )
    assert len(index["single/size=60/seed=0"]["run_dirs"]) == 3
    # stored relative to the study folder, so it can be moved or reached from anywhere
    assert all(not Path(d).is_absolute() and (home / d).is_dir() for job in index.values() for d in job["run_dirs"])
    records = [load_record(d) for d in run_dirs(home)]
    assert len(records) == 1 + 2 * (3 + 1 + 1) and all(r["status"] == "complete" for r in records)
    probe = load_record(home / index["probe/size=60/seed=0"]["run_dirs"][0])
    assert probe["data"]["train_size"] == 60
    assert probe["source"]["run_id"] == Path(index["source/size=full/seed=0"]["run_dirs"][0]).name
    for words in ("joint", "sequential", "none", "Δm"):
        assert words in result.stdout
    assert (home / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert "| " in (home / "comparison.md").read_text()
    # a second run finds everything complete and trains nothing
    again = mtl(*_args(study_file, tmp_path, data_cache))
    assert again.exit_code == 0 and "7 jobs, 7 already complete" in again.stdout.replace("\n", " ")
    assert len(run_dirs(home)) == len(records)


def test_an_interrupted_study_resumes_without_redoing_completed_runs(study_file, tmp_path, data_cache):
    study_file.write_text(TINY_STUDY.replace("train_sizes: [60, null]", "train_sizes: [60]"))
    command = [sys.executable, "-c", "from mtl_cli.main import main; main()", *_args(study_file, tmp_path, data_cache)]
    home = tmp_path / "runs" / "studies" / "tiny"
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while len(run_dirs(home)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    first.wait(timeout=120)
    before = {d: load_record(d) for d in run_dirs(home)}
    if all(r["status"] == "complete" for r in before.values()) and len(before) == 6:
        pytest.skip("the study finished before the signal arrived")
    assert first.returncode != 0
    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    after = {d: load_record(d) for d in run_dirs(home)}
    assert len(after) == 6 and all(r["status"] == "complete" for r in after.values())
    for run_dir, record in before.items():  # completed runs were kept as they were
        if record["status"] == "complete":
            assert after[run_dir]["timing"]["ended"] == record["timing"]["ended"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.replace("source: source", "source: nowhere"), "names source 'nowhere', which is not an earlier run's id"),
        (lambda s: s.replace("kind: single", "kind: solo"), "has kind 'solo'"),
        (lambda s: s.replace("data=objects]", "data=objets]", 1), "unknown data 'objets'"),
        (lambda s: s + "extra: 1\n", "unknown key 'extra'"),
    ],
)
def test_study_mistakes_are_one_line_before_anything_runs(mtl, study_file, tmp_path, data_cache, edit, message):
    study_file.write_text(edit(TINY_STUDY))
    result = mtl(*_args(study_file, tmp_path, data_cache))
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_unknown_study_lists_the_built_in_ones(mtl):
    result = mtl("study", "nope")
    assert result.exit_code == 2 and "fruits-to-objects" in result.stderr


def test_a_study_runs_its_jobs_through_the_chosen_hydra_launcher(mtl, study_file, tmp_path, data_cache):
    study_file.write_text(TINY_STUDY.replace("train_sizes: [60, null]", "train_sizes: [60]"))
    result = mtl(*_args(study_file, tmp_path, data_cache), "hydra/launcher=basic")
    assert result.exit_code == 0, result.stderr
    assert "with the basic launcher" in result.stdout
    home = tmp_path / "runs" / "studies" / "tiny"
    index = json.loads((home / "study.json").read_text())["jobs"]
    assert len(index) == 4 and len(run_dirs(home)) == 1 + 3 + 1 + 1
    probe = load_record(home / index["probe/size=60/seed=0"]["run_dirs"][0])
    assert probe["status"] == "complete"
    assert probe["source"]["run_id"] == Path(index["source/size=full/seed=0"]["run_dirs"][0]).name
