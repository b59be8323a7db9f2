"""Task-relation diagnostics: constructed cases with known answers, the run record, and
`mtl compare --diagnostics`."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from conftest import load_record, run_dirs
from mtl.methods import build_method
from mtl.models.net import MultiTaskNet
from mtl.module import MultiTaskModule
from mtl.tasks import Task


def module_with_twin_tasks() -> MultiTaskModule:
    """Two binary tasks whose heads start identical: same labels give the same gradient."""
    torch.manual_seed(0)
    tasks = [Task("a", "binary"), Task("b", "binary")]
    net = MultiTaskNet(tasks, (3, 8, 8), {"name": "mlp", "hidden": [16]}, {"hidden": 0}, {"name": "hps"})
    net.heads["b"].load_state_dict(net.heads["a"].state_dict())
    weighting = build_method(OmegaConf.create({"name": "ew"}), ["a", "b"])
    return MultiTaskModule(net, weighting, {"name": "sgd", "lr": 0.5, "weight_decay": 0.0, "momentum": 0.0}, diagnostics=True)


def measure(labels_b) -> dict:
    module = module_with_twin_tasks()
    x = torch.randint(0, 256, (32, 8, 8, 3), dtype=torch.uint8)
    labels_a = (x.float().mean((1, 2, 3)) > 127).long()
    y = {"a": labels_a, "b": labels_b(labels_a)}
    for _ in range(3):
        losses = module.losses(module.net(x), y)
        module.relations.observe(module, x, y, losses)
    return module.relations.summarise(module)


def test_identical_tasks_have_cosine_one_and_help_each_other():
    summary = measure(lambda a: a)
    [pair] = summary["pairs"]
    assert pair["tasks"] == ["a", "b"] and pair["steps"] == 3
    assert pair["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert pair["magnitude_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert pair["conflict_fraction"] == 0.0
    assert all(a["value"] > 0 for a in summary["affinity"])


def test_opposite_labels_conflict_and_hurt_each_other():
    summary = measure(lambda a: 1 - a)
    [pair] = summary["pairs"]
    assert pair["cosine"] < -0.5 and pair["conflict_fraction"] == 1.0
    assert all(a["value"] < 0 for a in summary["affinity"])


def test_observing_changes_neither_the_parameters_nor_the_random_state():
    module = module_with_twin_tasks()
    before = {k: v.clone() for k, v in module.net.state_dict().items()}
    x = torch.randint(0, 256, (8, 8, 8, 3), dtype=torch.uint8)
    y = {"a": torch.ones(8, dtype=torch.long), "b": torch.zeros(8, dtype=torch.long)}
    state = torch.get_rng_state()
    module.relations.observe(module, x, y, module.losses(module.net(x), y))
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in module.net.state_dict().items())
    assert all(p.requires_grad for p in module.net.parameters())


FAST = ["model=mlp", "model.backbone.hidden=[32]", "trainer.max_epochs=1", "loader.batch_size=48",
        "data.splits.train=240", "data.splits.val=80", "data.splits.test=120", "trainer.enable_progress_bar=false"]  # fmt: skip


def test_a_run_records_diagnostics_per_epoch_and_compare_shows_them(mtl, tiny, tmp_path):
    places = [o for o in tiny if o.startswith(("runs_dir=", "data_dir="))]
    assert mtl("run", "multitask", *places, *FAST, "diagnostics=true").exit_code == 0
    assert mtl("run", "single", *places, *FAST).exit_code == 0
    records = [load_record(d) for d in run_dirs(tmp_path / "runs")]
    [joint] = [r for r in records if r["kind"] == "multitask"]
    [entry] = joint["diagnostics"]
    assert entry["epoch"] == 0 and entry["pairs"][0]["tasks"] == ["fruit", "color"]
    assert entry["pairs"][0]["steps"] == 5 and -1 <= entry["pairs"][0]["cosine"] <= 1
    assert {(a["from"], a["to"]) for a in entry["affinity"]} == {("fruit", "color"), ("color", "fruit")}
    assert all(r["diagnostics"] == [] for r in records if r["kind"] == "single")  # off by default

    result = mtl("compare", tmp_path / "runs", "--diagnostics", "--format", "md")
    assert result.exit_code == 0, result.stderr
    assert "fruits: task relations" in result.stdout and "fruit · color" in result.stdout
    cosine = f"{entry['pairs'][0]['cosine']:+.3f}".replace("-", "−")
    assert cosine in result.stdout
    document = json.loads(mtl("compare", tmp_path / "runs", "--diagnostics", "--format", "json").stdout)
    [relation] = document["relations"]
    assert relation["cosine"] == pytest.approx(entry["pairs"][0]["cosine"]) and relation["n"] == 1
    assert document["sections"]  # the accuracies are still there
    table = mtl("compare", tmp_path / "runs", "--diagnostics")
    assert table.exit_code == 0 and "task relations" in table.stdout
