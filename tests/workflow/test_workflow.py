"""Real Snakemake on the real default model and bundled data: DAG, reruns, targets."""

from __future__ import annotations

import base64
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.html_tables import html_tables
from tests.workflow.smk import ENV, new_workdir, planned_jobs, snakemake, snakemake_command, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, base_model_dir) -> Path:
    """The whole DAG run once for real on the smoke config."""
    workdir = new_workdir(tmp_path_factory, "run", base_model_dir)
    snakemake(workdir)
    return workdir


def test_dry_run_lists_the_whole_dag(tmp_path_factory, base_model_dir):
    workdir = new_workdir(tmp_path_factory, "dry", base_model_dir)
    jobs = planned_jobs(workdir)
    # models: base, base_zero_shot, the two LoRA runs and the two points of the full fine-tuning sweep
    assert jobs == collections.Counter(
        get_base_model=1,
        get_spider=1,
        get_mmlu=1,
        select_fewshot_examples=1,
        format_spider_prompts=2,
        format_spider_train=1,
        fine_tune=4,
        generate_sql=6,
        score_spider=6,
        build_mmlu_suite=1,
        score_mmlu=5,
        mmlu_regression=1,
        report=1,
        all=1,
    )


def test_a_run_with_two_seeds_is_two_runs_in_the_dag(tmp_path_factory, base_model_dir):
    workdir = new_workdir(tmp_path_factory, "seeds", base_model_dir)
    write_config(workdir, base_model_dir, **{"training.runs.0.seeds": [1, 2]})
    dry = snakemake(workdir, "-n")
    jobs = planned_jobs(workdir)
    # tiny_qv becomes tiny_qv_s1 and tiny_qv_s2: one more run to train, generate, score on Spider and MMLU
    assert (jobs["fine_tune"], jobs["generate_sql"], jobs["score_spider"], jobs["score_mmlu"]) == (5, 7, 7, 6)
    for run in ("tiny_qv_s1", "tiny_qv_s2"):
        assert f"results/runs/{run}/hyperparams.json" in dry.stdout
    assert "results/runs/tiny_qv/" not in dry.stdout


def test_eval_steps_add_exactly_each_checkpoints_jobs(tmp_path_factory, base_model_dir):
    workdir = new_workdir(tmp_path_factory, "curve", base_model_dir)
    plain = planned_jobs(workdir)
    for steps in ([1], [1, 2]):
        write_config(workdir, base_model_dir, **{"training.runs.0.eval_steps": steps})
        jobs = planned_jobs(workdir)
        # one more evaluated model per step: its adapter copied, its SQL generated and scored, its MMLU scored
        added = collections.Counter(
            export_checkpoint=len(steps), generate_sql=len(steps), score_spider=len(steps), score_mmlu=len(steps)
        )
        assert jobs == plain + added, steps
    dry = snakemake(workdir, "-n")
    for step in (1, 2):
        assert f"results/runs/tiny_qv/weights-step{step}" in dry.stdout
        assert f"results/tiny_qv_step{step}/mmlu_scored.csv" in dry.stdout
    assert "tiny_last_step" not in dry.stdout


def test_full_run_writes_every_table(finished_run):
    results = finished_run / "results"
    full = ("tiny_full_lr1e-4", "tiny_full_lr1e-3")
    for model in ("base", "base_zero_shot", "tiny_qv", "tiny_last", *full):
        assert len(pd.read_csv(results / model / "spider_scored.csv")) == 4
    for model in ("base", "tiny_qv", "tiny_last", *full):
        assert len(pd.read_csv(results / model / "mmlu_scored.csv")) == 3
    # Full fine-tuning: a whole model folder, evaluated in place of the base model.
    for run in full:
        assert (results / "runs" / run / "weights" / "config.json").is_file()
        record = json.loads((results / "runs" / run / "hyperparams.json").read_text())
        assert record["method"] == "full" and record["trainable_share"] == 1.0
    assert (results / "tiny_full_lr1e-3/spider_predictions.jsonl").read_text() != (
        results / "base_zero_shot/spider_predictions.jsonl"
    ).read_text()
    hyperparams = json.loads((results / "runs/tiny_last/hyperparams.json").read_text())
    assert hyperparams["spec"]["layers_to_transform"] == [29] and hyperparams["global_steps"] == 2
    assert "## Hyper-parameters" in (results / "report/summary.md").read_text()


def test_second_run_has_nothing_to_do(finished_run):
    assert planned_jobs(finished_run) == collections.Counter()


def changed_plan(workdir: Path, model_dir: Path, **changes) -> collections.Counter:
    """The dry-run plan after a config change; the smoke config is restored afterwards."""
    write_config(workdir, model_dir, **changes)
    try:
        return planned_jobs(workdir)
    finally:
        write_config(workdir, model_dir)


