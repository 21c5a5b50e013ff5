"""The trade-off frontier (table, verdicts, Pareto set, sweep lines, figure) on a small real results tree.

Spider tables come from the real scorer on 40 real dev questions (concert_singer) plus one whose
database is missing; MMLU tables (200 questions, 4 categories) and regression.csv from the real
regression code; hyperparams.json from the real RunSpec. The runs are built so that each verdict
is clear-cut: the numbers below are counts of questions, and every expected value in the tests is
recomputed from the per-item CSV rows, not read from the summary.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.text import Text

from lora_tradeoff.report.build import write_report
from lora_tradeoff.report.checks import headline_mismatches, recompute_headlines
from lora_tradeoff.report.frontier import (
    COLLAPSE,
    FORGETTING,
    FULL,
    LORA,
    NO_FORGETTING,
    QLORA,
    frontier_verdict,
    method_family,
    pareto_optimal,
    sweep_lines,
)
from lora_tradeoff.report.inputs import load_inputs, standard_paths
from lora_tradeoff.report.plots import STYLE, plot_frontier
from lora_tradeoff.spider.scoring import score_predictions, summarize_scores
from lora_tradeoff.stats import minimum_detectable_difference
from lora_tradeoff.training.run import LOG_COLUMNS, RunSpec
from tests.mmlu_rows import mmlu_scored_frame, write_mmlu_tables

N_SPIDER = 40  # dev questions 0..39, all of concert_singer
MISSING_DB_INDEX = 100  # a question whose database the tree has not got: skipped for every model
N_MMLU = 200
CATEGORIES = ("stem", "humanities", "social_sciences", "other")
RUNS = ["lora_lr1e-4", "lora_lr1e-3", "lora_lr3e-4", "qlora_r16", "full_lr1e-5"]
MODELS = ["base", *RUNS]
BASE_RIGHT = set(range(20))
# Spider: which of the 40 questions each model answers right (base: 0..19).
SPIDER_RIGHT = {
    "base": BASE_RIGHT,
    "lora_lr1e-4": BASE_RIGHT - {0} | {20, 21, 22},  # +5 points
    "lora_lr1e-3": BASE_RIGHT - {0} | set(range(20, 28)),  # +17.5
    "lora_lr3e-4": BASE_RIGHT - {0} | set(range(20, 25)),  # +10
    "qlora_r16": BASE_RIGHT - {0, 1} | {20, 21, 22},  # +2.5
    "full_lr1e-5": set(range(4)),  # -40
}
# MMLU: (questions the base model gets right that the run loses, wrong ones it gains); base: 120 of 200.
MMLU_FLIPS = {
    "base": (0, 0),
    "lora_lr1e-4": (4, 4),  # 0 points
    "lora_lr1e-3": (30, 2),  # -14
    "lora_lr3e-4": (5, 3),  # -1
    "qlora_r16": (6, 3),  # -1.5
    "full_lr1e-5": (100, 0),  # -50
}
EXPECTED_VERDICTS = {
    "lora_lr1e-4": NO_FORGETTING,
    "lora_lr3e-4": NO_FORGETTING,
    "qlora_r16": NO_FORGETTING,
    "lora_lr1e-3": FORGETTING,
    "full_lr1e-5": COLLAPSE,
}
# The learning-rate sweep, in expansion order (the config listed 1e-4, 1e-3, 3e-4): not sorted.
SWEEPS = {
    "lora": {
        "keys": ["learning_rate"],
        "runs": ["lora_lr1e-4", "lora_lr1e-3", "lora_lr3e-4"],
        "values": {
            "lora_lr1e-4": {"learning_rate": 1e-4},
            "lora_lr1e-3": {"learning_rate": 1e-3},
            "lora_lr3e-4": {"learning_rate": 3e-4},
        },
    }
}


def _spider(root: Path, spider_dir: Path, spider_dev: list[dict]) -> None:
    indices = [*range(N_SPIDER), MISSING_DB_INDEX]
    dev = [{"id": f"dev-{i:04d}", **spider_dev[i]} for i in indices]
    assert {item["db_id"] for item in dev[:-1]} == {"concert_singer"} and dev[-1]["db_id"] != "concert_singer"
    databases = {"concert_singer": str(spider_dir / "database" / "concert_singer" / "concert_singer.sqlite")}
    for model in MODELS:
        predictions = [
            {
                "id": item["id"],
                "raw_output": item["query"]
                if i in SPIDER_RIGHT[model] or i == MISSING_DB_INDEX
                else "SELECT x FROM nowhere",
            }
            for i, item in zip(indices, dev, strict=True)
        ]
        scored = score_predictions(dev, predictions, databases)
        assert list(scored["status"]) == [
            "success" if i in SPIDER_RIGHT[model] else "failure" for i in range(N_SPIDER)
        ] + ["skipped"], model
        (root / model).mkdir(parents=True)
        scored.to_csv(root / model / "spider_scored.csv", index=False)
        (root / model / "spider_summary.json").write_text(json.dumps({"model": model, **summarize_scores(scored)}))


def _mmlu(root: Path) -> None:
    base_correct = np.array([i % 5 < 3 for i in range(N_MMLU)])
    right, wrong = np.flatnonzero(base_correct), np.flatnonzero(~base_correct)
    frames = {}
    for model, (lost, gained) in MMLU_FLIPS.items():
        correct = base_correct.copy()
        correct[right[:lost]] = False
        correct[wrong[:gained]] = True
        subjects = [f"subject_{i % 8}" for i in range(N_MMLU)]
        frames[model] = mmlu_scored_frame(correct, subjects, [CATEGORIES[i % 4] for i in range(N_MMLU)])
    write_mmlu_tables(root, frames)


def _runs(root: Path) -> None:
    configs = {
        "lora_lr1e-4": {"learning_rate": 1e-4},
        "lora_lr1e-3": {"learning_rate": 1e-3, "method": "lora"},
        "lora_lr3e-4": {"learning_rate": 3e-4, "method": "lora"},
        "qlora_r16": {"quantization": "nf4", "method": "lora"},
        "full_lr1e-5": {"learning_rate": 1e-5, "method": "full"},
    }
    for run, config in configs.items():
        spec = RunSpec.from_config(run, {**config, "max_steps": 20}).to_dict()
        if run == "lora_lr1e-4":
            spec.pop("method", None)  # a hyperparams.json written before full fine-tuning existed
        folder = root / "runs" / run
        folder.mkdir(parents=True)
        record = {"run": run, "spec": spec, "device_name": "cpu", "global_steps": 20, "versions": {}}
        (folder / "hyperparams.json").write_text(json.dumps(record))
        steps = np.arange(1, 21)
        log = pd.DataFrame(
            {
                "step": steps,
                "epoch": steps / 20,
                "loss": 2.0 * np.exp(-steps / 8) + 0.5,
                "learning_rate": spec["learning_rate"],
                "grad_norm": 1.0,
                "tokens_per_s": 100.0,
            }
        )
        assert tuple(log.columns) == LOG_COLUMNS
        log.to_csv(folder / "train_log.csv", index=False)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory, spider_dir: Path, spider_dev: list[dict]) -> dict:
    root = tmp_path_factory.mktemp("results")
    _spider(root, spider_dir, spider_dev)
    _mmlu(root)
    _runs(root)
    (root / "model").mkdir()
    (root / "model" / "base_model.json").write_text("{}")  # no manifest: the report names no base model
    inputs = load_inputs(**standard_paths(root, MODELS, MODELS, RUNS))
    summary = write_report(inputs, root / "report", n_resamples=2000, seed=1234, sweeps=SWEEPS)
    return {"root": root, "out": root / "report", "inputs": inputs, "summary": summary}


def _from_items(root: Path, run: str) -> dict:
    """A run's changes, discordant counts and MDDs straight from its per-item CSV rows (points)."""
    spider = {m: pd.read_csv(root / m / "spider_scored.csv").set_index("id") for m in ("base", run)}
    scored = spider["base"].index[(spider["base"]["status"] != "skipped") & (spider[run]["status"] != "skipped")]
    ex_base, ex_run = spider["base"].loc[scored, "score"] == 1, spider[run].loc[scored, "score"] == 1
    mmlu = {m: pd.read_csv(root / m / "mmlu_scored.csv").set_index("id") for m in ("base", run)}
    right_base, right_run = mmlu["base"]["correct"], mmlu[run].loc[mmlu["base"].index, "correct"]
    ex_discordant, mmlu_discordant = int((ex_base != ex_run).sum()), int((right_base != right_run).sum())
    ex_mdd = minimum_detectable_difference(len(scored), ex_discordant / len(scored))
    mmlu_mdd = minimum_detectable_difference(len(right_base), mmlu_discordant / len(right_base))
    return {
        "n_spider": len(scored),
        "delta_spider_ex_points": 100 * (ex_run.mean() - ex_base.mean()),
        "spider_mdd_points": None if np.isnan(ex_mdd) else 100 * ex_mdd,
        "delta_mmlu_overall_points": 100 * (right_run.mean() - right_base.mean()),
        "mmlu_mdd_points": None if np.isnan(mmlu_mdd) else 100 * mmlu_mdd,
        "categories": {
            c: 100
            * (right_run[mmlu["base"]["category"] == c].mean() - right_base[mmlu["base"]["category"] == c].mean())
            for c in CATEGORIES
        },
    }


