"""score_predictions / summarize_scores: the per-question table and its summary."""

import json
import sqlite3
from pathlib import Path

import pytest

from lora_tradeoff.spider.scoring import COLUMNS, score_predictions, summarize_scores

EASY_SQL = {
    "select": [False, [[0, [0, [0, 1, False], None]]]],
    "from": {"table_units": [["table_unit", 0]], "conds": []},
    "where": [],
    "groupBy": [],
    "having": [],
    "orderBy": [],
    "limit": None,
    "intersect": None,
    "union": None,
    "except": None,
}


@pytest.fixture
def tiny_db(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1), (2), (3);")
    conn.close()
    return path


def dev_item(i: int, db_id: str, query: str, parsed: dict | None = None) -> dict:
    item = {"id": f"dev-{i:04d}", "db_id": db_id, "question": f"q{i}", "query": query}
    return item | ({"sql": parsed} if parsed else {})


def test_table_rows_follow_dev_order(tiny_db: Path) -> None:
    dev = [
        dev_item(0, "tiny", "SELECT a FROM t", EASY_SQL),
        dev_item(1, "tiny", "SELECT count(*) FROM t"),
        dev_item(2, "gone", "SELECT 1"),
        dev_item(3, "tiny", "SELECT a FROM t"),
        dev_item(4, "tiny", "SELECT max(a) FROM t"),
    ]
    predictions = [  # shuffled on purpose: rows must follow dev order, not this one
        {"id": "dev-0004", "raw_output": "```sql\nSELECT x FROM t\n```", "model": "m"},
        {"id": "dev-0001", "raw_output": "SQL: SELECT count(a) FROM t;"},
        {"id": "dev-0003", "raw_output": "SELECT a FROM t WHERE a > 1"},
        {"id": "dev-0000", "raw_output": ""},
        {"id": "dev-0002", "raw_output": "SELECT 1"},
    ]
    frame = score_predictions(dev, predictions, {"tiny": str(tiny_db), "gone": None}, n_workers=2)
    assert list(frame.columns) == COLUMNS
    assert list(frame["id"]) == [f"dev-{i:04d}" for i in range(5)]
    assert list(frame["hardness"]) == ["easy", "unknown", "unknown", "unknown", "unknown"]
    assert list(frame["status"]) == ["failure", "success", "skipped", "failure", "failure"]
    assert list(frame["reason_category"]) == [
        "empty",
        "match",
        "skipped",
        "row_count",
        "exec_error",
    ]
    assert frame.loc[1, "extracted_sql"] == "SELECT count(a) FROM t"
    assert frame.loc[3, "reason"] == "2 rows vs 3 rows (prediction vs gold)"
    assert frame.loc[4, "reason"] == "prediction failed: no such column: x"
    assert frame["gold_rows"].fillna(-1).tolist() == [3, 1, -1, 3, 1]
    assert frame["pred_rows"].fillna(-1).tolist() == [-1, 1, -1, 2, -1]

    summary = summarize_scores(frame)
    assert (summary["ex"], summary["n"], summary["n_scored"]) == (0.25, 5, 4)
    assert (summary["success"], summary["failure"], summary["skipped"]) == (1, 3, 1)
    assert summary["by_hardness"]["easy"] == {
        "ex": 0.0,
        "n": 1,
        "n_scored": 1,
        "success": 0,
        "failure": 1,
        "skipped": 0,
    }
    assert summary["by_reason_category"] == {
        "empty": 1,
        "exec_error": 1,
        "match": 1,
        "row_count": 1,
        "skipped": 1,
    }
    assert summary["ignored_statements"] == 0
    json.dumps(summary)  # plain values only


def test_ignored_statements_are_recorded_per_item_and_counted(tiny_db: Path) -> None:
    dev = [dev_item(i, "tiny", "SELECT count(*) FROM t") for i in range(4)]
    predictions = [
        {"id": "dev-0000", "raw_output": "SELECT count(*) FROM t; DROP TABLE t"},
        {"id": "dev-0001", "raw_output": "SELECT count(*) FROM t; DELETE FROM t; SELECT 1"},
        {"id": "dev-0002", "raw_output": "SELECT count(*) FROM t;"},
        {"id": "dev-0003", "raw_output": "SELECT 7; SELECT count(*) FROM t"},
    ]
    frame = score_predictions(dev, predictions, {"tiny": str(tiny_db)})
    assert frame["ignored_statements"].tolist() == [1, 2, 0, 1]
    assert frame["reason_category"].tolist() == ["match", "match", "match", "wrong_result"]
    summary = summarize_scores(frame)
    assert summary["ignored_statements"] == 3
    with sqlite3.connect(tiny_db) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (3,)  # nothing after the first statement ran
    conn.close()


def test_all_skipped_has_no_ex() -> None:
    frame = score_predictions([dev_item(0, "gone", "SELECT 1")], [{"id": "dev-0000", "raw_output": "SELECT 1"}], {})
    summary = summarize_scores(frame)
    assert (summary["ex"], summary["skipped"], summary["n_scored"]) == (None, 1, 0)


@pytest.mark.parametrize(
    ("predictions", "message"),
    [
        ([], "1 missing"),
        ([{"id": "dev-0000", "raw_output": ""}, {"id": "dev-0009", "raw_output": ""}], "1 unknown"),
        ([{"id": "dev-0000", "raw_output": ""}] * 2, "duplicate prediction id"),
    ],
)
def test_predictions_must_match_dev_items(predictions: list[dict], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        score_predictions([dev_item(0, "gone", "SELECT 1")], predictions, {})


def test_real_dev_summary(spider_dir: Path, spider_dev: list[dict]) -> None:
    """All 1034 dev questions; every 7th prediction is prose, the rest are gold."""
    dev = [
        dev_item(i, x["db_id"], x["query"], x["sql"]) | {"question": x["question"]} for i, x in enumerate(spider_dev)
    ]
    databases = {
        x["db_id"]: str(p) if (p := spider_dir / "database" / x["db_id"] / f"{x['db_id']}.sqlite").exists() else None
        for x in spider_dev
    }
    predictions = [
        {"id": item["id"], "raw_output": "No idea." if i % 7 == 0 else item["query"]} for i, item in enumerate(dev)
    ]
    frame = score_predictions(dev, predictions, databases, n_workers=2)
    summary = summarize_scores(frame)
    prose_scored = sum(1 for i in range(1034) if i % 7 == 0 and not 429 <= i <= 490)
    assert (summary["n"], summary["n_scored"], summary["skipped"]) == (1034, 972, 62)
    assert summary["by_reason_category"] == {
        "empty": prose_scored,
        "match": 972 - prose_scored,
        "skipped": 62,
    }
    assert summary["ex"] == pytest.approx((972 - prose_scored) / 972)
    assert {level: s["n"] for level, s in summary["by_hardness"].items()} == {
        "easy": 248,
        "medium": 446,
        "hard": 174,
        "extra": 166,
    }
    assert sum(s["n_scored"] for s in summary["by_hardness"].values()) == 972
