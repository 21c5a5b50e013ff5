"""Failure examples: a few wrong answers of every fine-tuned run, chosen by a stated rule.

``failure_examples.json`` and ``failure_examples.md`` of the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from lora_tradeoff.report.inputs import BASELINE

# Failure examples: up to one question per kind, in this order, for every fine-tuned run.
FAILURE_KINDS: tuple[tuple[str, str], ...] = (
    ("regression", "the baseline answered it correctly, the run did not"),
    ("wrong_result", "the SQL ran but returned other rows (reason category wrong_result or row_count)"),
    ("exec_error", "the SQL did not run (reason category exec_error)"),
)
FAILURE_RULE = (
    "For every fine-tuned run, one question of each kind, in this order: "
    + "; ".join(f"({i}) {kind}: {text}" for i, (kind, text) in enumerate(FAILURE_KINDS, 1))
    + ". Of each kind the question with the lowest id is taken (ids are zero-padded, `dev-0042`, so string "
    "order is dev-set order), skipping questions already taken for an earlier kind of the same run; "
    "skipped questions (database missing) never qualify. A kind with no such question is left out."
)


def failure_examples(
    spider_scored: Mapping[str, pd.DataFrame], runs: Sequence[str], baseline: str = BASELINE
) -> dict[str, list[dict[str, Any]]]:
    """Up to one example per kind of :data:`FAILURE_KINDS` for every run, by :data:`FAILURE_RULE`."""
    base = spider_scored[baseline].set_index("id")
    examples: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        rows = spider_scored[run].sort_values("id", kind="stable")
        failed = rows[rows["status"] == "failure"]
        base_status = failed["id"].map(base["status"])
        candidates = {
            "regression": failed[base_status == "success"],
            "wrong_result": failed[failed["reason_category"].isin(["wrong_result", "row_count"])],
            "exec_error": failed[failed["reason_category"] == "exec_error"],
        }
        taken: list[dict[str, Any]] = []
        for kind, description in FAILURE_KINDS:
            pool = candidates[kind]
            pool = pool[~pool["id"].isin([example["id"] for example in taken])]
            if pool.empty:
                continue
            row = pool.iloc[0]
            base_row = base.loc[row["id"]]
            taken.append(
                {
                    "run": run,
                    "kind": kind,
                    "kind_description": description,
                    "id": row["id"],
                    "db_id": row["db_id"],
                    "hardness": row["hardness"],
                    "question": row["question"],
                    "gold_sql": row["gold"],
                    "predicted_sql": row["extracted_sql"],
                    "raw_output": row["raw_output"],
                    "reason": row["reason"],
                    "reason_category": row["reason_category"],
                    "baseline_status": base_row["status"],
                    "baseline_reason": base_row["reason"],
                }
            )
        examples[run] = taken
    return examples


def render_failure_examples(examples: Mapping[str, Sequence[Mapping[str, Any]]], baseline: str = BASELINE) -> str:
    lines = ["# Failure examples", "", f"**Selection rule.** {FAILURE_RULE}", ""]
    for run, chosen in examples.items():
        lines += [f"## {run}", ""]
        found = {example["kind"] for example in chosen}
        missing = [kind for kind, _ in FAILURE_KINDS if kind not in found]
        if not chosen:
            lines += [f"Nothing to show: no question of {run} is of any kind ({', '.join(missing)}).", ""]
        elif missing:
            lines += [f"No question of kind {', '.join(missing)} besides those shown.", ""]
        for example in chosen:
            predicted = example["predicted_sql"] or f"(no SQL extracted; raw output: {example['raw_output']!r})"
            lines += [
                f"### {example['kind']}: {example['id']} ({example['db_id']}, {example['hardness']})",
                "",
                f"*Kind:* {example['kind_description']}.",
                "",
                f"**Question:** {example['question']}",
                "",
                "**Gold SQL:**",
                "",
                "```sql",
                example["gold_sql"],
                "```",
                "",
                "**Predicted SQL:**",
                "",
                "```sql",
                predicted,
                "```",
                "",
                f"**Metric's reason:** {example['reason']} (`{example['reason_category']}`)",
                "",
                f"**{baseline} on this question:** {example['baseline_status']} ({example['baseline_reason']})",
                "",
            ]
    return "\n".join(lines)