def test_fewshot_seed_reruns_only_its_downstream(finished_run, base_model_dir):
    jobs = changed_plan(finished_run, base_model_dir, **{"prompt.fewshot_seed": 7})
    assert jobs == collections.Counter(
        select_fewshot_examples=1, format_spider_prompts=1, generate_sql=1, score_spider=1, report=1, all=1
    )


def test_one_runs_learning_rate_reruns_only_that_run(finished_run, base_model_dir):
    jobs = changed_plan(finished_run, base_model_dir, **{"training.runs.1.learning_rate": 5e-4})
    assert jobs == collections.Counter(
        fine_tune=1, generate_sql=1, score_spider=1, score_mmlu=1, mmlu_regression=1, report=1, all=1
    )
    # The dry run's reason names the key that changed, not the whole run config twice.
    write_config(finished_run, base_model_dir, **{"training.runs.1.learning_rate": 5e-4})
    try:
        dry = snakemake(finished_run, "-n", "results/runs/tiny_last/hyperparams.json")
    finally:
        write_config(finished_run, base_model_dir)
    reasons = re.findall(r"Params have changed since last execution: (.*)", dry.stdout + dry.stderr)
    assert len(reasons) == 1, dry.stdout[-3000:]
    assert reasons[0].strip().endswith("before: {'learning_rate': 0.001} now: {'learning_rate': 0.0005}")


def test_changing_one_swept_value_reruns_that_point_only(finished_run, base_model_dir):
    # 1e-3 -> 3e-3: the point tiny_full_lr3e-3 is new (trained and evaluated), tiny_full_lr1e-3 leaves
    # the study, tiny_full_lr1e-4 and every other model rerun nothing.
    jobs = changed_plan(finished_run, base_model_dir, **{"training.runs.2.sweep": {"learning_rate": [1e-4, 3e-3]}})
    assert jobs == collections.Counter(
        fine_tune=1, generate_sql=1, score_spider=1, score_mmlu=1, mmlu_regression=1, report=1, all=1
    )
    write_config(finished_run, base_model_dir, **{"training.runs.2.sweep": {"learning_rate": [1e-4, 3e-3]}})
    try:
        dry = snakemake(finished_run, "-n")
    finally:
        write_config(finished_run, base_model_dir)
    assert "results/runs/tiny_full_lr3e-3/weights" in dry.stdout
    assert "results/runs/tiny_full_lr1e-4/weights" not in dry.stdout


def test_lora_keys_of_a_full_run_rerun_nothing(finished_run, base_model_dir):
    assert changed_plan(finished_run, base_model_dir, **{"training.runs.2.r": 64, "training.runs.2.dropout": 0.1}) == (
        collections.Counter()
    )


def test_adding_eval_steps_retrains_that_run_and_adds_its_checkpoints_jobs(finished_run, base_model_dir):
    # The kept adapters come from training: fine_tune reruns (its eval_steps changed), and with it the
    # run's own evaluation; the other run and the base model rerun nothing.
    jobs = changed_plan(finished_run, base_model_dir, **{"training.runs.0.eval_steps": [1]})
    assert jobs == collections.Counter(
        fine_tune=1,
        export_checkpoint=1,
        generate_sql=2,
        score_spider=2,
        score_mmlu=2,
        mmlu_regression=1,
        report=1,
        all=1,
    )
    write_config(finished_run, base_model_dir, **{"training.runs.0.eval_steps": [1]})
    try:
        dry = snakemake(finished_run, "-n", "results/runs/tiny_qv/hyperparams.json")
    finally:
        write_config(finished_run, base_model_dir)
    reasons = re.findall(r"Params have changed since last execution: (.*)", dry.stdout + dry.stderr)
    assert len(reasons) == 1 and reasons[0].strip().endswith("now: {'save_steps': 1, 'eval_steps': [1]}"), reasons


def test_mmlu_seed_reruns_the_suite_and_its_downstream_only(finished_run, base_model_dir):
    jobs = changed_plan(finished_run, base_model_dir, **{"mmlu.seed": 99})
    assert jobs == collections.Counter(build_mmlu_suite=1, score_mmlu=5, mmlu_regression=1, report=1, all=1)


def test_full_mmlu_suite_reruns_the_suite_and_its_downstream_only(finished_run, base_model_dir):
    jobs = changed_plan(finished_run, base_model_dir, **{"mmlu.suite": "full"})
    assert jobs == collections.Counter(build_mmlu_suite=1, score_mmlu=5, mmlu_regression=1, report=1, all=1)


def test_target_runs_only_its_ancestors(tmp_path_factory, base_model_dir):
    workdir = new_workdir(tmp_path_factory, "target", base_model_dir)
    jobs = planned_jobs(workdir, "results/base/spider_scored.csv")
    assert jobs == collections.Counter(
        get_base_model=1,
        get_spider=1,
        select_fewshot_examples=1,
        format_spider_prompts=1,
        generate_sql=1,
        score_spider=1,
    )


