"""Multitask methods: each against its defining property, the torchjd wiring, trainer checks,
and a tiny run per method that learns and resumes from its checkpoint."""

from __future__ import annotations

import math

import pytest
import torch
import torchjd.aggregation as agg
from omegaconf import OmegaConf

from conftest import load_record, run_dirs
from mtl.config import compose, group_options
from mtl.errors import UserError
from mtl.methods import METHODS, build_method
from mtl.models.net import MultiTaskNet
from mtl.tasks import Task
from mtl.train import prepare, train

TASKS = ["fruit", "color"]


def method(name: str, **settings):
    return build_method(OmegaConf.create({"name": name, **settings}), TASKS)


def losses(a: float, b: float, requires_grad: bool = False) -> dict[str, torch.Tensor]:
    return {"fruit": torch.tensor(a, requires_grad=requires_grad), "color": torch.tensor(b, requires_grad=requires_grad)}


def test_every_method_has_a_config_and_every_config_a_method():
    assert group_options("method") == METHODS.names()


def test_ew_is_the_plain_sum():
    values = losses(0.7, 2.5)
    assert method("ew").combine(values).item() == pytest.approx(3.2)


def test_static_applies_its_weights_and_rejects_unknown_tasks():
    assert method("static", weights={"fruit": 2.0}).combine(losses(1.0, 3.0)).item() == pytest.approx(5.0)
    with pytest.raises(UserError, match="names 'shape', which is not a task of this run"):
        method("static", weights={"shape": 1.0})


def test_uw_learns_its_log_variances_towards_the_log_losses():
    uw = method("uw")
    optimizer = torch.optim.SGD(uw.parameters(), lr=0.5)
    for _ in range(60):  # ½e^(−s)L + ½s is minimised at s = log L
        optimizer.zero_grad()
        uw.combine(losses(4.0, 0.25)).backward()
        optimizer.step()
    assert uw.log_variances.tolist() == pytest.approx([math.log(4.0), math.log(0.25)], abs=0.05)
    weights = uw.current_weights()
    assert weights["color"] > weights["fruit"]  # the noisier (higher-loss) task is down-weighted


@pytest.mark.parametrize("name", ["uw", "gradnorm"])
def test_a_methods_own_parameters_get_no_weight_decay(name):
    from mtl.module import MultiTaskModule

    weighting = method(name)
    module = MultiTaskModule(tiny_net(), weighting, {"name": "adamw", "lr": 0.01, "weight_decay": 0.1})
    decay = {id(p): g["weight_decay"] for g in module.configure_optimizers().param_groups for p in g["params"]}
    assert {decay[id(p)] for p in weighting.parameters()} == {0.0}
    assert {decay[id(p)] for p in module.net.parameters()} == {0.1}
    assert len(decay) == len(list(module.parameters()))  # every parameter optimised, none twice


def test_dwa_weights_sum_to_the_number_of_tasks_and_favour_the_slower_task():
    dwa = method("dwa", temperature=2.0)
    assert dwa.current_weights() == {"fruit": 1.0, "color": 1.0}  # first two epochs: uniform
    dwa.on_epoch_end(0, {"fruit": 1.0, "color": 1.0})
    dwa.on_epoch_end(1, {"fruit": 0.5, "color": 0.9})  # fruit falls fast, colour slowly
    weights = dwa.current_weights()
    assert sum(weights.values()) == pytest.approx(2.0)
    expected_color = 2 * math.exp(0.9 / 2) / (math.exp(0.5 / 2) + math.exp(0.9 / 2))
    assert weights["color"] == pytest.approx(expected_color) and weights["color"] > weights["fruit"]
    assert dwa.combine(losses(1.0, 1.0)).item() == pytest.approx(2.0)


def test_rlw_draws_positive_weights_summing_to_one():
    rlw = method("rlw")
    torch.manual_seed(0)
    for _ in range(20):
        rlw.combine(losses(1.0, 1.0))
    weights = rlw.current_weights()
    assert sum(weights.values()) == pytest.approx(1.0) and min(weights.values()) > 0
    assert len({round(w, 6) for w in weights.values()}) == 2  # random, not uniform


