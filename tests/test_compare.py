"""mtl compare: aggregation against hand-computed values, formats, CLI errors, no torch."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mtl.compare import build_comparison, load_runs, render
from mtl.compare import stats
from mtl.errors import UserError
from mtl.records import PARADIGM, write_record
from mtl_cli.compare_cmd import compare

T_975_DF2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)
T_975_DF4 = 2.7764451051977987  # scipy.stats.t.ppf(0.975, 4)

FRUIT_TASKS = [
    {"name": "fruit", "kind": "multiclass", "classes": ["apple", "orange", "banana"],
     "metric": "accuracy", "higher_is_better": True},
    {"name": "colour", "kind": "multiclass", "classes": ["red", "orange", "yellow"],
     "metric": "accuracy", "higher_is_better": True},
]  # fmt: skip
PRICE_TASK = {"name": "price", "kind": "regression", "classes": [], "metric": "mae",
              "higher_is_better": False}  # fmt: skip


def make_record(kind, seed, test, tasks, *, data="fruits", train_size=200, status="complete",
                strategy=None, source=None, method="ew", arch="hps"):  # fmt: skip
    run_id = f"{data}-{kind}-{strategy or ''}-{'_'.join(test)}-n{train_size}-s{seed}"
    return {
        "schema": 1,
        "run_id": run_id,
        "kind": kind,
        "paradigm": PARADIGM[kind],
        "status": status,
        "data": {"name": data, "train_size": train_size},
        "tasks": tasks,
        "method": method,
        "arch": arch,
        "finetune": {"strategy": strategy} if strategy else None,
        "source": {"label": source, "run_id": "src"} if source else None,
        "seed": seed,
        "test": test,
        "error": "CUDA out of memory" if status == "failed" else None,
    }


def write_runs(root: Path) -> Path:
    """The fixture study; every number is chosen so the expected statistics are easy by hand."""
    fruit, colour = FRUIT_TASKS
    runs = []
    for seed, (f, c) in enumerate([(0.80, 0.90), (0.82, 0.91), (0.84, 0.92)]):
        runs.append(make_record("single", seed, {"fruit": {"accuracy": f}}, [fruit]))
        runs.append(make_record("single", seed, {"colour": {"accuracy": c}}, [colour]))
    for seed, (f, c) in enumerate([(0.90, 0.80), (0.92, 0.81), (0.94, 0.82)]):
        test = {"fruit": {"accuracy": f, "loss": 0.5}, "colour": {"accuracy": c}}
        runs.append(make_record("multitask", seed, test, FRUIT_TASKS))
    for seed, f in enumerate([0.83, 0.80, 0.86]):  # fruit only: colour missing from this row
        runs.append(make_record("finetune", seed, {"fruit": {"accuracy": f}}, [fruit],
                                strategy="full", source="shapes/multitask"))  # fmt: skip
    runs.append(make_record("finetune", 0, {"fruit": {"accuracy": 0.95}}, [fruit],
                            strategy="linear_probe", source="shapes/multitask"))  # fmt: skip
    for seed, (single, joint) in enumerate([(1.0, 0.8), (1.2, 0.9), (1.1, 1.0)]):
        price = [PRICE_TASK]
        runs.append(make_record("single", seed, {"price": {"mae": single, "r2": 0.5}}, price,
                                data="houses"))  # fmt: skip
        runs.append(make_record("multitask", seed, {"price": {"mae": joint, "r2": 0.6}}, price,
                                data="houses"))  # fmt: skip
    runs.append(make_record("multitask", 9, {"fruit": {"accuracy": 0.1}}, [fruit], status="failed"))
    runs.append(make_record("multitask", 8, {}, [fruit], status="running"))
    for record in runs:
        write_record(root / record["run_id"], record)
    broken = root / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{ not json")
    return root


@pytest.fixture
def runs(tmp_path) -> Path:
    return write_runs(tmp_path / "runs")


@pytest.fixture
def comparison(runs):
    records, skipped = load_runs([runs])
    return build_comparison(records, skipped)


def find_row(comparison, data, kind, strategy=None):
    section = next(s for s in comparison.sections if s.data == data)
    return next(r for r in section.rows if r.kind == kind and r.strategy == strategy)


# ---------------------------------------------------------------------------- statistics


def test_t_distribution_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3.5, 10, 120):
        for q in (0.6, 0.975, 0.995):
            assert stats.t_quantile(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), rel=1e-9)
        for t in (0.0, 0.7, 2.5, 12.0):
            assert stats.t_two_sided_p(t, df) == pytest.approx(
                2 * scipy_stats.t.sf(t, df), rel=1e-8, abs=1e-14
            )


def test_welch_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    a, b = [0.9, 0.92, 0.91], [0.8, 0.85, 0.83, 0.81]
    ours = stats.welch(a, b)
    theirs = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9)
    assert (ours.low, ours.high) == pytest.approx(tuple(theirs.confidence_interval()), rel=1e-9)


# ---------------------------------------------------------------------------- aggregation


def test_single_task_runs_merge_into_one_row(comparison):
    fruits = next(s for s in comparison.sections if s.data == "fruits")
    singles = [r for r in fruits.rows if r.kind == "single"]
    assert len(singles) == 1
    assert set(singles[0].cells) == {"fruit", "colour"}
    assert [c.name for c in fruits.tasks] == ["fruit", "colour"]
    assert [r.paradigm for r in fruits.rows] == ["none", "joint", "sequential", "sequential"]


def test_mean_std_n_and_interval(comparison):
    cell = find_row(comparison, "fruits", "single").cells["fruit"]
    assert cell.n == 3
    assert cell.mean == pytest.approx(0.82)
    assert cell.std == pytest.approx(0.02)  # sample std, ddof=1
    half = T_975_DF2 * 0.02 / math.sqrt(3)
    assert cell.interval == pytest.approx((0.82 - half, 0.82 + half))
    lone = find_row(comparison, "fruits", "finetune", "linear_probe").cells["fruit"]
    assert (lone.n, lone.std, lone.interval) == (1, None, None)


def test_delta_m_sign_and_value(comparison):
    joint = find_row(comparison, "fruits", "multitask")
    expected = 100 * ((0.92 - 0.82) / 0.82 + (0.81 - 0.91) / 0.91) / 2
    assert joint.delta_m == pytest.approx(expected)
    assert joint.delta_m > 0
    # Lower-is-better: a smaller MAE than single-task is a positive Δm.
    houses = find_row(comparison, "houses", "multitask")
    assert houses.delta_m == pytest.approx(-100 * (0.9 - 1.1) / 1.1)
    # Only the task both rows have enters Δm.
    finetune = find_row(comparison, "fruits", "finetune", "full")
    assert finetune.delta_m == pytest.approx(100 * (0.83 - 0.82) / 0.82)
    assert finetune.delta_m_tasks == 1


def test_transfer_gain_and_verdicts(comparison):
    joint = find_row(comparison, "fruits", "multitask")
    half = T_975_DF4 * math.sqrt(2 * 0.01**2 / 3)  # Welch, equal variances: df = 4
    fruit, colour = joint.cells["fruit"].vs_single, joint.cells["colour"].vs_single
    assert fruit.gain == pytest.approx(0.10)
    assert (fruit.low, fruit.high) == pytest.approx((0.10 - 2 * half, 0.10 + 2 * half))
    assert fruit.verdict == "positive transfer"
    assert colour.gain == pytest.approx(-0.10)
    assert colour.high < 0 and colour.verdict == "negative transfer"
    # A difference whose interval straddles zero is not significant.
    finetune = find_row(comparison, "fruits", "finetune", "full").cells["fruit"].vs_single
    assert finetune.gain == pytest.approx(0.01)
    assert finetune.low < 0 < finetune.high and finetune.verdict == "not significant"
    # One seed: no interval is invented.
    lone = find_row(comparison, "fruits", "finetune", "linear_probe").cells["fruit"].vs_single
    assert (lone.low, lone.high, lone.p_value, lone.verdict) == (None, None, None, "undefined")
    # Lower-is-better: MAE 0.9 vs 1.1 is a gain of +0.2.
    price = find_row(comparison, "houses", "multitask").cells["price"].vs_single
    assert price.gain == pytest.approx(0.2) and price.low < price.high


def test_best_respects_direction(comparison):
    fruit_best = [r.kind for r in comparison.sections[0].rows if r.cells["fruit"].best]
    assert fruit_best == ["finetune"]  # linear_probe 0.95
    houses = next(s for s in comparison.sections if s.data == "houses")
    assert [r.kind for r in houses.rows if r.cells["price"].best] == ["multitask"]


def test_skipped_runs_with_reasons(comparison):
    reasons = sorted(s.reason for s in comparison.skipped)
    assert len(reasons) == 3
    assert reasons[0] == "status failed: CUDA out of memory"
    assert reasons[1] == "status running"
    assert reasons[2].startswith("unreadable run.json")
    counted = sum(len(r.run_ids) for r in comparison.rows)
    assert counted == 6 + 3 + 3 + 1 + 6


def test_filter_sort_and_metric(runs):
    records, skipped = load_runs([runs])
    only = build_comparison(records, filters=["data=fruits", "kind=single,multitask"])
    assert [r.kind for r in only.rows] == ["single", "multitask"]
    by_fruit = build_comparison(records, filters=["data=fruits"], sort_by="fruit")
    assert [r.cells["fruit"].mean for r in by_fruit.rows] == sorted(
        [r.cells["fruit"].mean for r in by_fruit.rows], reverse=True
    )
    r2 = build_comparison(records, filters=["data=houses"], metric="r2")
    assert r2.sections[0].tasks[0].metric == "r2" and r2.sections[0].tasks[0].higher_is_better
    assert r2.rows[0].cells["price"].mean == pytest.approx(0.5)
    for bad in (dict(filters=["data"]), dict(filters=["colour=red"]), dict(sort_by="nope"),
                dict(metric="f1"), dict(filters=["data=nothing"])):  # fmt: skip
        with pytest.raises(UserError):
            build_comparison(records, **bad)


# ---------------------------------------------------------------------------- formats


def test_csv_parses_back(comparison):
    lines = list(csv.DictReader(io.StringIO(render(comparison, "csv"))))
    joint_colour = next(
        line for line in lines if line["kind"] == "multitask" and line["task"] == "colour"
    )
    assert float(joint_colour["mean"]) == pytest.approx(0.81)
    assert joint_colour["verdict"] == "negative transfer"
    assert int(joint_colour["n"]) == 3
    # Long format: a row without a task has no line for it.
    assert len(lines) == 2 + 2 + 1 + 1 + 1 + 1


def test_json_parses_back(comparison):
    data = json.loads(render(comparison, "json"))
    fruits = data["sections"][0]
    single = fruits["rows"][0]
    assert single["paradigm"] == "none"
    assert single["cells"]["fruit"]["std"] == pytest.approx(0.02)
    assert "positive = better" in data["delta_m_definition"]
    assert len(data["skipped"]) == 3


def test_markdown_table_shape(comparison):
    text = render(comparison, "md", show_ci=True, show_pvalue=True)
    table = [line for line in text.splitlines() if line.startswith("|")]
    widths = {len(line.replace("\\|", "").strip("|").split("|")) for line in table}
    assert len(widths) == 2  # one width per data set's table
    assert "negative transfer" in text and "n.s." in text and "undefined" in text
    assert "**joint**" in text and "positive = better than single-task" in text
    assert "shapes/multitask" in text  # the fine-tune rows name their source


def test_latex_tabular_structure(comparison):
    text = render(comparison, "latex")
    assert text.count(r"\begin{tabular}") == text.count(r"\end{tabular}") == 2
    for block in text.split(r"\begin{tabular}{")[1:]:
        spec, body = block.split("}", 1)
        body = body.split(r"\end{tabular}")[0]
        rows = [line for line in body.splitlines() if line.endswith(r"\\")]
        assert rows and all(line.count(" & ") == len(spec) - 1 for line in rows)
    assert r"\textbf{" in text and r"$\pm$" in text and "% skipped" in text


def test_table_has_legend_and_skips(comparison):
    text = render(comparison, "table")
    for paradigm in ("joint", "sequential", "none"):
        assert f"{paradigm} — " in text
    assert "status failed: CUDA out of memory" in text
    assert "Δm" in text and "positive = better than single-task" in text


def test_terminal_table_names_each_row_and_is_not_wrapped_in_a_log(comparison):
    from rich.console import Console

    from mtl.compare import print_rich, rich_renderables

    buffer = io.StringIO()
    console = Console(file=buffer, width=60, color_system=None)  # a file: no terminal
    print_rich(console, rich_renderables(comparison))
    lines = buffer.getvalue().splitlines()
    rows = [line for line in lines if line.startswith("│")]
    assert max(len(line) for line in rows) > 60  # its natural width, not the console's 60
    assert any("← shapes/multitask" in line for line in rows)  # the run column names its source
    assert any("▼" in line and "gain −10.0 pp" in line for line in rows)  # verdict beside the gain


def test_unknown_format_is_a_user_error(comparison):
    with pytest.raises(UserError, match="unknown format"):
        render(comparison, "xlsx")


# ---------------------------------------------------------------------------- CLI


@pytest.fixture
def invoke():
    app = typer.Typer()
    app.command("compare")(compare)
    app.command("noop")(lambda: None)  # two commands keep `compare` a subcommand
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["compare", *map(str, args)])


def test_cli_formats_and_output(invoke, runs, tmp_path):
    result = invoke(runs, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sections"]
    target = tmp_path / "out" / "table.md"
    result = invoke(runs, "--format", "md", "--output", target, "--ci")
    assert result.exit_code == 0 and target.read_text().startswith("### fruits")
    result = invoke("--runs-dir", runs, "--filter", "data=houses", "--pvalue")
    assert result.exit_code == 0 and "houses" in result.stdout and "p=" in result.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--format", "xlsx"], "unknown format"),
        (["--filter", "nokey"], "bad filter"),
        (["--sort-by", "nope"], "unknown sort column"),
        (["does/not/exist"], "does not exist"),
        (["--runs-dir", "nowhere"], "no runs found"),
    ],
)
def test_cli_user_errors_exit_2_in_one_line(invoke, runs, args, fragment, monkeypatch):
    monkeypatch.chdir(runs)
    if args[0] in ("--format", "--filter", "--sort-by"):
        args = [str(runs), *args]
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and fragment in message, message


def test_cli_plot_writes_png(invoke, tmp_path):
    root = tmp_path / "runs"
    fruit = FRUIT_TASKS[0]
    for size in (50, 200):
        for seed in range(2):
            for kind in ("single", "multitask"):
                value = 0.6 + size / 1000 + seed / 100 + (kind == "multitask") / 50
                record = make_record(kind, seed, {"fruit": {"accuracy": value}}, [fruit],
                                     train_size=size)  # fmt: skip
                write_record(root / record["run_id"], record)
    png = tmp_path / "plot.png"
    result = invoke(root, "--plot", png)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_never_imports_torch(runs):
    script = (
        "import sys, typer\n"
        "from typer.testing import CliRunner\n"
        "from mtl_cli.compare_cmd import compare\n"
        "app = typer.Typer(); app.command('compare')(compare); app.command('noop')(lambda: 0)\n"
        f"result = CliRunner().invoke(app, ['compare', {str(runs)!r}, '--format', 'md'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = {'torch', 'pytorch_lightning', 'scipy', 'matplotlib'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
