"""The report's figures (matplotlib, no pyplot state): each saved as PNG and SVG.

Colours: the Okabe-Ito palette (colour-blind safe), one fixed colour per model across all
figures; the baseline is grey. The frontier figure instead gives each method family its
colour and marker (:data:`FAMILY_STYLES`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Annotation, Text
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox, offset_copy

from lora_tradeoff.report.frontier import FAMILIES, FULL, LORA, QLORA
from lora_tradeoff.report.inputs import BASE_ZERO_SHOT, ReportInputs
from lora_tradeoff.report.summary import mmlu_shots
from lora_tradeoff.spider.scoring import HARDNESS_LEVELS
from lora_tradeoff.stats import OVERALL, wilson_interval

# The figures plot_all() writes, each in every format (rules/report.smk lists the same names).
FIGURES = ("frontier", "mmlu_accuracy", "tradeoff", "tradeoff_curve", "spider_hardness", "train_loss")
FIGURE_FORMATS = ("png", "svg")

GREY = "#999999"
SKY_BLUE = "#56B4E9"
# Okabe & Ito (2008), "Color Universal Design": fine-tuned runs take these in order.
RUN_COLOURS = ("#E69F00", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442", "#000000")
RUN_MARKERS = ("o", "s", "D", "^", "v", "P", "X")
# Height of one line of an 8-point note (the text is about 10 points high with its descent).
NOTE_LINE_PT = 12
BAR_NOTE = "whiskers: 95% Wilson score interval of each accuracy; number at a bar's foot: its accuracy (%)"
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "lora-tradeoff",  # stable SVG ids: a rerun writes the same file
    "svg.fonttype": "path",
}


def model_colours(models: Sequence[str], baseline: str) -> dict[str, str]:
    colours, runs = {}, 0
    for model in models:
        if model == baseline:
            colours[model] = GREY
        elif model == BASE_ZERO_SHOT:
            colours[model] = SKY_BLUE
        else:
            colours[model] = RUN_COLOURS[runs % len(RUN_COLOURS)]
            runs += 1
    return colours


def _save(fig: Figure, out_dir: Path, name: str) -> None:
    for fmt in FIGURE_FORMATS:
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(out_dir / f"{name}.{fmt}", dpi=150, bbox_inches="tight", metadata=metadata)


def _legend_below(ax: Any, handles: Sequence[Any], labels: Sequence[str], title: str | None = None) -> None:
    """The legend under the axes, in up to three columns: the plot keeps the figure's width."""
    ax.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=min(3, len(labels)),
        frameon=False,
        fontsize=8,
        title=title,
    )


def _same_point_groups(points: Mapping[str, tuple[float, float]], tolerance: float) -> dict[str, list[str]]:
    """Each point's group: the names of the points within ``tolerance`` of the group's first point on
    both axes (drawn on top of each other), in insertion order; a point alone is a group of one."""
    groups: list[list[str]] = []
    for name, (x, y) in points.items():
        for group in groups:
            gx, gy = points[group[0]]
            if abs(x - gx) <= tolerance and abs(y - gy) <= tolerance:
                group.append(name)
                break
        else:
            groups.append([name])
    return {name: group for group in groups for name in group}


def _label_bars(ax: Any, xs: Sequence[float], values: Sequence[float]) -> None:
    """The value of each bar, written at its foot (a 0% bar has no top to write on)."""
    for x, value in zip(xs, values, strict=True):
        if not np.isnan(value):
            ax.annotate(
                f"{value:.0f}",
                (x, 0),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=6.5,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85},
            )