def tiny_net(arch: str = "hps", tasks=("fruit", "color")) -> MultiTaskNet:
    specs = [Task(name, "multiclass", ("a", "b", "c")) for name in tasks]
    return MultiTaskNet(specs, (3, 8, 8), {"name": "mlp", "hidden": [16, 8]}, {"hidden": 0}, {"name": arch})


def test_gradnorm_moves_weight_to_the_task_with_the_smaller_gradient():
    torch.manual_seed(0)
    net = tiny_net()
    gradnorm = method("gradnorm", alpha=0.0)  # alpha 0: equalise the weighted gradient norms
    gradnorm.attach(net)
    optimizer = torch.optim.SGD(gradnorm.parameters(), lr=0.1)
    x = torch.randn(32, 3, 8, 8)
    targets = torch.randint(0, 3, (32,))
    for _ in range(15):
        out = net(x)
        values = {"fruit": 10 * torch.nn.functional.cross_entropy(out["fruit"], targets),
                  "color": torch.nn.functional.cross_entropy(out["color"], targets)}  # fmt: skip
        optimizer.zero_grad()
        gradnorm.combine(values).backward()
        optimizer.step()
    weights = gradnorm.current_weights()
    assert sum(weights.values()) == pytest.approx(2.0)
    assert weights["color"] > 1.5 > weights["fruit"]  # the ×10 task's gradient is 10× larger


def test_pcgrad_result_conflicts_with_neither_gradient():
    g1, g2 = torch.tensor([1.0, 0.0, 0.5]), torch.tensor([-1.0, 1.0, 0.0])
    assert g1 @ g2 < 0  # they conflict
    update = method("pcgrad").aggregator(torch.stack([g1, g2]))
    assert update @ g1 >= -1e-6 and update @ g2 >= -1e-6
    # by hand: each projected on the other's normal plane, then summed
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2
    p2 = g2 - (g2 @ g1) / (g1 @ g1) * g1
    assert torch.allclose(update, p1 + p2, atol=1e-5)


def test_mgda_is_the_min_norm_point_of_the_convex_hull():
    g1, g2 = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    # min over γ of ‖γ g1 + (1−γ) g2‖²: γ = (g2−g1)·g2 / ‖g1−g2‖² = 1/5
    gamma = ((g2 - g1) @ g2) / ((g1 - g2) @ (g1 - g2))
    expected = gamma * g1 + (1 - gamma) * g2
    update = method("mgda", epsilon=1e-6, max_iters=1000).aggregator(torch.stack([g1, g2]))
    assert gamma.item() == pytest.approx(0.2)
    assert torch.allclose(update, expected, atol=1e-3), update


