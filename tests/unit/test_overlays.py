"""Config overlays merge training.runs by run name: change one run, add one, drop one, or replace them all."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from lora_tradeoff.config_check import config_problems, load_schema
from lora_tradeoff.overlays import (
    Layer,
    apply_run_merge,
    layer_paths,
    locate_run_problems,
    merge_runs,
    run_origins,
    source_name,
)

REPO = Path(__file__).resolve().parents[2]
SCHEMA = load_schema(REPO / "schemas" / "config.schema.yaml")


@pytest.fixture()
def base() -> Layer:
    return Layer("config.yaml", yaml.safe_load((REPO / "config.yaml").read_text()))


def overlay(*runs: dict, source: str = "my.yaml", **training) -> Layer:
    return Layer(source, {"training": {"runs": list(runs), **training}})


def by_name(runs: list[dict]) -> dict[str, dict]:
    return {run["name"]: run for run in runs}


def test_changing_one_run_keeps_its_other_keys_and_the_other_runs(base):
    runs, changes = merge_runs([base, overlay({"name": "r16_qv", "learning_rate": 1.0e-3})], SCHEMA)
    original = by_name(base.config["training"]["runs"])
    assert [run["name"] for run in runs] == ["r16_qv", "r64_all"]
    assert by_name(runs)["r16_qv"] == {**original["r16_qv"], "learning_rate": 1.0e-3}
    assert by_name(runs)["r16_qv"]["max_steps"] == 12 and by_name(runs)["r16_qv"]["max_seq_len"] == 384
    assert by_name(runs)["r64_all"] == original["r64_all"]
    assert changes[1].changed == {"r16_qv": ["learning_rate 0.0005 -> 0.001"]}
    assert changes[1].describe() == (
        "my.yaml: training.runs: changed r16_qv (learning_rate 0.0005 -> 0.001); now r16_qv, r64_all"
    )


def test_a_new_name_adds_a_run_with_only_its_own_keys(base):
    runs, changes = merge_runs([base, overlay({"name": "r8_qv", "r": 8, "alpha": 16})], SCHEMA)
    assert [run["name"] for run in runs] == ["r16_qv", "r64_all", "r8_qv"]
    assert runs[-1] == {"name": "r8_qv", "r": 8, "alpha": 16}
    assert changes[1].added == ["r8_qv"] and "added r8_qv; now r16_qv, r64_all, r8_qv" in changes[1].describe()


def test_a_new_name_close_to_an_earlier_one_is_flagged_as_a_possible_typo(base):
    """Misspelling the run to change adds a run trained from the defaults; the log line says so."""
    _, changes = merge_runs([base, overlay({"name": "r16_qvv", "learning_rate": 1.0e-3})], SCHEMA)
    assert changes[1].describe() == (
        "my.yaml: training.runs: added r16_qvv (a new run; did you mean r16_qv?); now r16_qv, r64_all, r16_qvv"
    )
    _, changes = merge_runs([base, overlay({"name": "full", "method": "full"})], SCHEMA)
    assert "added full; now" in changes[1].describe()  # no earlier name near it


def test_drop_removes_one_run(base):
    runs, changes = merge_runs([base, overlay({"name": "r64_all", "drop": True})], SCHEMA)
    assert [run["name"] for run in runs] == ["r16_qv"]
    assert changes[1].describe() == "my.yaml: training.runs: dropped r64_all; now r16_qv"


def test_seeds_on_one_run_keep_its_settings(base):
    """The configuration reference's seeds example: one key added to r16_qv, the study otherwise unchanged."""
    runs, _ = merge_runs([base, overlay({"name": "r16_qv", "seeds": [42, 43, 44]})], SCHEMA)
    assert by_name(runs)["r16_qv"]["seeds"] == [42, 43, 44] and by_name(runs)["r16_qv"]["max_steps"] == 12
    assert "r64_all" in by_name(runs)


def test_a_second_overlay_merges_over_the_first(base):
    first = overlay({"name": "r8_qv", "r": 8}, source="a.yaml")
    second = overlay({"name": "r8_qv", "r": 4}, {"name": "r16_qv", "drop": True}, source="b.yaml")
    runs, changes = merge_runs([base, first, second], SCHEMA)
    assert [(run["name"], run.get("r")) for run in runs] == [("r64_all", 64), ("r8_qv", 4)]
    described = "b.yaml: training.runs: changed r8_qv (r 8 -> 4); dropped r16_qv; now r64_all, r8_qv"
    assert changes[2].describe() == described


def test_replace_runs_replaces_the_runs_before_it(base):
    runs, changes = merge_runs([base, overlay({"name": "lora", "r": 8}, replace_runs=True)], SCHEMA)
    assert runs == [{"name": "lora", "r": 8}]
    assert changes[1].describe() == "my.yaml: training.runs: replaced the runs before it (r16_qv, r64_all); now lora"


