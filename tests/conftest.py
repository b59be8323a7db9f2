"""Shared fixtures: tiny learnable data, a shared generated-data cache, the CLI in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

# Small enough to train in seconds on 2 cores, large enough to learn well above chance.
TINY = [
    "data.splits.train=480",
    "data.splits.val=160",
    "data.splits.test=240",
    "model.backbone.width=16",
    "trainer.enable_progress_bar=false",
    "loader.batch_size=32",
]


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """One generated-data cache for the whole session: each data set is rendered once."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def tiny(tmp_path, data_cache) -> list[str]:
    return [*TINY, f"runs_dir={tmp_path / 'runs'}", f"data_dir={data_cache}"]


class Result:
    def __init__(self, exit_code: int, stdout: str, stderr: str):
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr


@pytest.fixture
def mtl():
    """Run `mtl ARGS...` in-process; returns exit code, stdout and stderr."""
    from mtl_cli.main import app

    runner = CliRunner()

    def invoke(*args: str) -> Result:
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        return Result(result.exit_code, result.stdout, result.stderr)

    return invoke


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in Path(root).rglob("run.json"))


def load_record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())
