"""bench/run_all.py's table on the figures an H200 run wrote (SmolLM2-135M).

The figures: docs/results/smollm2-135m-h200/benchmarks.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench.bench_training import CONFIGS, config_method
from bench.run_all import (
    CPU_FULL_TRAINING_CONFIGS,
    PROFILES,
    SCORING_SECONDS,
    ModelProfile,
    bench_arguments,
    check_arguments,
    main,
    markdown_table,
    model_profile,
    parse_model,
    render,
    rows_for_full_training,
    rows_for_generation,
    rows_for_mmlu,
    rows_for_scoring,
    rows_for_training,
    table_rows,
    visible_gpus,
)

RAW = json.loads((Path(__file__).resolve().parents[2] / "docs/results/smollm2-135m-h200/benchmarks.json").read_text())
SMOLLM2 = PROFILES[("llama", 576, 30)]
QWEN = PROFILES[("qwen2", 1536, 28)]


def all_rows(raw: dict, profile: ModelProfile) -> list[dict]:
    return [
        {"benchmark": "b", **row}
        for row in rows_for_generation(raw["generation"], profile)
        + rows_for_training(raw["training"], profile)
        + rows_for_mmlu(raw["mmlu"], profile)
        + rows_for_scoring(raw["scoring"])
    ]


def test_each_target_is_judged_on_the_measured_figure():
    table = markdown_table(all_rows(RAW, SMOLLM2), on_gpu=True).splitlines()
    generation = next(line for line in table if "| generate_sql q/s, batch 512 |" in line)
    assert f"| {RAW['generation']['ours']['q_per_s']:,} | >= 300 | NO |" in generation  # 186.69 q/s
    best_training = max(row["tokens_per_s"] for row in RAW["training"])
    training = [line for line in table if "| >= 100000 |" in line]
    assert len(training) == 1 and f"| {best_training:,} |" in training[0]  # only the best config is judged
    assert "| <= 5 | yes |" in next(line for line in table if "MMLU 150" in line)
    unknown = ModelProfile("llama, 2 layers x 64")  # no targets: nothing judged
    assert "| yes |" not in markdown_table(rows_for_generation(RAW["generation"], unknown), on_gpu=True)


def test_gpu_targets_read_not_applicable_on_a_cpu_and_failures_show_no_figure():
    assert QWEN.generation_qps.met(400.0, on_gpu=False) == "n/a (CPU)"
    assert SCORING_SECONDS.met(0.5, on_gpu=False) == "yes"  # a CPU target
    assert QWEN.generation_qps.met(249.9, on_gpu=True) == "NO"
    failed = [{"benchmark": "b", **row} for row in rows_for_generation(None, QWEN) + rows_for_mmlu(None, QWEN)]
    assert markdown_table(failed, on_gpu=True).count("| no figure |") == 2


def test_stock_anchors_print_our_ratio_to_them_at_our_batch_and_at_theirs():
    raw = json.loads(json.dumps(RAW["generation"]))
    ours = raw["ours"]["q_per_s"]
    raw["ours_at_anchor_batch"] = {"batch_size": 256, "q_per_s": 100.0, "seconds": 10.3, "peak_memory": "5 GiB"}
    raw["hf_dynamic"] = {"prompts": 1034, "batch_size": 256, "cache": "dynamic", "q_per_s": 13.0, "seconds": 79.5}
    raw["hf_dynamic"] |= {"peak_memory": "9 GiB", "ours_ratio": round(ours / 13.0, 2), "same_batch_ratio": 7.69}
    rows = [{"benchmark": "generation", **row} for row in rows_for_generation(raw, SMOLLM2)]
    table = markdown_table(rows, on_gpu=True)
    line = next(line for line in table.splitlines() if "dynamic cache" in line)
    assert "| 13.0 |" in line and f"**{round(ours / 13.0, 2)}x** (at the same batch 7.69x)" in line
    assert "batch 256 (the anchors' batch) | 100.0 |" in table
    assert "static cache" not in table  # an anchor that did not run has no row
    raw["hf_static"] = raw["hf_dynamic"] | {"cache": "static", "compile_seconds": 200.0, "padded_to_tokens": 1900}
    raw["hf_static"]["q_per_s_with_compile"] = 3.7
    line = next(
        line for line in markdown_table(rows_for_generation(raw, SMOLLM2), True).splitlines() if "static" in line
    )
    assert "padded to 1900 tokens" in line and "200.0 s with the compile, not counted (3.7 q/s counting it)" in line


def test_training_is_judged_within_the_memory_cap_and_divided_by_the_plain_trl_anchor():
    def config(name: str, tokens_per_s: float, peak: float) -> dict:
        return {"config": name, "batch": 16, "tokens_per_s": tokens_per_s, "peak_mem_gb": peak}

    table = [
        config("padded-16", 10_000.0, 70.0),
        config("grouped-32-gc", 25_000.0, 16.0),
        config("packed-flex-128-gc", 37_500.0, 13.8),
        config("grouped-16", 45_000.0, 74.0),  # faster, but over Qwen's 24 GB
        {"config": "packed-flex", "error": "CUDA out of memory"},
    ]
    for row in table[:4]:
        row |= {"peak_mem_kind": "cuda allocated", "step_ms": 100.0}
    lines = markdown_table([{"benchmark": "training", **row} for row in rows_for_training(table, QWEN)], True)
    judged = [line for line in lines.splitlines() if "| >= 40000 |" in line]
    assert len(judged) == 1 and "packed-flex-128-gc | 37,500.0 | >= 40000 | NO |" in judged[0]
    assert "the fastest within 24 GB" in judged[0] and "**3.75x** the anchor (padded-16)" in judged[0]
    assert "**4.50x** the anchor" in lines and "failed: CUDA out of memory" in lines
    over = [row | {"peak_mem_gb": 30.0} for row in table[:4]]
    lines = markdown_table([{"benchmark": "training", **row} for row in rows_for_training(over, QWEN)], True)
    assert "real tokens/s within 24 GB | — | >= 40000 | no figure |" in lines


def _full(name: str, tokens_per_s: float, peak: float, optim: str = "adamw_torch_fused") -> dict:
    """A full fine-tuning row as bench_training.py writes it on a GPU."""
    return {
        "config": name,
        "method": "full",
        "optim": optim,
        "batch": CONFIGS[name]["per_device_batch_size"],
        "tokens_per_s": tokens_per_s,
        "peak_mem_gb": peak,
        "peak_mem_kind": "cuda allocated",
        "peak_reserved_gb": peak + 1.5,
        "step_ms": 900.0,
    }


FULL_TABLE = [
    _full("full-padded-32-gc", 17_100.0, 42.1),
    _full("full-grouped-16-gc", 25_650.0, 30.0),
    _full("full-grouped-16-gc-8bit", 24_000.0, 22.5, "adamw_8bit"),
    _full("full-grouped-8-gc-8bit", 20_000.0, 18.0, "adamw_8bit"),
]


def _line(table: str, config: str) -> str:
    return next(line for line in table.splitlines() if f"| real tokens/s, {config} |" in line)


def test_full_fine_tuning_is_divided_by_the_full_anchor_and_says_whether_it_fits_24_gb():
    rows = rows_for_full_training([*FULL_TABLE, {"config": "full-padded-32", "error": "CUDA out of memory"}], QWEN)
    table = markdown_table([{"benchmark": "full_training", **row} for row in rows], on_gpu=True)
    anchor = _line(table, "full-padded-32-gc")
    assert "| 17,100.0 |  |  |" in anchor  # no target: nothing judged
    assert "(the full anchor)" in anchor and "peak 42.1 GB (cuda allocated, 43.6 GB reserved)" in anchor
    assert anchor.endswith("; over 24 GB |")
    grouped = _line(table, "full-grouped-16-gc")
    assert "**1.50x** the full anchor's tokens/s (full-padded-32-gc) at 0.71x its peak memory; over 24 GB" in grouped
    lean = _line(table, "full-grouped-16-gc-8bit")
    assert "optim adamw_8bit" in lean and "**1.40x** the full anchor's tokens/s" in lean
    assert lean.endswith("; fits 24 GB, the fastest within 24 GB |")
    assert _line(table, "full-grouped-8-gc-8bit").endswith("; fits 24 GB |")  # fits, but slower
    assert "| real tokens/s, full-padded-32 | — |  |  | failed: CUDA out of memory |" in table
    assert ">= 40000" not in table  # LoRA's target is not full fine-tuning's
    # Without the full anchor measured, no ratio is printed (never one to the LoRA anchor).
    lora_anchor = {**_full("full-padded-32-gc", 10_000.0, 70.0), "config": "padded-16", "method": "lora"}
    table = markdown_table(rows_for_full_training([lora_anchor, *FULL_TABLE[1:]], QWEN), on_gpu=True)
    assert "anchor" not in table and "padded-16" not in table
    # SmolLM2 has no memory cap: no fit is claimed; a CPU's process RSS is never judged against one.
    table = markdown_table(rows_for_full_training(FULL_TABLE, SMOLLM2), on_gpu=True)
    assert "24 GB" not in table and "fits" not in table
    cpu = [row | {"peak_mem_kind": "process RSS", "peak_reserved_gb": None} for row in FULL_TABLE]
    table = markdown_table(rows_for_full_training(cpu, QWEN), on_gpu=False)
    assert "fits" not in table and "over 24 GB" not in table and "reserved" not in table
    assert "**1.50x** the full anchor's tokens/s" in table
    only_failed = [{"config": "full-grouped-16-gc-8bit", "error": "CUDA only"}]
    failed = markdown_table(rows_for_full_training(only_failed, QWEN), on_gpu=True)
    assert "| real tokens/s, full fine-tuning | — |  |  | full-grouped-16-gc-8bit: CUDA only |" in failed


def test_full_rows_named_in_training_configs_keep_their_own_anchor_and_out_of_the_lora_target():
    lora = [
        {"config": "padded-16", "batch": 16, "tokens_per_s": 10_000.0, "peak_mem_gb": 70.0},
        {"config": "packed-flex-128-gc", "batch": 128, "tokens_per_s": 37_500.0, "peak_mem_gb": 13.8},
    ]
    for row in lora:
        row |= {"peak_mem_kind": "cuda allocated", "step_ms": 100.0}  # no "method": rows before it was recorded
    # A full row faster than every LoRA one and within 24 GB; its "method" key dropped too: known by its config.
    fast_full = {
        key: value for key, value in _full("full-grouped-8-gc-8bit", 90_000.0, 20.0).items() if key != "method"
    }
    table = markdown_table(rows_for_training([*lora, FULL_TABLE[0], fast_full], QWEN), on_gpu=True)
    judged = [line for line in table.splitlines() if "| >= 40000 |" in line]
    assert len(judged) == 1 and "| real tokens/s, packed-flex-128-gc | 37,500.0 | >= 40000 | NO |" in judged[0]
    assert "**3.75x** the anchor (padded-16)" in judged[0]
    assert "**5.26x** the full anchor's tokens/s (full-padded-32-gc)" in _line(table, "full-grouped-8-gc-8bit")
    assert "(padded-16)" not in _line(table, "full-grouped-8-gc-8bit")
    # Only full rows: no LoRA row without a figure.
    assert "| >= 40000 |" not in markdown_table(rows_for_training(FULL_TABLE, QWEN), on_gpu=True)


def test_full_training_renders_as_its_own_benchmark_from_the_saved_figures():
    raw = {"device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0", "quick": False, "side_by_side_gpus": 1}
    raw["models"] = {"qwen": {"training": None, "full_training": FULL_TABLE}}
    raw["failures"] = {"qwen/training": "exit 1, see training.log"}
    lines = render(json.loads(json.dumps(raw)), {"qwen": QWEN}, on_gpu=True).splitlines()
    full = [line for line in lines if line.startswith("| qwen (Qwen2.5(-Coder)-1.5B) | full_training |")]
    assert [line.split(" | ")[2] for line in full] == [f"real tokens/s, {row['config']}" for row in FULL_TABLE]
    assert "| training | real tokens/s | — | >= 40000 | no figure | failed: exit 1, see training.log |" in "\n".join(
        lines
    )


def test_each_profile_names_full_configs_of_its_own_anchor_and_the_cpu_gets_ones_that_train_there(tmp_path):
    for profile in [*PROFILES.values(), ModelProfile("unknown")]:
        full = profile.full_training_configs.split(",")
        assert profile.full_training_anchor in full
        assert all(config_method(name) == "full" for name in full)
        assert all(config_method(name) == "lora" for name in profile.training_configs.split(","))
    for name in CPU_FULL_TRAINING_CONFIGS.split(","):  # no 8-bit optimizer (bitsandbytes is CUDA only)
        assert config_method(name) == "full" and "optim" not in CONFIGS[name]
    assert SMOLLM2.full_training_anchor in CPU_FULL_TRAINING_CONFIGS.split(",")

    args = argparse.Namespace(quick=False, spider_dir=tmp_path, training_configs=None, full_training_configs=None)

    def configs(profile: ModelProfile, on_gpu: bool) -> str:
        arguments = bench_arguments("full_training", args, tmp_path, profile, on_gpu)
        return arguments[arguments.index("--configs") + 1]

    assert configs(QWEN, on_gpu=True) == QWEN.full_training_configs
    assert "full-grouped-16-gc-8bit" in configs(QWEN, on_gpu=True)
    assert configs(QWEN, on_gpu=False) == CPU_FULL_TRAINING_CONFIGS
    args.full_training_configs = "full-grouped-8-gc-8bit"
    assert configs(QWEN, on_gpu=True) == "full-grouped-8-gc-8bit"
    assert bench_arguments("training", args, tmp_path, QWEN, True)[5] == QWEN.training_configs  # LoRA's untouched


def test_training_configs_accept_full_ones_and_full_training_configs_only_full_ones(tmp_path):
    def check(**options: str | None) -> set[str]:
        args = argparse.Namespace(
            models=[("x", tmp_path)],
            only="training,full_training",
            anchors=None,
            out=None,
            spider_dir=tmp_path,
            mmlu_dir=tmp_path,
            training_configs=None,
            full_training_configs=None,
        )
        for key, value in options.items():
            setattr(args, key, value)
        return check_arguments(argparse.ArgumentParser(), args)

    assert check(training_configs="padded-16,full-padded-32-gc") == {"training", "full_training"}
    full = ",".join(name for name in CONFIGS if name.startswith("full-"))
    assert check(full_training_configs=full) == {"training", "full_training"}
    with pytest.raises(SystemExit):
        check(full_training_configs="full-padded-32-gc,grouped-64")  # a LoRA config
    with pytest.raises(SystemExit):
        check(spider_dir=tmp_path / "none", only="full_training")  # full_training reads Spider too


def test_a_model_is_recognised_by_its_architecture(base_model_dir, tmp_path):
    assert model_profile(base_model_dir) is SMOLLM2  # the default model's converted checkpoint
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24})
    )
    assert model_profile(tmp_path) == ModelProfile("qwen2, 24 layers x 896")  # no targets
    with pytest.raises(ValueError, match="no config.json"):
        model_profile(tmp_path / "absent")
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ValueError, match="config.json is not JSON"):
        model_profile(tmp_path)
    (tmp_path / "config.json").write_text("[1]")
    with pytest.raises(ValueError, match="not a JSON object"):
        model_profile(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert model_profile(tmp_path).label.startswith("architecture not recognised")
    assert parse_model("qwen=results/model/base") == ("qwen", Path("results/model/base"))
    assert parse_model("results/model/base") == ("base", Path("results/model/base"))
    assert parse_model("m=/data/ck=pt") == ("m", Path("/data/ck=pt"))  # '=' inside a folder's name
    assert parse_model("data/v=2/base") == ("base", Path("data/v=2/base"))  # 'data/v' is no name: all DIR
    for text, message in [("x=", "names no folder"), ("/data/ck=pt", "give NAME=DIR"), ("a b=dir", "cannot name")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse_model(text)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "a=x", "--model", "a=y"], "two models named alike"),
        (["--model", "x", "--only", "generation,speed"], "unknown benchmark 'speed'"),
        (["--model", "x", "--only", "generation,"], "unknown benchmark ''"),
        (["--model", "no/such/folder"], "no/such/folder holds no config.json"),
        (["--model", "x", "--anchors", "bogus"], "--anchors: unknown cache 'bogus'"),
        (["--model", "x", "--training-configs", "padded,bogus"], "unknown config 'bogus'"),
        (["--model", "x", "--training-configs", ""], "unknown config ''"),
        (["--model", "x", "--full-training-configs", "full-padded-32-gc,bogus"], "unknown config 'bogus'"),
        (["--model", "x", "--full-training-configs", ""], "--full-training-configs: unknown config ''"),
        (["--model", "x", "--full-training-configs", "padded-16"], "a LoRA config (name it in --training-configs)"),
        (["--model", "x", "--out", "OUT"], "is a folder; name the table's file in it"),
        (["--model", "x", "--out", "OUT/figures.json"], "the figures go to a .json beside the table"),
        (["--model", "x", "--spider-dir", "OUT/none"], "--spider-dir OUT/none is not a folder"),
        (["--model", "x", "--only", "mmlu", "--mmlu-dir", "OUT/none"], "--mmlu-dir OUT/none is not a folder"),
    ],
)
def test_bad_arguments_stop_before_any_benchmark(argv, message, capsys, tmp_path):
    argv = [str(tmp_path) if arg == "OUT" else arg.replace("OUT", str(tmp_path)) for arg in argv]
    argv = ["--spider-dir", str(tmp_path), "--mmlu-dir", str(tmp_path), *argv]  # data folders: a case's own win
    with pytest.raises(SystemExit):
        main(argv)
    assert message.replace("OUT", str(tmp_path)) in capsys.readouterr().err
    assert not (tmp_path / "bench-logs").exists() or "--out" not in argv  # nothing ran


@pytest.mark.slow
def test_a_failing_benchmark_is_named_in_its_row_and_in_the_exit_status(base_model_dir, tmp_path):
    """A checkpoint folder without weights: its benchmark fails, the table still gets written, the
    row says where the log is, and run_all exits non-zero naming it."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((base_model_dir / "config.json").read_text())
    out = tmp_path / "table.md"
    with pytest.raises(SystemExit) as stop:
        main(
            ["--model", f"broken={broken}", "--only", "mmlu", "--quick", "--mmlu-dir", str(tmp_path), "--out", str(out)]
        )
    assert str(stop.value).startswith("1 benchmark(s) failed: broken/mmlu (exit 1, see ")
    row = next(line for line in out.read_text().splitlines() if line.startswith("| broken"))
    assert "| — | <= 5 | no figure | failed: exit 1, see " in row and "broken-mmlu.log" in row
    assert json.loads(out.with_suffix(".json").read_text())["models"]["broken"]["mmlu"] is None