def _grouped_bars(
    ax: Any,
    groups: Sequence[str],
    series: Mapping[str, Sequence[tuple[float, float, float]]],
    colours: Mapping[str, str],
) -> None:
    """Bars per group and series; each value (value, low, high) in percent, whiskers low..high."""
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        value, low, high = (np.array(column, dtype=float) for column in zip(*values, strict=True))
        positions = x - 0.4 + width * (i + 0.5)
        ax.bar(positions, value, width, color=colours[name], label=name, edgecolor="white", linewidth=0.5)
        # A 0 % bar has no height: a stub of the model's colour on the axis shows whose bar it is.
        zero = value == 0
        ax.hlines(
            np.zeros(zero.sum()),
            positions[zero] - width * 0.45,
            positions[zero] + width * 0.45,
            colors=colours[name],
            linewidth=5,
            zorder=3,
        )
        # Clipped at 0: at 0 % or 100 % the Wilson bound equals the value up to float rounding.
        whiskers = np.clip([value - low, high - value], 0, None)
        ax.errorbar(positions, value, yerr=whiskers, fmt="none", ecolor="#333333", elinewidth=0.9, capsize=2)
        _label_bars(ax, positions, value)
    ax.set_xticks(x, groups)
    every_value = [value for values in series.values() for value, _, _ in values]
    if every_value and all(value == 0 for value in every_value):
        ax.text(
            0.5,
            0.9,
            f"all 0 %: no model ({', '.join(series)}) answered any question correctly\n"
            "(bars are flat coloured stubs; whiskers reach the 95% upper bound)",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=8.5,
            bbox={"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": "#bbbbbb"},
        )
    ax.axvline(len(groups) - 1.5, color="#bbbbbb", linewidth=0.8)  # the last group is the total
    ax.set_ylim(0, 109)
    ax.set_yticks(range(0, 101, 20))
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


def plot_mmlu_accuracy(summary: Mapping[str, Any], out_dir: Path) -> None:
    """Grouped bars: MMLU accuracy per category (and overall) per measured model, Wilson 95% whiskers."""
    models = [m for m in summary["models"] if summary["mmlu"][m]["measured"]]
    categories = summary["mmlu_categories"]
    colours = model_colours(summary["models"], summary["baseline"])
    series = {
        m: [
            tuple(summary["mmlu"][m]["categories"][c][k] for k in ("accuracy_pct", "wilson_low_pct", "wilson_high_pct"))
            for c in categories
        ]
        for m in models
    }
    n = summary["mmlu_n_per_category"]
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    _grouped_bars(ax, [f"{c.replace('_', ' ')}\n(n={n[c]})" for c in categories], series, colours)
    chance = ax.axhline(25, color="black", linestyle=":", linewidth=1)
    ax.set_ylabel("accuracy (% of questions correct)")
    ax.set_xlabel("MMLU category (n = questions per model)")
    ax.set_title(f"MMLU {mmlu_shots(summary)} accuracy per category\n{BAR_NOTE}")
    handles, labels = ax.get_legend_handles_labels()
    _legend_below(ax, [*handles, chance], [*labels, "chance (25%)"], title="model")
    _save(fig, out_dir, "mmlu_accuracy")


def _replicate_mean(ax: Any, name: str, entry: Mapping[str, Any], named: bool = True) -> Any:
    """A run's seed replicates: the mean of their changes (open diamond) with the 95% interval across seeds
    (dotted whiskers, none for one seed); the replicates themselves are drawn as runs. ``named``: write
    the name beside the diamond (the legend names it in any case)."""
    mmlu, ex = entry["delta_mmlu_overall_points"], entry["delta_spider_ex_points"]
    x, y = mmlu["mean"], ex["mean"]
    if mmlu["ci_low"] is not None:
        bars = ax.errorbar(
            [x],
            [y],
            xerr=[[x - mmlu["ci_low"]], [mmlu["ci_high"] - x]],
            yerr=[[y - ex["ci_low"]], [ex["ci_high"] - y]],
            fmt="none",
            ecolor="black",
            elinewidth=1,
            capsize=4,
        )
        for line in bars[2]:
            line.set_linestyle(":")
    if named:
        ax.annotate(f"{name} (mean)", (x, y), xytext=(7, -13), textcoords="offset points", fontsize=8)
    return ax.scatter(
        [x],
        [y],
        marker="D",
        s=70,
        facecolors="none",
        edgecolors="black",
        linewidths=1.4,
        zorder=5,
        label=f"{name}: mean of {mmlu['n_seeds']} seeds (dotted: 95% CI across seeds)",
    )