def test_frontier_rows_and_verdicts_recomputed_from_the_item_rows(tree: dict) -> None:
    rows = {row["run"]: row for row in tree["summary"]["frontier"]}
    assert sorted(rows) == sorted(RUNS)
    for run in RUNS:
        row, items = rows[run], _from_items(tree["root"], run)
        assert items["n_spider"] == N_SPIDER  # the question with a missing database is left out of both
        assert row["delta_spider_ex_points"] == pytest.approx(items["delta_spider_ex_points"])
        assert row["delta_mmlu_overall_points"] == pytest.approx(items["delta_mmlu_overall_points"], abs=1e-4)
        for category in CATEGORIES:
            assert row["mmlu_categories"][category]["delta_points"] == pytest.approx(
                items["categories"][category], abs=1e-4
            )
        for key in ("spider_mdd_points", "mmlu_mdd_points"):
            assert row[key] == pytest.approx(items[key], abs=1e-4), (run, key)
        assert row["mmlu_ci_low_points"] <= row["delta_mmlu_overall_points"] <= row["mmlu_ci_high_points"]
    # The designed changes, by hand from the tables above.
    assert rows["lora_lr1e-3"]["delta_spider_ex_points"] == pytest.approx(17.5)
    assert rows["lora_lr1e-3"]["delta_mmlu_overall_points"] == pytest.approx(-14.0)
    assert rows["full_lr1e-5"]["delta_spider_ex_points"] == pytest.approx(-40.0)
    assert rows["full_lr1e-5"]["delta_mmlu_overall_points"] == pytest.approx(-50.0)
    # Each verdict, and the numbers that make it so (MDDs recomputed from the discordant questions).
    assert {run: row["verdict"] for run, row in rows.items()} == EXPECTED_VERDICTS
    items = _from_items(tree["root"], "full_lr1e-5")
    assert items["delta_spider_ex_points"] < -items["spider_mdd_points"]
    assert items["delta_mmlu_overall_points"] < -items["mmlu_mdd_points"]
    forgot = rows["lora_lr1e-3"]
    assert forgot["mmlu_ci_high_points"] < 0 and forgot["delta_spider_ex_points"] > 0  # a gain: not a collapse
    for run in ("lora_lr1e-4", "lora_lr3e-4", "qlora_r16"):
        assert rows[run]["mmlu_ci_high_points"] >= 0, run
    # Sorted by Δ MMLU, least forgetting first; summary.json holds the same rows.
    assert [row["run"] for row in tree["summary"]["frontier"]] == [
        "lora_lr1e-4",  # 0
        "lora_lr3e-4",  # -1
        "qlora_r16",  # -1.5
        "lora_lr1e-3",  # -14
        "full_lr1e-5",  # -50
    ]
    assert json.loads((tree["out"] / "summary.json").read_text())["frontier"] == json.loads(
        json.dumps(tree["summary"]["frontier"])
    )
    # The cost in MMLU per point of EX: only a run that gained EX and forgot.
    assert rows["lora_lr1e-3"]["mmlu_cost_per_ex_point"] == pytest.approx(-14.0 / 17.5)
    assert all(rows[run]["mmlu_cost_per_ex_point"] is None for run in RUNS if run != "lora_lr1e-3")


