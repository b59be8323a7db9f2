"""Compose the experiment config with Hydra and turn every config mistake into one line.

Imports no torch: `mtl --help` and config errors must stay fast.
"""

from __future__ import annotations

import difflib
from importlib.resources import files
from pathlib import Path
from typing import Any, Iterable

from mtl.errors import UserError

KINDS = ("multitask", "single", "finetune")

# Keys whose default is null, with the types a value may have.
NULLABLE_TYPES: dict[str, tuple[type, ...]] = {
    "data.train_size": (int,),
    "data.train_fraction": (float, int),
    "tasks": (list,),
    "source": (str,),
    "trainer.gradient_clip_val": (float, int),
    "trainer.limit_train_batches": (float, int),
    "trainer.limit_val_batches": (float, int),
    "trainer.limit_test_batches": (float, int),
}


def config_dir() -> str:
    """The config tree, from a checkout or an installed package alike (it ships as package data)."""
    return str(files("mtl_conf"))


def group_options(group: str) -> list[str]:
    """The options of a config group, e.g. group_options('data') -> ['fruits', 'objects']."""
    folder = Path(config_dir()) / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


def config_groups() -> list[str]:
    # conf/hydra/ configures Hydra itself (sweeps, launchers), not the run
    return sorted(p.name for p in Path(config_dir()).iterdir() if p.is_dir() and p.name[0] != "_" and p.name != "hydra")


def compose(kind: str, overrides: Iterable[str] = ()) -> Any:
    """Compose `config.yaml` for an experiment kind plus the user's Hydra overrides.

    Raises UserError naming the offending override (and close matches) for an unknown key,
    an unknown group option, a value of the wrong type or a syntax error.
    """
    overrides = list(overrides)
    if kind not in KINDS:
        raise UserError(f"unknown experiment kind '{kind}'; use one of {', '.join(KINDS)}")
    parsed = _parse(overrides)
    groups = set(config_groups())
    for o in parsed:
        if is_launcher_override(o.input_line):
            if o.key_or_group.startswith(("hydra/launcher", "hydra.launcher")):
                raise UserError(f"'{o.input_line}' sets how a sweep's jobs are launched: add -m (mtl run {kind} -m ...)")
            # A single run is composed, not launched by Hydra, so hydra.run.dir and the like would
            # be silently ignored; runs_dir is where mtl places runs.
            raise UserError(
                f"'{o.input_line}' is a Hydra setting, which only sweeps use: add -m (mtl run {kind} -m ...); "
                "to choose where runs go, set runs_dir=PATH"
            )
        if o.is_sweep_override():
            raise UserError(f"'{o.input_line}' is a sweep: add -m (mtl run {kind} -m ...) to run one job per value")
        if o.key_or_group == "experiment":
            raise UserError(f"the experiment kind is chosen by the command (mtl run {kind}), not by '{o.input_line}'")
        if o.key_or_group in groups:
            _check_option(o.key_or_group, o.value())
    group_choices = [o.input_line for o in parsed if o.key_or_group in groups]
    base = _compose([f"experiment={kind}", *group_choices])
    for o in parsed:
        if o.key_or_group in groups or o.is_delete():
            continue
        _check_key(base, o)
    cfg = _compose([f"experiment={kind}", *overrides])
    for o in parsed:
        if o.key_or_group not in groups and not o.is_add() and not o.is_delete():
            _check_type(base, cfg, o.key_or_group)
    return cfg


def quoted(value: str) -> str:
    """A value as one Hydra override string, whatever it holds (paths with '=', spaces, quotes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def is_launcher_override(override: str) -> bool:
    """hydra/launcher=joblib, hydra.launcher.n_jobs=4, ...: settings of a sweep, not of a run."""
    key = override.lstrip("+~").split("=", 1)[0]
    return key == "hydra" or key.startswith(("hydra/", "hydra."))


def load_saved(path: str | Path) -> Any:
    """A run's saved resolved config (config.yaml in its run directory)."""
    from omegaconf import OmegaConf

    return OmegaConf.load(path)


def _compose(overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base=None):
            return hydra_compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(f"config error: {_first_line(e)}") from None
    finally:
        GlobalHydra.instance().clear()


def _parse(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for line in overrides:
        try:
            parsed.extend(parser.parse_overrides([line]))
        except OverrideParseException:
            raise UserError(
                f"cannot parse override '{line}'; write key=value, e.g. trainer.max_epochs=5 or data=objects"
            ) from None
    return parsed


def _check_option(group: str, value: Any) -> None:
    options = group_options(group)
    if str(value) not in options:
        raise UserError(f"unknown {group} '{value}'{_suggest(str(value), options)}; options: {', '.join(options)}")


def _check_key(base: Any, override: Any) -> None:
    from omegaconf import OmegaConf

    key = override.key_or_group
    if override.is_add():
        return
    if OmegaConf.select(base, key, default=_MISSING) is _MISSING:
        keys = _flat_keys(OmegaConf.to_container(base))
        raise UserError(
            f"unknown config key '{key}'{_suggest(key, keys)}; "
            f"see `mtl run --help` for the keys, or write +{key}=... to add a new one"
        )


def _check_type(base: Any, cfg: Any, key: str) -> None:
    from omegaconf import OmegaConf

    default = OmegaConf.select(base, key, default=None)
    value = OmegaConf.select(cfg, key, default=None)
    if value is None:
        return
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    if default is None:
        allowed = NULLABLE_TYPES.get(key)
    elif isinstance(default, bool):
        allowed = (bool,)
    elif isinstance(default, int):
        allowed = (int,)
    elif isinstance(default, float):
        allowed = (float, int)
    else:
        return
    if allowed and (not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool))):
        raise UserError(
            f"'{key}' must be {' or '.join(_TYPE_NAMES[t] for t in allowed)}, got {value!r}; e.g. {key}={_EXAMPLES[allowed[0]]}"
        )


_MISSING = object()
_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", list: "a list", str: "a string"}
_EXAMPLES = {int: "3", float: "0.5", bool: "true", list: "[a,b]", str: "PATH"}


def _flat_keys(tree: Any, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            full = f"{prefix}{k}"
            keys.append(full)
            keys.extend(_flat_keys(v, full + "."))
    return keys


def _suggest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