def plot_tradeoff(summary: Mapping[str, Any], out_dir: Path) -> None:
    """Scatter: Δ Spider EX (y) against Δ MMLU overall (x) per run, paired-bootstrap 95% whiskers; for a run
    trained with several seeds also the replicates' mean with its 95% interval across seeds."""
    colours = model_colours(summary["models"], summary["baseline"])
    fig = Figure(figsize=(6.8, 5.2))
    ax = fig.subplots()
    ax.axhline(0, color="#777777", linewidth=0.8, linestyle="--", zorder=0)
    ax.axvline(0, color="#777777", linewidth=0.8, linestyle="--", zorder=0)
    handles = [
        ax.scatter(
            [0],
            [0],
            marker="+",
            s=160,
            color="black",
            linewidths=1.8,
            zorder=3,
            label=f"{summary['baseline']} (origin: no change)",
        )
    ]
    runs = summary["tradeoff"]
    zero_shot = summary["spider"].get(BASE_ZERO_SHOT)
    extent = [1.0]
    for point in runs.values():
        extent += [abs(value) for value in point.values() if value is not None]
    if zero_shot is not None:
        extent += [abs(zero_shot["delta_ci_low_points"]), abs(zero_shot["delta_ci_high_points"])]
    for entry in (summary.get("replicates") or {}).values():
        for change in (entry["delta_mmlu_overall_points"], entry["delta_spider_ex_points"]):
            extent += [abs(v) for v in (change["ci_low"], change["ci_high"]) if v is not None]
    limit = 1.15 * max(v for v in extent if np.isfinite(v))
    # Runs (and base_zero_shot) with the same changes would hide each other, and the baseline's
    # cross at the origin: such markers are drawn side by side, 10 points apart. Each such group gets
    # one line of note; the notes stack above the plot (none hides a point or another note).
    points = {summary["baseline"]: (0.0, 0.0)}
    points.update({run: (p["delta_mmlu_overall_points"], p["delta_spider_ex_points"]) for run, p in runs.items()})
    if zero_shot is not None:
        points[BASE_ZERO_SHOT] = (0.0, zero_shot["delta_ex_points"])
    groups = _same_point_groups(points, tolerance=0.01 * limit)
    replicate_means = {
        name: (entry["delta_mmlu_overall_points"]["mean"], entry["delta_spider_ex_points"]["mean"])
        for name, entry in (summary.get("replicates") or {}).items()
    }
    marks = [*points.values(), *replicate_means.values()]

    def crowded(x: float, y: float) -> bool:
        """Another marker within 8% of the axis range: names written beside such markers run into each
        other (three seeds within half a point), so only the legend names them."""
        near = [math.hypot(x - mx, y - my) < 0.08 * limit for mx, my in marks]
        return sum(near) > 1

    def slot(name: str) -> int:
        return groups[name].index(name)

    def shifted(name: str) -> Any:
        return offset_copy(ax.transData, fig=fig, x=10 * slot(name), units="points")

    notes: list[str] = []

    def label_shared_point(name: str, x: float, y: float) -> None:
        """One note for a group of markers drawn side by side, added by its last member."""
        group = groups[name]
        if len(group) < 2 or name != group[-1]:
            return
        named = [member for member in group if member != summary["baseline"]]
        if summary["baseline"] in group:
            where = f"the same point as {summary['baseline']}"
        else:
            where = f"the same point (Δ MMLU {x:+.1f}, Δ EX {y:+.1f})"
        notes.append(f"{', '.join(named)}: {where}, markers side by side")

    for i, (run, point) in enumerate(runs.items()):
        x, y = points[run]
        xerr = [[x - point["mmlu_ci_low_points"]], [point["mmlu_ci_high_points"] - x]]
        yerr = [[y - point["spider_ci_low_points"]], [point["spider_ci_high_points"] - y]]
        ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="none", ecolor=colours[run], elinewidth=1, capsize=3, alpha=0.8)
        handles.append(
            ax.scatter(
                [x],
                [y],
                marker=RUN_MARKERS[i % len(RUN_MARKERS)],
                s=60,
                color=colours[run],
                edgecolors="black",
                linewidths=0.5,
                zorder=4,
                label=run,
                transform=shifted(run),
            )
        )
        if len(groups[run]) > 1:
            label_shared_point(run, x, y)
        elif not crowded(x, y):  # alternate above and below, so runs with similar results do not write over each other
            ax.annotate(run, (x, y), xytext=(7, 7 if i % 2 == 0 else -13), textcoords="offset points", fontsize=8)
    for name, entry in (summary.get("replicates") or {}).items():
        handles.append(_replicate_mean(ax, name, entry, named=not crowded(*replicate_means[name])))
    if zero_shot is not None:
        entry = zero_shot
        y = entry["delta_ex_points"]
        ax.errorbar(
            [0],
            [y],
            yerr=[[y - entry["delta_ci_low_points"]], [entry["delta_ci_high_points"] - y]],
            fmt="none",
            ecolor=colours[BASE_ZERO_SHOT],
            elinewidth=1,
            capsize=3,
        )
        handles.append(
            ax.scatter(
                [0],
                [y],
                marker="o",
                s=60,
                facecolors="white",
                edgecolors=colours[BASE_ZERO_SHOT],
                linewidths=1.5,
                zorder=4,
                label=f"{BASE_ZERO_SHOT} (prompt change only; Δ MMLU = 0)",
                transform=shifted(BASE_ZERO_SHOT),
            )
        )
        label_shared_point(BASE_ZERO_SHOT, 0.0, y)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    for (hx, hy), text in {
        ((-1, 1)): "Spider better, MMLU worse\n(the expected trade-off)",
        ((1, 1)): "better on both",
        ((-1, -1)): "worse on both",
        ((1, -1)): "Spider worse, MMLU better",
    }.items():
        ax.text(
            hx * 0.97 * limit,
            hy * 0.97 * limit,
            text,
            ha="left" if hx < 0 else "right",
            va="top" if hy > 0 else "bottom",
            fontsize=7.5,
            color="#666666",
        )
    ax.set_xlabel(f"Δ MMLU overall accuracy vs {summary['baseline']} (percentage points)")
    ax.set_ylabel(f"Δ Spider execution accuracy vs {summary['baseline']} (percentage points)")
    for row, note in enumerate(notes):  # one line each, the first on top, just above the axes
        ax.annotate(
            note,
            (0, 1),
            xycoords="axes fraction",
            xytext=(0, 4 + NOTE_LINE_PT * (len(notes) - 1 - row)),
            textcoords="offset points",
            fontsize=8,
            va="bottom",
        )
    ax.set_title(
        "What each run buys (Spider) and costs (MMLU)\nwhiskers: 95% paired bootstrap interval of each change",
        pad=6 + NOTE_LINE_PT * len(notes),
    )
    whisker = Line2D([], [], color=WHISKER_COLOUR, marker="|", markersize=8, linewidth=1, label="95% CI of the change")
    handles.append(whisker)
    _legend_below(ax, handles, [handle.get_label() for handle in handles])
    _save(fig, out_dir, "tradeoff")