AGGREGATORS = {
    "mgda": agg.MGDA, "pcgrad": agg.PCGrad, "cagrad": agg.CAGrad, "imtl_g": agg.IMTLG,
    "nash_mtl": agg.NashMTL, "aligned_mtl": agg.AlignedMTL, "upgrad": agg.UPGrad,
    "graddrop": agg.GradDrop, "dualproj": agg.DualProj, "config": agg.ConFIG,
    "fairgrad": agg.FairGrad, "rgw": agg.Random,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_torchjd_methods_are_wired_to_their_aggregator(name):
    m = method(name)
    assert m.manual_backward and type(m.aggregator) is AGGREGATORS[name]


def test_settings_reach_the_aggregator():
    assert method("cagrad", c=0.7).aggregator.gramian_weighting.c == 0.7
    assert method("nash_mtl", max_norm=2.0).aggregator.max_norm == 2.0
    with pytest.raises(UserError, match="one per task"):
        method("upgrad", pref_vector=[1.0])
    with pytest.raises(UserError, match="bad setting for method=pcgrad"):
        method("pcgrad", c=1.0)


def test_nash_mtl_state_survives_a_checkpoint():
    first = method("nash_mtl")
    jacobian = torch.tensor([[1.0, 0.2, 0.0], [-0.3, 1.0, 0.5]])
    for _ in range(3):
        first.aggregator(jacobian)
    second = method("nash_mtl")
    second.load_state_dict(first.state_dict())
    assert torch.equal(first.aggregator(jacobian), second.aggregator(jacobian))


def test_a_jacobian_step_trains_heads_on_their_own_loss_and_the_backbone_on_the_aggregate():
    torch.manual_seed(0)
    net = tiny_net("mtan")
    upgrad = method("upgrad")
    out = net(torch.randn(16, 3, 8, 8))
    target = torch.randint(0, 3, (16,))
    values = torch.stack([torch.nn.functional.cross_entropy(out[t], target) for t in TASKS])
    own = torch.autograd.grad(values[0], list(net.heads["fruit"].parameters()), retain_graph=True)
    upgrad.jacobian_backward(net, values)
    for mine, expected in zip(net.heads["fruit"].parameters(), own):
        assert torch.allclose(mine.grad, expected)
    assert all(p.grad is not None for p in net.shared_parameters())
    assert all(not hasattr(p, "jac") for p in net.parameters())
    assert upgrad.current_weights().keys() == {"fruit", "color"}


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer=ddp_sim", "would only see each process's share of the batch"),
        ("trainer.gradient_clip_val=1.0", "Lightning cannot clip gradients"),
    ],
)
def test_gradient_methods_refuse_what_they_cannot_do_before_any_run(mtl, tiny, tmp_path, override, message):
    result = mtl("run", "multitask", *tiny, "method=pcgrad", override)
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


# An MLP on few images: the cheapest run in which a method still has to learn something.
FAST = [
    "model=mlp", "model.backbone.hidden=[64]", "optim.lr=0.02", "trainer.max_epochs=1", "loader.batch_size=48",
    "data.splits.train=240", "data.splits.val=80", "data.splits.test=120", "trainer.enable_progress_bar=false",
]  # fmt: skip


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_learns_a_tiny_run_and_resumes_from_its_checkpoint(name, tiny, tmp_path):
    places = [o for o in tiny if o.startswith(("runs_dir=", "data_dir="))]
    cfg = compose("multitask", [*places, *FAST, f"method={name}"])
    first = train(prepare(cfg, log=lambda line: None), log=lambda line: None)
    [run_dir] = run_dirs(tmp_path / "runs")
    assert first["status"] == "complete" and first["method"] == name
    # continue the same run for a second epoch from its last checkpoint
    cfg.trainer.max_epochs = 2
    second = train(prepare(cfg, log=lambda line: None), log=lambda line: None, resume_dir=run_dir)
    assert [e["epoch"] for e in second["history"]] == [0, 1]
    assert second["history"][0] == first["history"][0]
    assert second["task_weights"][0] == first["task_weights"][0]
    # two epochs cannot lift every task: the easiest one is clearly above its majority class
    margins = [second["test"][t]["accuracy"] - second["data"]["majority"][t] for t in ("fruit", "color")]
    assert max(margins) > 0.1, second["test"]
    assert load_record(run_dir)["status"] == "complete"


def test_a_fine_tune_penalty_adds_its_plain_gradient_to_the_aggregated_one():
    torch.manual_seed(0)
    net = tiny_net()
    x, target = torch.randn(16, 3, 8, 8), torch.randint(0, 3, (16,))
    anchor = [p.detach() + 0.1 for p in net.shared_parameters()]

    def objectives(with_penalty: bool) -> torch.Tensor:
        out = net(x)
        values = torch.stack([torch.nn.functional.cross_entropy(out[t], target) for t in TASKS])
        if not with_penalty:
            return values
        penalty = sum((p - a).pow(2).sum() for p, a in zip(net.shared_parameters(), anchor))
        return torch.cat([values, penalty.reshape(1)])

    grads = []
    for with_penalty in (False, True):
        net.zero_grad(set_to_none=True)
        method("pcgrad").jacobian_backward(net, objectives(with_penalty))
        grads.append([p.grad.clone() for p in net.shared_parameters()])
    for plain, penalised, p, a in zip(*grads, net.shared_parameters(), anchor):
        assert torch.allclose(penalised - plain, 2 * (p - a).detach(), atol=1e-5)