def test_the_verdict_policy_on_its_edges() -> None:
    row = {
        "delta_spider_ex_points": -10.0,
        "spider_mdd_points": 9.9,
        "delta_mmlu_overall_points": -5.0,
        "mmlu_mdd_points": 4.9,
        "mmlu_ci_high_points": -0.1,
    }
    assert frontier_verdict(row) == COLLAPSE
    assert frontier_verdict({**row, "spider_mdd_points": 10.0}) == FORGETTING  # a drop equal to the MDD: not beyond
    assert frontier_verdict({**row, "spider_mdd_points": None}) == FORGETTING  # n/a is never exceeded
    assert frontier_verdict({**row, "delta_spider_ex_points": 3.0}) == FORGETTING
    assert frontier_verdict({**row, "delta_spider_ex_points": 3.0, "mmlu_ci_high_points": 0.0}) == NO_FORGETTING


def test_the_pareto_set(tree: dict) -> None:
    # From the item rows, by brute force: a run is optimal when no other run is >= on both changes and > on one.
    points = {
        run: (items["delta_mmlu_overall_points"], items["delta_spider_ex_points"])
        for run in RUNS
        for items in [_from_items(tree["root"], run)]
    }
    expected = {
        a
        for a, (ax, ay) in points.items()
        if not any(bx >= ax and by >= ay and (bx, by) != (ax, ay) for b, (bx, by) in points.items() if b != a)
    }
    assert expected == {"lora_lr1e-4", "lora_lr3e-4", "lora_lr1e-3"}
    assert {row["run"] for row in tree["summary"]["frontier"] if row["pareto_optimal"]} == expected
    # Two runs at the same point are both optimal; a point with a missing change never is.
    assert pareto_optimal({"a": (1.0, 2.0), "b": (1.0, 2.0), "c": (0.0, 2.0), "d": (None, 9.0)}) == {"a", "b"}


