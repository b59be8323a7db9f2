"""The package as a user installs it: non-editable, conf/ shipped as package data, no `cli`."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_source_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"mtl_cli", "mtl_conf"} | {
        ".".join(p.parent.relative_to(ROOT / "src").parts) for p in (ROOT / "src").rglob("__init__.py")
    }
    assert found == listed


def test_a_non_editable_install_ships_the_configs_and_no_generic_cli_module(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(target), str(ROOT)],
        check=True,
        capture_output=True,
    )
    assert not (target / "cli").exists() and not (target / "conf").exists()
    code = (
        "import mtl_conf, mtl_cli, mtl.config as c\n"
        f"assert mtl_conf.__file__.startswith({str(target)!r}), mtl_conf.__file__\n"
        f"assert mtl_cli.__file__.startswith({str(target)!r}), mtl_cli.__file__\n"
        "cfg = c.compose('finetune', ['data=objects', 'finetune=lp_ft'])\n"
        "assert cfg.data.name == 'objects' and cfg.finetune.strategy == 'lp_ft'\n"
        "assert 'fruits-to-objects' in __import__('mtl.study').study.study_names()\n"
    )
    # the installed copy first on the path, and run from elsewhere than the checkout
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1"}
    subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r})\n" + code],
                   check=True, cwd=tmp_path, env=env)