def plot_tradeoff_curve(summary: Mapping[str, Any], out_dir: Path) -> None:
    """Δ Spider EX (y) against Δ MMLU overall (x) through each run's checkpoints (small markers labelled
    with the step), joined in step order and ending at the final weights (large marker)."""
    colours = model_colours(summary["models"], summary["baseline"])
    fig = Figure(figsize=(6.8, 5.2))
    ax = fig.subplots()
    ax.axhline(0, color="#777777", linewidth=0.8, linestyle="--", zorder=0)
    ax.axvline(0, color="#777777", linewidth=0.8, linestyle="--", zorder=0)
    handles = [ax.scatter([0], [0], marker="+", s=160, color="black", linewidths=1.8, zorder=3)]
    labels = [f"{summary['baseline']} (origin: no change)"]
    for i, (run, rows) in enumerate(summary["curve"].items()):
        xs = [row["delta_mmlu_overall_points"] for row in rows]
        ys = [np.nan if row["delta_spider_ex_points"] is None else row["delta_spider_ex_points"] for row in rows]
        marker = RUN_MARKERS[i % len(RUN_MARKERS)]
        (line,) = ax.plot(xs, ys, color=colours[run], marker=marker, markersize=5, linewidth=1.4, zorder=2)
        ax.scatter(xs[-1:], ys[-1:], color=colours[run], marker=marker, s=90, edgecolors="black", zorder=3)
        for row, x, y in zip(rows, xs, ys, strict=True):
            ax.annotate(
                f"{row['step']}", (x, y), xytext=(5, 4), textcoords="offset points", fontsize=7, color="#333333"
            )
        handles.append(line)
        steps = ", ".join(str(row["step"]) for row in rows)
        labels.append(f"{run} (steps {steps})")
    ax.set_xlabel(f"Δ MMLU overall accuracy (points vs {summary['baseline']})")
    ax.set_ylabel(f"Δ Spider execution accuracy (points vs {summary['baseline']})")
    ax.set_title("Trade-off along training: each run through its checkpoints to its final weights")
    if not summary.get("checkpoints"):
        ax.text(
            0.5, 1.0, "no run lists eval_steps: final weights only", transform=ax.transAxes,
            ha="center", va="bottom", fontsize=8, color="#555555",
        )  # fmt: skip
    _legend_below(ax, handles, labels, title="run (number at a point: optimizer step; large marker: final)")
    _save(fig, out_dir, "tradeoff_curve")