def test_method_families_from_hyperparams(tree: dict) -> None:
    rows = {row["run"]: row["method_family"] for row in tree["summary"]["frontier"]}
    assert "method" not in json.loads((tree["root"] / "runs" / "lora_lr1e-4" / "hyperparams.json").read_text())["spec"]
    assert rows == {
        "lora_lr1e-4": LORA,
        "lora_lr1e-3": LORA,
        "lora_lr3e-4": LORA,
        "qlora_r16": QLORA,
        "full_lr1e-5": FULL,
    }
    assert method_family({"spec": {"quantization": "nf4"}}) == QLORA  # old QLoRA record
    assert method_family({"spec": {}}) == LORA
    with pytest.raises(ValueError, match="method 'full' with quantization 'nf4'"):
        method_family({"run": "x", "spec": {"method": "full", "quantization": "nf4"}})
    with pytest.raises(ValueError, match="method 'dora'"):
        method_family({"spec": {"method": "dora", "quantization": "none"}})
    text = (tree["out"] / "summary.md").read_text()
    assert "| method family | LoRA | LoRA | LoRA | QLoRA | full fine-tuning |" in text
    assert "| r (rank) | 16 | 16 | 16 | 16 | unused (full) |" in text


def test_a_sweep_is_joined_in_the_order_of_its_values(tree: dict) -> None:
    (line,) = tree["summary"]["frontier_lines"]
    assert (line["sweep"], line["key"], line["ascending"], line["fixed"]) == ("lora", "learning_rate", True, {})
    assert line["runs"] == ["lora_lr1e-4", "lora_lr3e-4", "lora_lr1e-3"]  # not the expansion order
    assert line["values"] == [1e-4, 3e-4, 1e-3]
    assert line["verdicts"] == [NO_FORGETTING, NO_FORGETTING, FORGETTING]
    rows = {row["run"]: row for row in tree["summary"]["frontier"]}
    assert line["delta_mmlu_overall_points"] == [rows[r]["delta_mmlu_overall_points"] for r in line["runs"]]
    assert line["delta_spider_ex_points"] == [rows[r]["delta_spider_ex_points"] for r in line["runs"]]