def test_the_table_is_rendered_from_the_saved_figures_model_by_model():
    raw = {
        "device": "NVIDIA H200",
        "torch": "2.11.0",
        "quick": False,
        "side_by_side_gpus": 2,
        "scoring": RAW["scoring"],
    }
    raw["models"] = {"qwen": {"mmlu": RAW["mmlu"]}, "smol": {"generation": RAW["generation"], "mmlu": None}}
    profiles = {"qwen": QWEN, "smol": SMOLLM2}
    text = render(raw, profiles, on_gpu=True)
    title, _, *lines = text.splitlines()
    assert title.endswith("models side by side, each on a GPU of its own (2 GPUs)")
    models = [line.split(" | ")[0].lstrip("| ") for line in lines[2:]]
    assert models[0] == "qwen (Qwen2.5(-Coder)-1.5B)" and models[-1] == "(no model)"
    assert "| qwen (Qwen2.5(-Coder)-1.5B) | mmlu | MMLU 150 x 4-shot, seconds | 2.6 | <= 3 | yes |" in text
    assert "| smol (SmolLM2-135M) | mmlu | MMLU suite x 4-shot, seconds | — | <= 5 | no figure |" in text  # it failed
    assert len(table_rows(raw, profiles)) == len(lines) - 2


def test_each_model_gets_a_gpu_named_as_its_child_process_sees_it(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus(2) == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 5,6")
    assert visible_gpus(2) == ["3", "5"]  # a child's CUDA_VISIBLE_DEVICES names the parent's own ids


def test_the_committed_two_model_table_is_what_its_figures_render():
    """docs/...-mmlu-full/bench/benchmarks.md was written by run_all from benchmarks.json beside it."""
    folder = Path(__file__).resolve().parents[2] / "docs/results/qwen2.5-coder-1.5b-2xh200-mmlu-full/bench"
    raw = json.loads((folder / "benchmarks.json").read_text())
    by_label = {profile.label: profile for profile in PROFILES.values()}
    profiles = {name: by_label[figures["label"]] for name, figures in raw["models"].items()}
    assert render(raw, profiles, on_gpu=True) + "\n" == (folder / "benchmarks.md").read_text()
    assert list(profiles.values()) == [QWEN, SMOLLM2]