def embedded_page(report_html: str, name: str) -> str:
    """An HTML result of the report, decoded from the data: URL the report embeds it as."""
    (encoded,) = re.findall(
        rf"data:text/html;charset=utf8;filename={re.escape(name)};base64,([A-Za-z0-9+/=]+)", report_html
    )
    return base64.b64decode(encoded).decode()


def test_html_report_is_self_contained_and_shows_the_tables(finished_run):
    snakemake(finished_run, "--report", "results/report.html")
    html = (finished_run / "results/report.html").read_text()
    for figure in ("frontier", "tradeoff", "mmlu_accuracy", "spider_hardness", "train_loss"):
        assert f"{figure}.png;base64,iVBORw0KGgo" in html  # the PNG itself, embedded (its magic bytes)
    # The tables as HTML pages (shown inside the report); Markdown and JSON are not offered as dead links.
    summary = json.loads((finished_run / "results/report/summary.json").read_text())
    (headline,) = html_tables(embedded_page(html, "headline.html"))
    assert [row[0].split(" (")[0] for row in headline[1:]] == summary["models"]
    assert [row[1] for row in headline[1:]] == [f"{summary['spider'][m]['ex_pct']:.1f}" for m in summary["models"]]
    assert html_tables(embedded_page(html, "summary.html"))[0] == headline
    assert "Selection rule." in embedded_page(html, "failure_examples.html")
    assert "filename=summary.md" not in html and "filename=summary.json" not in html


def test_html_report_in_a_browser(finished_run, tmp_path):
    """Chromium opens the report: each landing-page link shows its result inside the report, the Trade-off
    category lists the per-run figure first; screenshots of each view (bench/report_screenshots.py)."""
    from bench.report_screenshots import VIEWS, find_browser, screenshots, view_dom

    browser = find_browser()
    if browser is None:
        pytest.skip("no Chromium (apt-get install chromium)")
    report = finished_run / "results/report.html"
    if not report.exists():
        snakemake(finished_run, "--report", "results/report.html")
    for view, page in (
        ("headline", "headline.html"),
        ("summary", "summary.html"),
        ("failure_examples", "failure_examples.html"),
    ):
        frame = re.search(r'<iframe src="([^"]+)"', view_dom(browser, report, view))
        assert frame and f"filename={page};" in frame.group(1), view
    entries = view_dom(browser, report, "tradeoff_category")
    assert 0 < entries.index("1. per run: Δ Spider EX vs Δ MMLU") < entries.index("2. along training")
    shots = screenshots(report, tmp_path, browser)
    assert set(shots) == set(VIEWS) and all(png.stat().st_size > 20_000 for png in shots.values())


def test_bad_config_fails_before_any_job(tmp_path_factory, base_model_dir):
    workdir = new_workdir(tmp_path_factory, "bad", base_model_dir)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["training"]["runs"][0]["lerning_rate"] = 1e-4
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(workdir, "-n", check=False)
    assert proc.returncode != 0
    name = config["training"]["runs"][0]["name"]
    expected = f"config.training.runs[0] ({name}: config.yaml): unknown key(s) lerning_rate; allowed keys: alpha,"
    assert expected in proc.stderr + proc.stdout
    assert not (workdir / "results").exists()


def test_killed_training_is_rerun_and_resumes(finished_run, base_model_dir, tmp_path):
    """SIGKILL of the whole Snakemake process mid-training: nothing is taken as complete, the next
    call reruns the job and training continues from its last checkpoint instead of step 0."""
    workdir = tmp_path / "killed"
    shutil.copytree(finished_run, workdir, symlinks=True)
    write_config(workdir, base_model_dir, **{"training.runs.0.max_steps": 8, "training.runs.0.save_steps": 2})
    target = "results/runs/tiny_qv/hyperparams.json"
    checkpoints = workdir / "results/runs/tiny_qv/checkpoints"
    assert not checkpoints.exists()  # the finished run kept none; wait for this run's first one
    proc = subprocess.Popen(
        snakemake_command(workdir, target),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    deadline = time.time() + 240
    while not list(checkpoints.glob("checkpoint-*/trainer_state.json")) and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(checkpoints.glob("checkpoint-*")), "no checkpoint was written before the deadline"
    assert not (workdir / target).exists()  # Snakemake removed the old output before the job started
    # Only mtime: the job must rerun because its output is missing/incomplete, not because of params.
    assert planned_jobs(workdir, target, "--rerun-triggers", "mtime")["fine_tune"] == 1
    snakemake(workdir, "--unlock")  # a killed Snakemake leaves its lock, as after a power loss
    snakemake(workdir, target)
    hyperparams = json.loads((workdir / target).read_text())
    assert hyperparams["resumed"] and hyperparams["resumed_from_step"] >= 2
    assert hyperparams["global_steps"] == 8