def _row(run: str, mmlu: float, ex: float, verdict: str = NO_FORGETTING, family: str = LORA) -> dict:
    return {
        "run": run,
        "delta_mmlu_overall_points": mmlu,
        "delta_spider_ex_points": ex,
        "verdict": verdict,
        "method_family": family,
    }


def test_multi_key_sweeps_join_points_that_share_the_other_values() -> None:
    # learning_rate x r, first key varying slowest, values listed high to low.
    names = {(lr, r): f"p_lr{lr:g}_r{r}" for lr in (1e-3, 1e-4) for r in (16, 64)}
    sweeps = {
        "grid": {
            "keys": ["learning_rate", "r"],
            "runs": list(names.values()),
            "values": {name: {"learning_rate": lr, "r": r} for (lr, r), name in names.items()},
        },
        "how": {  # a sweep over the method: strings keep the configured order
            "keys": ["method"],
            "runs": ["m_full", "m_lora"],
            "values": {"m_full": {"method": "full"}, "m_lora": {"method": "lora"}},
        },
        "seeded": {  # a point trained with two seeds: the line passes through their mean
            "keys": ["learning_rate"],
            "runs": ["s_lr1e-3", "s_lr1e-4"],
            "values": {"s_lr1e-3": {"learning_rate": 1e-3}, "s_lr1e-4": {"learning_rate": 1e-4}},
        },
    }
    rows = [_row(name, -lr * 1e4, r / 10) for (lr, r), name in names.items()]
    rows += [_row("m_full", -9.0, 1.0, FORGETTING, FULL), _row("m_lora", -1.0, 4.0)]
    rows += [
        _row("s_lr1e-3_s1", -4.0, 6.0, FORGETTING),
        _row("s_lr1e-3_s2", -2.0, 8.0),
        _row("s_lr1e-4", 0.0, 3.0),
    ]
    lines = sweep_lines(sweeps, rows, {"s_lr1e-3": ["s_lr1e-3_s1", "s_lr1e-3_s2"]})
    summary = [(line["sweep"], line["fixed"], line["runs"]) for line in lines]
    assert summary == [
        ("grid", {"r": 16}, [names[1e-4, 16], names[1e-3, 16]]),
        ("grid", {"r": 64}, [names[1e-4, 64], names[1e-3, 64]]),
        ("how", {}, ["m_full", "m_lora"]),
        ("seeded", {}, ["s_lr1e-4", "s_lr1e-3"]),
    ]
    assert lines[0]["values"] == [1e-4, 1e-3] and lines[0]["delta_spider_ex_points"] == [1.6, 1.6]
    assert not lines[2]["ascending"] and lines[2]["families"] == [LORA, FULL]
    seeded = lines[3]
    assert seeded["delta_mmlu_overall_points"] == [0.0, -3.0] and seeded["delta_spider_ex_points"] == [3.0, 7.0]
    assert seeded["verdicts"] == [NO_FORGETTING, f"mixed ({NO_FORGETTING}, {FORGETTING})"]


def test_a_sweep_naming_a_run_without_results_is_refused(tree: dict, tmp_path: Path) -> None:
    sweeps = {"x": {"keys": ["r"], "runs": ["x_r8"], "values": {"x_r8": {"r": 8}}}}
    with pytest.raises(ValueError, match="sweep 'x' names 'x_r8', which is neither a run nor a replicate group"):
        write_report(tree["inputs"], tmp_path / "out", n_resamples=200, sweeps=sweeps)
    assert not (tmp_path / "out").exists()


def _frontier_figure(summary: dict, out: Path):
    with matplotlib.rc_context(STYLE):
        fig = plot_frontier(summary, out)
    fig.canvas.draw()
    return fig, fig.axes[0]