def plot_spider_hardness(summary: Mapping[str, Any], inputs: ReportInputs, out_dir: Path) -> None:
    """Grouped bars: Spider EX per hardness level (and all) per evaluated model, Wilson 95% whiskers."""
    models = summary["models"]
    spider = summary["spider"]
    levels = [
        lvl for lvl in HARDNESS_LEVELS if any(spider[m]["by_hardness"].get(lvl, {}).get("n_scored") for m in models)
    ]
    groups, series = [], {m: [] for m in models}
    for level in [*levels, OVERALL]:
        n_scored = (
            spider[summary["baseline"]]["n_scored"]
            if level == OVERALL
            else spider[summary["baseline"]]["by_hardness"][level]["n_scored"]
        )
        groups.append(f"{'all' if level == OVERALL else level}\n(n={n_scored})")
        for m in models:
            group = spider[m] if level == OVERALL else spider[m]["by_hardness"][level]
            low, high = wilson_interval(group["success"], group["n_scored"])
            series[m].append((group["ex_pct"], 100 * low, 100 * high))
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    _grouped_bars(ax, groups, series, model_colours(models, summary["baseline"]))
    ax.set_ylabel("execution accuracy (% of scored questions)")
    ax.set_xlabel("Spider hardness level (n = scored dev questions per model)")
    ax.set_title(f"Spider execution accuracy by SQL hardness\n{BAR_NOTE}")
    labels = {
        m: f"{m} ({summary['prompt_styles'][m].replace('_', '-')})" if summary["prompt_styles"].get(m) else m
        for m in models
    }
    handles, names = ax.get_legend_handles_labels()
    _legend_below(ax, handles, [labels[n] for n in names], title="model (Spider prompt)")
    _save(fig, out_dir, "spider_hardness")


