"""Architectures: parameter ownership, gradual unfreezing, partial transfer between
architectures, and a tiny run per architecture that learns and resumes."""

from __future__ import annotations

import pytest
import torch

from conftest import run_dirs
from mtl.config import compose, group_options
from mtl.errors import UserError
from mtl.finetune.transfer import transfer_weights
from mtl.models.archs import ARCHS
from mtl.models.net import MultiTaskNet
from mtl.tasks import Task
from mtl.train import prepare, train

ARCH_NAMES = ["hps", "mmoe", "cross_stitch", "mtan"]
BACKBONES = {"cnn": {"name": "cnn", "width": 4, "blocks": 2}, "mlp": {"name": "mlp", "hidden": [16, 8]}}


def net(arch: str, tasks=("fruit", "color"), backbone: str = "cnn", **settings) -> MultiTaskNet:
    specs = [Task(name, "multiclass", ("a", "b", "c")) for name in tasks]
    return MultiTaskNet(specs, (3, 8, 8), BACKBONES[backbone], {"hidden": 0}, {"name": arch, **settings})


def images(n: int = 6) -> torch.Tensor:
    return torch.randint(0, 256, (n, 8, 8, 3), dtype=torch.uint8)


def test_every_arch_has_a_config():
    assert group_options("arch") == ARCHS.names() == sorted(ARCH_NAMES)


@pytest.mark.parametrize("backbone", ["cnn", "mlp"])
@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_parameters_split_into_shared_and_per_task_and_blocks_cover_the_backbone(arch, backbone):
    torch.manual_seed(0)
    model = net(arch, backbone=backbone)
    shared = {id(p) for p in model.shared_parameters()}
    per_task = {name: {id(p) for p in model.task_parameters(name)} for name in model.tasks}
    assert not shared & (per_task["fruit"] | per_task["color"]) and not per_task["fruit"] & per_task["color"]
    assert shared | per_task["fruit"] | per_task["color"] == {id(p) for p in model.parameters()}
    # a task's own parameters touch no other task's output
    out = model(images())
    grads = torch.autograd.grad(out["color"].sum(), model.task_parameters("fruit"), allow_unused=True)
    assert all(g is None or not g.any() for g in grads)
    # gradual unfreezing walks `blocks`: together they hold every shared parameter
    in_blocks = {id(p) for block in model.backbone.blocks for p in block.parameters()}
    assert shared <= in_blocks and len(model.backbone.blocks) == 2


@pytest.mark.parametrize("arch", ["mmoe", "cross_stitch", "mtan"])
def test_single_task_nets_work_for_every_arch(arch):
    model = net(arch, tasks=("color",))
    out = model(images())
    assert set(out) == {"color"} and out["color"].shape == (6, 3)
    out["color"].sum().backward()
    assert all(p.grad is not None for p in model.shared_parameters())


def as_source(model: MultiTaskNet, arch: str, backbone: str = "cnn") -> dict:
    return {
        "path": f"{arch}.ckpt",
        "state_dict": {f"net.{k}": v for k, v in model.state_dict().items()},
        "mtl": {"net": {
            "tasks": [t.to_dict() for t in model.tasks.values()], "input_shape": [3, 8, 8],
            "backbone": BACKBONES[backbone], "head": {"hidden": 0}, "arch": {"name": arch},
        }, "run": {}},
    }  # fmt: skip


@pytest.mark.parametrize("arch", ["mmoe", "cross_stitch", "mtan"])
def test_finetuning_from_a_hard_sharing_source_fills_every_backbone_copy(arch):
    torch.manual_seed(0)
    source = net("hps")
    target = net(arch, tasks=("shape", "color"))
    report = transfer_weights(target, as_source(source, "hps"), log=lambda line: None)
    trunk = {k[len("backbone.trunk."):]: v for k, v in source.state_dict().items() if k.startswith("backbone.trunk.")}
    mine = target.state_dict()
    for copy in target.backbone.copies:
        for rest, tensor in trunk.items():
            assert torch.equal(mine[f"backbone.{copy}.{rest}"], tensor), (copy, rest)
    assert report["heads"]["color"] == "transferred"
    assert report["reasons"]  # gates / stitches / attention start fresh, with the reason
    assert all("the source (arch hps) has no such layer" in r for r in report["reasons"].values())
    assert set(report["reasons"]) <= set(report["initialised"])