def test_the_figure_puts_each_marker_at_its_coordinates(tree: dict, tmp_path: Path) -> None:
    summary = tree["summary"]
    fig, ax = _frontier_figure(summary, tmp_path)
    assert (tmp_path / "frontier.png").stat().st_size > 10_000 and (tmp_path / "frontier.svg").exists()
    rows = summary["frontier"]
    families = {c.get_gid(): c for c in ax.collections if isinstance(c, PathCollection) and c.get_gid()}
    assert set(families) == {"baseline", "pareto", f"family:{LORA}", f"family:{QLORA}", f"family:{FULL}"}
    for family in (LORA, QLORA, FULL):
        marks = families[f"family:{family}"]
        expected = [
            (r["delta_mmlu_overall_points"], r["delta_spider_ex_points"]) for r in rows if r["method_family"] == family
        ]
        assert np.allclose(marks.get_offsets(), expected)
        # Drawn where the data transform puts those coordinates: no sideways shift.
        assert np.allclose(
            marks.get_offset_transform().transform(marks.get_offsets()), ax.transData.transform(expected)
        )
    ring = families["pareto"]
    assert sorted(map(tuple, ring.get_offsets())) == sorted(
        (r["delta_mmlu_overall_points"], r["delta_spider_ex_points"]) for r in rows if r["pareto_optimal"]
    )
    assert np.allclose(
        ring.get_offset_transform().transform(ring.get_offsets()), ax.transData.transform(ring.get_offsets())
    )
    # Both whiskers of every run span its 95% intervals.
    segments = [
        tuple(map(tuple, s.round(6))) for c in ax.collections if isinstance(c, LineCollection) for s in c.get_segments()
    ]
    for r in rows:
        x, y = round(r["delta_mmlu_overall_points"], 6), round(r["delta_spider_ex_points"], 6)
        assert ((round(r["mmlu_ci_low_points"], 6), y), (round(r["mmlu_ci_high_points"], 6), y)) in segments, r["run"]
        assert ((x, round(r["spider_ci_low_points"], 6)), (x, round(r["spider_ci_high_points"], 6))) in segments, r[
            "run"
        ]
    # The sweep's line, through the runs in learning-rate order.
    (line,) = [artist for artist in ax.lines if (artist.get_gid() or "").startswith("sweep:")]
    (joined,) = summary["frontier_lines"]
    by_run = {r["run"]: r for r in rows}
    assert list(line.get_xdata()) == [by_run[r]["delta_mmlu_overall_points"] for r in joined["runs"]]
    assert list(line.get_ydata()) == [by_run[r]["delta_spider_ex_points"] for r in joined["runs"]]
    # Reference lines at 0 on both axes; the axis labels say the unit.
    assert [0, 0] in [list(a.get_ydata()) for a in ax.lines] and [0, 0] in [list(a.get_xdata()) for a in ax.lines]
    assert "(percentage points)" in ax.get_xlabel() and "(percentage points)" in ax.get_ylabel()


def test_the_figure_names_every_run_once_without_overlap(tree: dict, tmp_path: Path) -> None:
    summary = tree["summary"]
    fig, ax = _frontier_figure(summary, tmp_path)
    names = {text.get_text(): text for text in ax.texts}
    assert sorted(names) == sorted(RUNS)  # no two runs at one point here: one name each
    for row in summary["frontier"]:
        assert (names[row["run"]].get_fontweight() == "bold") == row["pareto_optimal"], row["run"]
    renderer = fig.canvas.get_renderer()
    boxes = {run: Text.get_window_extent(text, renderer) for run, text in names.items()}  # without leader lines
    runs = list(boxes)
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            assert not boxes[a].overlaps(boxes[b]), (a, b)
    centres = ax.transData.transform(
        [(r["delta_mmlu_overall_points"], r["delta_spider_ex_points"]) for r in summary["frontier"]]
    )
    for run, box in boxes.items():
        assert not any(box.contains(x, y) for x, y in centres), run
        assert ax.get_window_extent(renderer).contains(box.x0, box.y0), run  # inside the axes
    # The legend is under the axes: it covers no point.
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.y1 < ax.get_window_extent(renderer).y0
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert f"{LORA} (3 runs)" in labels and f"{QLORA} (1 run)" in labels and f"{FULL} (1 run)" in labels
    assert "sweep lora: joined by learning_rate, ascending" in labels


def _mdd(points: float | None) -> str:
    return "n/a" if points is None else f"{points:.1f}"