def plot_train_loss(summary: Mapping[str, Any], inputs: ReportInputs, out_dir: Path) -> None:
    """Lines: training loss against optimizer step, one line per run."""
    colours = model_colours(summary["models"], summary["baseline"])
    fig = Figure(figsize=(7.0, 4.2))
    ax = fig.subplots()
    for i, run in enumerate(summary["runs"]):
        log = inputs.train_logs[run].dropna(subset=["step", "loss"]).sort_values("step")
        hyper = summary["hyperparameters"][run]
        adapter = "full" if hyper["method_family"] == FULL else f"r={hyper['r']}, α={hyper['alpha']:g}"
        label = f"{run} ({adapter}, lr={hyper['learning_rate']:g})"
        ax.plot(
            log["step"],
            log["loss"],
            color=colours[run],
            linewidth=1.4,
            label=label,
            marker=RUN_MARKERS[i % len(RUN_MARKERS)],
            markersize=3 if len(log) <= 60 else 0,
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (cross-entropy, nats per answer token)")
    ax.set_title("Training loss of every run")
    ax.grid(color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.legend(loc="upper right", frameon=False, title="run")
    _save(fig, out_dir, "train_loss")


def plot_all(summary: Mapping[str, Any], inputs: ReportInputs, out_dir: Path) -> None:
    with matplotlib.rc_context(STYLE):
        plot_frontier(summary, out_dir)
        plot_mmlu_accuracy(summary, out_dir)
        plot_tradeoff(summary, out_dir)
        plot_tradeoff_curve(summary, out_dir)
        plot_spider_hardness(summary, inputs, out_dir)
        plot_train_loss(summary, inputs, out_dir)


# The frontier figure: one colour and marker per method family (Okabe-Ito blue, bluish green, vermillion).
FAMILY_STYLES = {LORA: ("#0072B2", "o"), QLORA: ("#009E73", "s"), FULL: ("#D55E00", "^")}
SWEEP_LINESTYLES = ("-", "--", ":", "-.")
MIXED_FAMILY_LINE = "#444444"  # a sweep over the method itself joins points of several families
# Where a run's name may go, in points from its marker: each distance in each direction, nearest
# first; the first place that covers no marker and no other name wins.
LABEL_DISTANCES_PT = (9, 18, 28, 40, 54, 70)
LABEL_DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
MARKER_CLEARANCE_PT = 8  # a name keeps this far from any marker's centre
MIN_FRONTIER_SPAN_PT = 4.0  # the narrowest axis range: runs all at the origin still get a readable scale


def _overlap(a: Bbox, b: Bbox) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(0.0, width) * max(0.0, height)


def _place_labels(ax: Any, labels: Sequence[tuple[str, float, float, bool]]) -> list[Annotation]:
    """Name each marker without covering a marker or another name: for each label ``(text, x, y, bold)``
    in order, the first free place of :data:`LABEL_DISTANCES_PT` x :data:`LABEL_DIRECTIONS` (else the
    least covered one; leaving the axes counts as covering), joined to its marker by a thin leader line
    beyond the nearest distance. The markers stay at their coordinates; only the names move."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    clearance = MARKER_CLEARANCE_PT * ax.figure.dpi / 72
    taken = []  # display boxes no name may cover: every marker, then every name written
    for _, x, y, _ in labels:
        px, py = ax.transData.transform((x, y))
        taken.append(Bbox.from_extents(px - clearance, py - clearance, px + clearance, py + clearance))
    places = [(distance, dx, dy) for distance in LABEL_DISTANCES_PT for dx, dy in LABEL_DIRECTIONS]
    names = []
    for text, x, y, bold in labels:
        best: tuple[float, Annotation, Bbox] | None = None
        for distance, dx, dy in places:
            scale = distance * (0.75 if dx and dy else 1.0)
            annotation = ax.annotate(
                text,
                (x, y),
                xytext=(dx * scale, dy * scale),
                textcoords="offset points",
                ha={1: "left", -1: "right", 0: "center"}[dx],
                va={1: "bottom", -1: "top", 0: "center"}[dy],
                fontsize=7.5,
                fontweight="bold" if bold else "normal",
                bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.75},
                arrowprops=None
                if distance == LABEL_DISTANCES_PT[0]
                else {"arrowstyle": "-", "color": "#888888", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 4},
                zorder=6,
            )
            box = _text_box(annotation, renderer)
            cost = sum(_overlap(box, other) for other in taken) + box.width * box.height - _overlap(box, frame)
            if best is not None and cost >= best[0]:
                annotation.remove()
                continue
            if best is not None:
                best[1].remove()
            best = (cost, annotation, box)
            if cost == 0:
                break
        if best is not None:
            taken.append(best[2])
            names.append(best[1])
    return names


def _text_box(annotation: Annotation, renderer: Any) -> Bbox:
    """Where an annotation's text is drawn, in display units: the text only, not its leader line."""
    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> Any:
    return np.array([row[key] for row in rows], dtype=float)


def _frontier_limits(rows: Sequence[Mapping[str, Any]], low: str, high: str) -> tuple[float, float]:
    """Axis limits holding 0 and every whisker, at least :data:`MIN_FRONTIER_SPAN_PT` wide, with 8 % of
    the span to spare on each side."""
    values = [0.0, *(row[key] for row in rows for key in (low, high) if row[key] is not None)]
    values = [v for v in values if np.isfinite(v)]
    lowest, highest = min(values), max(values)
    if highest - lowest < MIN_FRONTIER_SPAN_PT:
        centre = (lowest + highest) / 2
        lowest, highest = centre - MIN_FRONTIER_SPAN_PT / 2, centre + MIN_FRONTIER_SPAN_PT / 2
    spare = 0.08 * (highest - lowest)
    return lowest - spare, highest + spare


def _frontier_names(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, float, float, bool]]:
    """One name per point ``(text, x, y, bold)``: runs at exactly the same point share one label, a
    name per line (their markers coincide; a run at the same point is equally Pareto-optimal).
    Pareto-optimal points first: they get the best places."""
    points: dict[tuple[float, float], list[Mapping[str, Any]]] = {}
    for row in rows:
        if row["delta_spider_ex_points"] is not None:
            points.setdefault((row["delta_mmlu_overall_points"], row["delta_spider_ex_points"]), []).append(row)
    names = [
        ("\n".join(row["run"] for row in group), x, y, group[0]["pareto_optimal"]) for (x, y), group in points.items()
    ]
    return sorted(names, key=lambda name: not name[3])


WHISKER_COLOUR = "#8a8a8a"


def plot_frontier(summary: Mapping[str, Any], out_dir: Path) -> Figure:
    """The trade-off frontier: Δ Spider EX (y) against Δ MMLU overall (x) for every run, at their true
    coordinates, with both 95% paired bootstrap whiskers; marker and colour by method family; each
    sweep's points joined in swept-value order; Pareto-optimal runs ringed and named in bold.
    Saves ``frontier.png``/``.svg`` and returns the Figure (its axes are ``fig.axes[0]``)."""
    rows = summary.get("frontier") or []
    baseline = summary["baseline"]
    fig = Figure(figsize=(7.6, 6.4))
    FigureCanvasAgg(fig)  # a renderer to measure the names while placing them
    ax = fig.subplots()
    ax.axhline(0, color="#777777", linewidth=0.8, linestyle="--", zorder=0)
    ax.axvline(0, color="#777777", linewidth=0.8, linestyle="--", zorder=0)
    handles = [
        ax.scatter(
            [0], [0], marker="+", s=140, color="black", linewidths=1.6, zorder=6, gid="baseline",
            label=f"{baseline} (origin: no change)",
        )
    ]  # fmt: skip
    ax.set_xlim(*_frontier_limits(rows, "mmlu_ci_low_points", "mmlu_ci_high_points"))
    ax.set_ylim(*_frontier_limits(rows, "spider_ci_low_points", "spider_ci_high_points"))
    for family in FAMILIES:
        members = [row for row in rows if row["method_family"] == family and row["delta_spider_ex_points"] is not None]
        if not members:
            continue
        colour, marker = FAMILY_STYLES[family]
        xs, ys = _column(members, "delta_mmlu_overall_points"), _column(members, "delta_spider_ex_points")
        # Whiskers from bound to bound (errorbar() would need the point inside its interval, which a
        # percentile bootstrap does not promise). Grey, as in the legend, so that a sweep's line (in the
        # family's colour) is not mistaken for a whisker.
        whiskers = {"colors": WHISKER_COLOUR, "linewidth": 0.9, "alpha": 0.7, "zorder": 1}
        ax.hlines(ys, _column(members, "mmlu_ci_low_points"), _column(members, "mmlu_ci_high_points"), **whiskers)
        ax.vlines(xs, _column(members, "spider_ci_low_points"), _column(members, "spider_ci_high_points"), **whiskers)
        handles.append(
            ax.scatter(
                xs, ys, marker=marker, s=55, color=colour, edgecolors="black", linewidths=0.5, alpha=0.8,
                zorder=4, gid=f"family:{family}",
                label=f"{family} ({len(members)} run{'s' if len(members) != 1 else ''})",
            )
        )  # fmt: skip
    optimal = [row for row in rows if row["pareto_optimal"]]
    if optimal:
        handles.append(
            ax.scatter(
                [row["delta_mmlu_overall_points"] for row in optimal],
                [row["delta_spider_ex_points"] for row in optimal],
                marker="o", s=160, facecolors="none", edgecolors="black", linewidths=1.0, zorder=5,
                gid="pareto", label="Pareto-optimal (ringed, name in bold)",
            )
        )  # fmt: skip
    styles: dict[str, str] = {}  # sweep -> its line style
    drawn_lines: dict[str, int] = {}  # sweep -> lines drawn so far
    for line in summary.get("frontier_lines") or []:
        sweep = line["sweep"]
        style = styles.setdefault(sweep, SWEEP_LINESTYLES[len(styles) % len(SWEEP_LINESTYLES)])
        colour = FAMILY_STYLES[line["families"][0]][0] if len(line["families"]) == 1 else MIXED_FAMILY_LINE
        order = "ascending" if line["ascending"] else "as configured"
        first = drawn_lines.get(sweep, 0)
        drawn_lines[sweep] = first + 1
        (drawn,) = ax.plot(
            line["delta_mmlu_overall_points"],
            line["delta_spider_ex_points"],
            color=colour,
            linestyle=style,
            linewidth=2.0,
            alpha=0.9,
            zorder=2,
            gid=f"sweep:{line['sweep']}:{first}",
            label=f"sweep {line['sweep']}: joined by {line['key']}, {order}",
        )
        if first == 0:
            handles.append(drawn)
        groups = [i for i, run in enumerate(line["runs"]) if run not in {row["run"] for row in rows}]
        if groups:  # a point trained with several seeds: the line passes through their mean
            mean = ax.scatter(
                [line["delta_mmlu_overall_points"][i] for i in groups],
                [line["delta_spider_ex_points"][i] for i in groups],
                marker="D", s=30, facecolors="white", edgecolors=colour, linewidths=1, zorder=3, gid="replicate-mean",
                label="mean of a sweep point's seeds",
            )  # fmt: skip
            if not any(handle.get_gid() == "replicate-mean" for handle in handles):
                handles.append(mean)
    _place_labels(ax, _frontier_names(rows))
    if not rows:
        ax.text(0.5, 0.9, "no fine-tuned run", transform=ax.transAxes, ha="center", fontsize=9, color="#555555")
    ax.set_xlabel(f"Δ MMLU overall accuracy vs {baseline} (percentage points)")
    ax.set_ylabel(f"Δ Spider execution accuracy vs {baseline} (percentage points)")
    ax.set_title(
        "Trade-off frontier: what each run buys (Spider) and costs (MMLU)\n"
        "whiskers: 95% paired bootstrap interval of each change; up and right is better"
    )
    ax.grid(color="#eeeeee", linewidth=0.6)
    ax.set_axisbelow(True)
    whisker = Line2D([], [], color=WHISKER_COLOUR, marker="|", markersize=8, linewidth=1, label="95% CI of the change")
    handles.append(whisker)
    _legend_below(ax, handles, [handle.get_label() for handle in handles])
    _save(fig, out_dir, "frontier")
    return fig