@pytest.mark.parametrize(
    ("entries", "training", "message"),
    [
        (
            [{"name": "r64_al", "drop": True}],
            {},
            "my.yaml: training.runs[0]: drop: true names r64_al, which no earlier config file defines; "
            "runs defined: r16_qv, r64_all",
        ),
        (
            [{"name": "r64_all", "drop": True, "r": 8}],
            {},
            "my.yaml: training.runs[0]: drop: true with other keys (r); either drop r64_all (name and drop: true "
            "only) or change it (no drop)",
        ),
        (
            [{"name": "r16_qv", "r": 8}, {"name": "r16_qv", "drop": True}],
            {},
            "my.yaml: training.runs[1]: r16_qv is listed twice in this file; list each run once",
        ),
        (
            [{"name": "r16_qv", "drop": True}],
            {"replace_runs": True},
            "my.yaml: training.runs[0]: drop: true in a file with training.replace_runs: true",
        ),
        (
            [{"name": "r16_qv", "drop": "yes"}],
            {},
            "my.yaml: training.runs[0].drop: 'yes' has the wrong type; expected boolean",
        ),
        ([{"r": 8}], {}, "my.yaml: training.runs[0]: {'r': 8} has no name"),
        ([{"name": 16, "r": 8}], {}, 'my.yaml: training.runs[0]: name 16 is not text; write it in quotes (name: "16")'),
        ([], {"replace_runs": 1}, "my.yaml: training.replace_runs: 1 has the wrong type; expected boolean"),
    ],
)
def test_a_bad_overlay_is_refused_naming_the_file_entry_and_fix(base, entries, training, message):
    with pytest.raises(ValueError) as raised:
        merge_runs([base, overlay(*entries, **training)], SCHEMA)
    assert str(raised.value).startswith(message)


def test_a_run_list_that_is_not_a_list_names_the_file(base):
    with pytest.raises(ValueError, match=r"^my.yaml: training.runs: 5 is not a list of runs"):
        merge_runs([base, Layer("my.yaml", {"training": {"runs": 5}})], SCHEMA)


def test_layers_without_runs_change_nothing(base):
    assert merge_runs([Layer("a.yaml", {"scoring": {"timeout_s": 5}}), Layer("--config", {})], SCHEMA) == (None, [])
    runs, changes = merge_runs([base, Layer("b.yaml", {"training": {}}), Layer("--config", {})], SCHEMA)
    assert runs == base.config["training"]["runs"] and len(changes) == 1


def test_layer_paths_follow_snakemakes_order_each_file_once(tmp_path):
    base, first, second = tmp_path / "config.yaml", tmp_path / "a.yaml", tmp_path / "b.yaml"
    # workflow.configfiles: the --configfile files, then the Snakefile's configfile (relative to the working folder)
    assert layer_paths([first, second, base], [first, second]) == [base, first, second]
    # the working folder's config.yaml given with --configfile too (the workflow tests): read once, first
    assert layer_paths([base, first, base], [base, first]) == [base, first]
    assert layer_paths([first, base], [first], replace_workflow_config=True) == [first]


def test_source_name_is_relative_to_the_working_folder(tmp_path):
    assert source_name(tmp_path / "sub" / "my.yaml", tmp_path) == "sub/my.yaml"
    assert source_name("/elsewhere/my.yaml", tmp_path) == "/elsewhere/my.yaml"


@pytest.mark.parametrize(
    ("overlays", "runs"),
    [
        (["qwen2.5-coder-1.5b.yaml"], ["r16_qv", "r64_all", "r16_qv_nf4"]),
        (["qwen2.5-coder-1.5b.yaml", "mmlu-full.yaml", "frontier.yaml"], ["r16_qv", "r64_all", "r16_qv_nf4", "full"]),
        (["full.yaml"], ["r16_qv", "r64_all", "r16_qv_nf4"]),
        (["rehearsal/llama-3-8b.yaml"], ["lora", "qlora"]),
    ],
)
def test_shipped_study_configs_replace_the_demo_runs(base, overlays, runs):
    """Each model config is a whole study: none of its runs inherits a demo key such as max_steps: 12."""
    from snakemake.utils import update_config

    config = copy.deepcopy(base.config)
    layers = [base] + [Layer(name, yaml.safe_load((REPO / "config" / name).read_text())) for name in overlays]
    for layer in layers[1:]:
        update_config(config, layer.config)
    apply_run_merge(config, layers, SCHEMA)
    assert [run["name"] for run in config["training"]["runs"]] == runs
    assert "replace_runs" not in config["training"]
    assert all("max_steps" not in run for run in config["training"]["runs"] if "num_epochs" in run)
    assert config_problems(config, REPO / "schemas" / "config.schema.yaml", base_dir=REPO) == []


def readme_overlays(path: Path) -> list[dict]:
    """The YAML blocks of ``path`` that stack runs on config.yaml (they start with a `# my.yaml` comment)."""
    blocks = re.findall(r"```yaml\n(# my\.yaml.*?)```", path.read_text(), re.S)
    return [yaml.safe_load(block) for block in blocks if "runs:" in block]