def _ci(row: dict, test: str) -> str:
    return f"[{row[f'{test}_ci_low_points']:+.1f}, {row[f'{test}_ci_high_points']:+.1f}]"


def test_runs_at_one_point_share_one_label_and_keep_their_coordinates(tree: dict, tmp_path: Path) -> None:
    # Nothing learnt (as in a smoke run): every run exactly at the baseline, markers on top of each other.
    summary = copy.deepcopy(tree["summary"])
    for row in summary["frontier"]:
        row.update(dict.fromkeys([k for k in row if k.startswith("delta_")], 0.0), pareto_optimal=True)
        row.update(mmlu_ci_low_points=-1.0, mmlu_ci_high_points=1.0, spider_ci_low_points=-1.0)
        row.update(spider_ci_high_points=1.0)
    for line in summary["frontier_lines"]:
        line.update(delta_mmlu_overall_points=[0.0] * 3, delta_spider_ex_points=[0.0] * 3)
    fig, ax = _frontier_figure(summary, tmp_path)
    (label,) = [text.get_text() for text in ax.texts]
    assert sorted(label.split("\n")) == sorted(RUNS)
    marks = [c for c in ax.collections if isinstance(c, PathCollection) and (c.get_gid() or "").startswith("family:")]
    assert np.array_equal(np.concatenate([c.get_offsets() for c in marks]), np.zeros((len(RUNS), 2)))
    low, high = ax.get_xlim()
    assert low < -1 and high > 1 and high - low >= 4  # the whiskers fit, on a readable scale


def test_whiskers_and_seed_means_are_drawn_where_they_are(tmp_path: Path) -> None:
    # A percentile bootstrap interval need not hold its estimate (b's MMLU interval lies right of it),
    # and a sweep point trained with two seeds is on its line at their mean.
    rows = [
        {**_row("a", -1.0, 2.0), "mmlu_ci_low_points": -3.0, "mmlu_ci_high_points": 1.0},
        {**_row("b_s1", -4.0, 6.0, FORGETTING), "mmlu_ci_low_points": -3.5, "mmlu_ci_high_points": -1.0},
        {**_row("b_s2", -2.0, 8.0), "mmlu_ci_low_points": -5.0, "mmlu_ci_high_points": 0.5},
    ]
    for row in rows:
        ex = row["delta_spider_ex_points"]
        row.update(spider_ci_low_points=ex - 3, spider_ci_high_points=ex + 3, pareto_optimal=row["run"] != "a")
    sweeps = {"lr": {"keys": ["learning_rate"], "runs": ["a", "b"], "values": {"a": {"learning_rate": 1e-4}}}}
    sweeps["lr"]["values"]["b"] = {"learning_rate": 1e-3}
    lines = sweep_lines(sweeps, rows, {"b": ["b_s1", "b_s2"]})
    fig, ax = _frontier_figure({"baseline": "base", "frontier": rows, "frontier_lines": lines}, tmp_path)
    segments = [s.tolist() for c in ax.collections if isinstance(c, LineCollection) for s in c.get_segments()]
    assert [[-3.5, 6.0], [-1.0, 6.0]] in segments  # from bound to bound, though -4 lies outside
    (mean,) = [c for c in ax.collections if c.get_gid() == "replicate-mean"]
    assert mean.get_offsets().tolist() == [[-3.0, 7.0]]
    (line,) = [a for a in ax.lines if (a.get_gid() or "").startswith("sweep:lr:")]
    assert list(line.get_xdata()) == [-1.0, -3.0] and list(line.get_ydata()) == [2.0, 7.0]


