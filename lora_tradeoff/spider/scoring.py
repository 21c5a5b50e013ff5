"""Score a model's Spider predictions: one table row per question, plus a summary.

EX (execution accuracy) is the mean score over scored questions; a question
whose database is missing is "skipped" and left out of EX, never counted as a
failure.
"""

from collections.abc import Sequence
from typing import Any

import pandas as pd

from lora_tradeoff.spider.execution import DEFAULT_ROW_CAP, DEFAULT_TIMEOUT_S, Mode, score_items
from lora_tradeoff.spider.extraction import SqlBlock
from lora_tradeoff.spider.hardness import spider_hardness

COLUMNS = [
    "id",
    "db_id",
    "hardness",
    "question",
    "gold",
    "raw_output",
    "extracted_sql",
    "ignored_statements",
    "score",
    "status",
    "reason",
    "reason_category",
    "gold_rows",
    "pred_rows",
    "seconds",
]
STATUSES = ("success", "failure", "skipped")
HARDNESS_LEVELS = ("easy", "medium", "hard", "extra", "unknown")


def _predictions_by_id(dev_ids: Sequence[str], predictions: Sequence[dict]) -> dict[str, dict]:
    """Index predictions by id; every dev id needs exactly one, and no others may appear."""
    by_id: dict[str, dict] = {}
    for prediction in predictions:
        if prediction["id"] in by_id:
            raise ValueError(f"duplicate prediction id {prediction['id']!r}")
        by_id[prediction["id"]] = prediction
    missing = [i for i in dev_ids if i not in by_id]
    unknown = sorted(set(by_id) - set(dev_ids))
    if missing or unknown:
        raise ValueError(
            f"predictions do not match the dev items: {len(missing)} missing "
            f"(first: {missing[:3]}), {len(unknown)} unknown (first: {unknown[:3]})"
        )
    return by_id


def score_predictions(
    dev_items: Sequence[dict],
    predictions: Sequence[dict],
    databases: dict[str, str | None],
    mode: Mode = "spider",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    row_cap: int = DEFAULT_ROW_CAP,
    n_workers: int = 1,
    sql_block: SqlBlock = "first",
) -> pd.DataFrame:
    """Score each dev item's prediction by execution; one row per dev item, in dev order.

    `dev_items`: {"id", "db_id", "question", "query", "sql" (optional)};
    `predictions`: {"id", "raw_output", ...}, exactly one per dev item (ValueError
    otherwise); `databases`: db_id -> sqlite path, None (or absent) when the
    database is missing, which makes its questions "skipped". Hardness is
    "unknown" without a parsed "sql". `sql_block` (config generation.sql_block): whether
    the first or the last SQL block of each output is scored. `ignored_statements` counts the statements
    after the first in the extracted SQL (only the first runs). See
    `execution.score_pair` for the rest.
    """
    by_id = _predictions_by_id([item["id"] for item in dev_items], predictions)
    results = score_items(
        [
            {
                "db_path": databases.get(item["db_id"]),
                "gold_sql": item["query"],
                "raw_output": by_id[item["id"]]["raw_output"],
            }
            for item in dev_items
        ],
        n_workers=n_workers,
        mode=mode,
        timeout_s=timeout_s,
        row_cap=row_cap,
        sql_block=sql_block,
    )
    rows = [
        {
            "id": item["id"],
            "db_id": item["db_id"],
            "hardness": spider_hardness(item["sql"]) if item.get("sql") else "unknown",
            "question": item["question"],
            "gold": item["query"],
            "raw_output": by_id[item["id"]]["raw_output"],
            "extracted_sql": result.extracted_sql,
            "ignored_statements": result.ignored_statements,
            "score": result.score,
            "status": result.status,
            "reason": result.reason,
            "reason_category": result.category,
            "gold_rows": result.gold_rows,
            "pred_rows": result.pred_rows,
            "seconds": result.seconds,
        }
        for item, result in zip(dev_items, results, strict=True)
    ]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.astype({"gold_rows": "Int64", "pred_rows": "Int64"})


def _group_summary(frame: pd.DataFrame) -> dict[str, Any]:
    """EX over the non-skipped rows (None if there are none) and the status counts."""
    counts = {status: int((frame["status"] == status).sum()) for status in STATUSES}
    scored = frame[frame["status"] != "skipped"]
    ex = float(scored["score"].mean()) if len(scored) else None
    return {"ex": ex, "n": len(frame), "n_scored": len(scored), **counts}


def summarize_scores(frame: pd.DataFrame) -> dict[str, Any]:
    """Summary of a `score_predictions` table, as plain JSON-ready Python values.

    {"ex", "n", "n_scored", "success", "failure", "skipped",
     "by_hardness": {level: same keys}, "by_reason_category": {category: count},
     "ignored_statements": questions whose prediction had statements after the first}.
    EX counts only non-skipped questions; levels absent from the table are left out.
    """
    by_hardness = {
        level: _group_summary(frame[frame["hardness"] == level])
        for level in HARDNESS_LEVELS
        if (frame["hardness"] == level).any()
    }
    categories = frame["reason_category"].value_counts().sort_index()
    return {
        **_group_summary(frame),
        "by_hardness": by_hardness,
        "by_reason_category": {str(k): int(v) for k, v in categories.items()},
        "ignored_statements": int((frame["ignored_statements"] > 0).sum()),
    }