@pytest.mark.parametrize("readme", ["README.md", "config/README.md"])
def test_the_readmes_overlay_example_does_what_they_say(base, readme):
    """Change r16_qv, add r8_qv, drop r64_all: the log line both READMEs quote, and a valid config."""
    from snakemake.utils import update_config

    (example, *_) = readme_overlays(REPO / readme)
    config, layers = copy.deepcopy(base.config), [base, Layer("my.yaml", example)]
    update_config(config, example)
    (_, change) = apply_run_merge(config, layers, SCHEMA)
    described = change.describe()
    assert described == (
        "my.yaml: training.runs: changed r16_qv (learning_rate 0.0005 -> 0.001); added r8_qv; dropped r64_all; "
        "now r16_qv, r8_qv"
    )
    assert described.replace(" ", "") in (REPO / readme).read_text().replace("\n", "").replace(" ", "")
    assert config_problems(config, REPO / "schemas" / "config.schema.yaml", base_dir=REPO) == []


def test_the_seeds_example_keeps_the_study(base):
    seeds_example = next(block for block in readme_overlays(REPO / "config/README.md") if "seeds" in str(block))
    runs, _ = merge_runs([base, Layer("my.yaml", seeds_example)], SCHEMA)
    assert [(run["name"], run.get("seeds"), run["max_steps"]) for run in runs] == [
        ("r16_qv", [42, 43, 44], 12),
        ("r64_all", None, 12),
    ]


def test_a_value_that_a_sweep_or_seeds_would_replace_is_refused(base):
    """An overlay changing a key that an earlier file sweeps (or seed beside seeds) names the unused value."""
    swept = overlay({"name": "r64_all", "sweep": {"learning_rate": [1.0e-4, 3.0e-4]}}, source="sweep.yaml")
    runs, _ = merge_runs([base, swept], SCHEMA)  # the sweep replaces config.yaml's learning_rate: asked for
    assert by_name(runs)["r64_all"]["sweep"] == {"learning_rate": [1.0e-4, 3.0e-4]}
    with pytest.raises(ValueError, match=r"lr\.yaml: training\.runs: r64_all: learning_rate 0\.001 is never used"):
        merge_runs([base, swept, overlay({"name": "r64_all", "learning_rate": 1.0e-3}, source="lr.yaml")], SCHEMA)
    with pytest.raises(ValueError, match="learning_rate 0.001 is never used: sweep.learning_rate replaces it"):
        merge_runs([base, overlay({"name": "r8", "learning_rate": 1.0e-3, "sweep": {"learning_rate": [1e-4]}})], SCHEMA)
    seeds, _ = merge_runs([base, overlay({"name": "r16_qv", "seeds": [1, 2]})], SCHEMA)
    assert by_name(seeds)["r16_qv"]["seeds"] == [1, 2]  # replaces config.yaml's seed 42: asked for
    with pytest.raises(ValueError, match=r"r16_qv: seed 7 is never used: seeds \[1, 2\]"):
        merge_runs([base, overlay({"name": "r16_qv", "seeds": [1, 2], "seed": 7})], SCHEMA)


def test_replace_runs_without_runs_and_an_empty_training_section_are_named(base):
    with pytest.raises(ValueError, match=r"empty\.yaml: training\.replace_runs: true without training\.runs"):
        merge_runs([base, Layer("empty.yaml", {"training": {"replace_runs": True}})], SCHEMA)
    config = {**copy.deepcopy(base.config), "training": None}  # what Snakemake merges from a bare `training:`
    apply_run_merge(config, [base, Layer("bare.yaml", {"training": None})], SCHEMA)
    assert any("config.training" in problem for problem in config_problems(config, REPO / "schemas/config.schema.yaml"))


def test_a_problem_of_a_merged_run_names_the_run_and_the_files_that_set_it(base):
    """The schema check counts runs in the merged list; the message adds the name and its files."""
    runs, changes = merge_runs(
        [base, overlay({"name": "r64_all", "lerning_rate": 1.0e-3}, {"name": "r8_qv", "r": 8})], SCHEMA
    )
    origins = run_origins(changes)
    assert origins == {"r16_qv": ["config.yaml"], "r64_all": ["config.yaml", "my.yaml"], "r8_qv": ["my.yaml"]}
    problems = [
        "config.training.runs[1]: unknown key(s) lerning_rate",
        "config.training.runs[2].r: 0 is less",
        "config.x",
    ]
    assert locate_run_problems(problems, {"training": {"runs": runs}}, changes) == [
        "config.training.runs[1] (r64_all: config.yaml, my.yaml): unknown key(s) lerning_rate",
        "config.training.runs[2] (r8_qv: my.yaml).r: 0 is less",
        "config.x",
    ]
    # A file that replaces the runs before it is their only origin.
    _, changes = merge_runs([base, overlay({"name": "r16_qv", "r": 4}, replace_runs=True)], SCHEMA)
    assert run_origins(changes) == {"r16_qv": ["my.yaml"]}


def test_a_drop_repeated_in_a_later_file_names_the_file_that_dropped_the_run(base):
    first = overlay({"name": "r64_all", "drop": True}, source="my.yaml")
    again = overlay({"name": "r64_all", "drop": True}, source="other.yaml")
    message = r"^other\.yaml: training\.runs\[0\]: drop: true names r64_all, which my\.yaml already dropped"
    with pytest.raises(ValueError, match=message):
        merge_runs([base, first, again], SCHEMA)