def test_summary_md_has_the_frontier_table_and_findings(tree: dict) -> None:
    text = (tree["out"] / "summary.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:3] == ["## Headline", "## Trade-off frontier", "## Spider execution accuracy"]
    assert (
        "| run | method | swept values | Δ EX pts [95% CI] | MDD EX pts | Δ MMLU pts [95% CI] | MDD MMLU pts "
        "| Δ stem pts | Δ humanities pts | Δ social sciences pts | Δ other pts | Pareto-optimal | verdict |"
    ) in text
    rows = {row["run"]: row for row in tree["summary"]["frontier"]}
    for run, row in rows.items():
        items = _from_items(tree["root"], run)
        cells = [
            run,
            row["method_family"],
            f"learning_rate={SWEEPS['lora']['values'][run]['learning_rate']:g}"
            if run in SWEEPS["lora"]["values"]
            else "—",
            f"{items['delta_spider_ex_points']:+.1f} {_ci(row, 'spider')}",
            _mdd(items["spider_mdd_points"]),
            f"{items['delta_mmlu_overall_points']:+.1f} {_ci(row, 'mmlu')}",
            _mdd(items["mmlu_mdd_points"]),
            *(f"{items['categories'][c]:+.1f}" for c in CATEGORIES),
            "yes" if row["pareto_optimal"] else "",
            EXPECTED_VERDICTS[run],
        ]
        assert "| " + " | ".join(cells) + " |" in text, run
    assert (
        "**LoRA** (3 runs). Forgetting begins at `lora_lr1e-3` (Δ MMLU -14.0 pts "
        f"[{rows['lora_lr1e-3']['mmlu_ci_low_points']:+.1f}, {rows['lora_lr1e-3']['mmlu_ci_high_points']:+.1f}], "
        "forgetting detected). No forgetting detected: `lora_lr1e-4`, `lora_lr3e-4`. "
        "MMLU cost per point of EX gained: `lora_lr1e-3` -0.80 MMLU pts per EX pt."
    ) in text
    assert (
        "**QLoRA** (1 run). No forgetting detected in any run. MMLU cost per point of EX gained: none detected."
    ) in text
    assert "**full fine-tuning** (1 run). Forgetting begins at `full_lr1e-5` (Δ MMLU -50.0 pts" in text
    assert (
        "collapse). Every run shows forgetting. Collapse: `full_lr1e-5`. MMLU cost per point of EX gained: none" in text
    )
    assert (
        "Sweep `lora` (learning_rate 0.0001, 0.0003, 0.001): no forgetting detected up to learning_rate=0.0003; "
        "forgetting detected from learning_rate=0.001 (`lora_lr1e-3`)."
    ) in text
    assert "*collapse* when Δ EX and Δ MMLU are both drops larger than their MDD" in text


def test_a_frontier_row_that_disagrees_with_the_item_rows_is_refused(tree: dict, tmp_path: Path) -> None:
    root = tree["root"]
    # regression.csv says lora_lr1e-3 lost 4 points more than its item rows do: the report is not written.
    regression = pd.read_csv(root / "mmlu" / "regression.csv")
    overall = (regression["model"] == "lora_lr1e-3") & (regression["level"] == "overall")
    regression.loc[overall, "delta_points"] -= 4
    regression.to_csv(tmp_path / "regression.csv", index=False)
    paths = standard_paths(root, MODELS, MODELS, RUNS)
    paths["regression"] = tmp_path / "regression.csv"
    with pytest.raises(ValueError, match="frontier lora_lr1e-3 delta_mmlu_overall_points: summary -18.0 vs item rows"):
        write_report(load_inputs(**paths), tmp_path / "out", n_resamples=200, sweeps=SWEEPS)
    assert not (tmp_path / "out").exists()
    # A verdict or Pareto flag that the recomputed changes do not give is found too.
    recomputed = recompute_headlines(root, MODELS, MODELS)
    assert headline_mismatches(tree["summary"], recomputed) == []
    summary = copy.deepcopy(tree["summary"])
    row = next(r for r in summary["frontier"] if r["run"] == "qlora_r16")
    row.update(verdict=FORGETTING, pareto_optimal=True)
    assert headline_mismatches(summary, recomputed) == [
        "frontier qlora_r16 verdict: summary 'forgetting detected' vs item rows 'no forgetting detected'",
        "frontier qlora_r16 pareto_optimal: summary True vs item rows False",
    ]
    row.update(verdict=NO_FORGETTING, pareto_optimal=False, delta_spider_ex_points=5.0)
    problems = headline_mismatches(summary, recomputed)
    assert problems[0].startswith("frontier qlora_r16 delta_spider_ex_points: summary 5.0 vs item rows 2.5")