def test_cross_stitch_columns_come_from_the_source_column_of_the_same_task():
    torch.manual_seed(0)
    source = net("cross_stitch", tasks=("fruit", "color"))
    target = net("cross_stitch", tasks=("shape", "color"))
    report = transfer_weights(target, as_source(source, "cross_stitch"), log=lambda line: None)
    theirs, mine = source.state_dict(), target.state_dict()
    name = "blocks.0.0.weight"
    assert torch.equal(mine[f"backbone.columns.color.{name}"], theirs[f"backbone.columns.color.{name}"])
    assert torch.equal(mine[f"backbone.columns.shape.{name}"], theirs[f"backbone.columns.fruit.{name}"])
    assert report["mapped"][f"backbone.columns.shape.{name}"] == f"backbone.columns.fruit.{name}"


def test_an_incompatible_backbone_is_still_an_error_naming_the_layer():
    source = as_source(net("hps"), "hps")
    wider = MultiTaskNet([Task("color", "multiclass", ("a", "b", "c"))], (3, 8, 8),
                         {"name": "cnn", "width": 8, "blocks": 2}, {"hidden": 0}, {"name": "mmoe"})  # fmt: skip
    with pytest.raises(UserError, match=r"different backbone: layer 'backbone.experts.0.blocks.0.0.weight' \(from the source's 'backbone.trunk.blocks.0.0.weight'\) has shape \(4, 3, 3, 3\)"):
        transfer_weights(wider, source, log=lambda line: None)


CNN = ["model.backbone.width=8", "model.backbone.blocks=2", "optim.lr=0.03", "trainer.max_epochs=1",
       "data.splits.train=240", "data.splits.val=80", "data.splits.test=120", "loader.batch_size=32",
       "trainer.enable_progress_bar=false"]  # fmt: skip


# a gradient method on per-task modules (MTAN attention) is covered by test_methods at unit level
@pytest.mark.parametrize("arch, method", [("mmoe", "pcgrad"), ("cross_stitch", "ew"), ("mtan", "ew")])
def test_every_arch_learns_a_tiny_run_and_resumes_from_its_checkpoint(arch, method, tiny, tmp_path):
    places = [o for o in tiny if o.startswith(("runs_dir=", "data_dir="))]
    settings = ["arch.experts=2"] if arch == "mmoe" else []
    cfg = compose("multitask", [*places, *CNN, f"arch={arch}", f"method={method}", *settings])
    first = train(prepare(cfg, log=lambda line: None), log=lambda line: None)
    [run_dir] = run_dirs(tmp_path / "runs")
    cfg.trainer.max_epochs = 2
    second = train(prepare(cfg, log=lambda line: None), log=lambda line: None, resume_dir=run_dir)
    assert first["arch"] == arch and [e["epoch"] for e in second["history"]] == [0, 1]
    assert second["history"][0] == first["history"][0]
    assert second["test"]["color"]["accuracy"] > second["data"]["majority"]["color"] + 0.1, second["test"]


def test_finetune_run_into_another_arch_reports_what_transferred(mtl, tiny, tmp_path):
    places = [o for o in tiny if o.startswith(("runs_dir=", "data_dir="))]
    source_cfg = compose("multitask", [*places, *CNN])
    source = train(prepare(source_cfg, log=lambda line: None), log=lambda line: None)
    [source_dir] = run_dirs(tmp_path / "runs")
    cfg = compose("finetune", [*places, *CNN, "data=objects", "arch=cross_stitch", f"source='{source_dir}'"])
    prepared = prepare(cfg, log=lambda line: None)
    assert prepared.transfer["heads"]["color"] == "transferred"
    assert len(prepared.transfer["mapped"]) > 0 and source["status"] == "complete"
