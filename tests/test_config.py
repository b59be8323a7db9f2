"""Config composition: every option composes, documented keys override, mistakes are one line."""

from __future__ import annotations

import pytest

from mtl.config import KINDS, compose, config_groups, group_options
from mtl.errors import UserError


def test_every_group_option_composes():
    for group in config_groups():
        if group in ("experiment", "study", "hydra"):
            continue
        for option in group_options(group):
            cfg = compose("multitask", [f"{group}={option}"])
            assert cfg.kind == "multitask"


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_composes(kind):
    assert compose(kind, ["data=objects"]).kind == kind


def test_documented_keys_override():
    cfg = compose(
        "multitask",
        ["data=objects", "seed=3", "trainer.max_epochs=5", "data.train_size=100", "runs_dir=/tmp/elsewhere"],
    )
    assert cfg.data.name == "objects"
    assert cfg.seed == 3
    assert cfg.trainer.max_epochs == 5
    assert cfg.data.train_size == 100
    assert cfg.runs_dir == "/tmp/elsewhere"
    assert list(compose("single", ["tasks=[fruit]"]).tasks) == ["fruit"]


def test_defaults_are_the_fruit_multitask_run():
    cfg = compose("multitask")
    assert (cfg.kind, cfg.data.name, cfg.method.name, cfg.arch.name) == ("multitask", "fruits", "ew", "hps")
    assert cfg.runs_dir == "runs"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("data=fruts", "unknown data 'fruts' (did you mean fruits?)"),
        ("trainer.max_epoch=3", "unknown config key 'trainer.max_epoch' (did you mean trainer.max_epochs"),
        ("trainer.max_epochs=abc", "'trainer.max_epochs' must be an integer, got 'abc'"),
        ("seed=1.5", "'seed' must be an integer"),
        ("data.train_size=many", "'data.train_size' must be an integer"),
        ("tasks=fruit", "'tasks' must be a list"),
        ("a b", "cannot parse override 'a b'"),
        ("experiment=single", "the experiment kind is chosen by the command"),
    ],
)
def test_config_mistakes_are_one_line_naming_the_key(override, expected):
    with pytest.raises(UserError) as error:
        compose("multitask", [override])
    message = str(error.value)
    assert expected in message
    assert "\n" not in message
