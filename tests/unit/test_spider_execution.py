"""Sandboxed execution and the spider / set comparison rules, on tiny and real databases."""

import hashlib
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from lora_tradeoff.spider import execution
from lora_tradeoff.spider.execution import (
    clear_caches,
    execute_query,
    gold_orders_rows,
    normalise_spider,
    score_items,
    score_pair,
    spider_result_eq,
)


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """t: a duplicate row; u: four columns (exec_eval prunes permutations above 3);
    big: 200 rows for cross joins; bad: a TEXT value that is not UTF-8."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE t (a INTEGER, b TEXT);
            INSERT INTO t VALUES (1, 'x'), (2, 'y'), (2, 'y'), (3, 'z');
            CREATE TABLE u (c INTEGER, d TEXT, e REAL, f TEXT);
            INSERT INTO u VALUES (1, 'p', 0.5, 'q'), (2, 'r', 1.5, 's');
            CREATE TABLE big (n INTEGER);
            WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 200)
            INSERT INTO big SELECT n FROM s;
            CREATE TABLE bad (s TEXT);
            INSERT INTO bad VALUES (CAST(x'4aff6f' AS TEXT));
            """
        )
    conn.close()
    return path


@pytest.fixture(scope="module")
def concert_db(spider_dir: Path) -> Path:
    return spider_dir / "database" / "concert_singer" / "concert_singer.sqlite"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# (gold, prediction, spider score, set score, substring of the spider-mode reason)
TINY_CASES = {
    "bag: duplicates count": (
        "SELECT a FROM t",
        "SELECT a FROM t GROUP BY a",
        0,
        1,
        "3 rows vs 4 rows",
    ),
    "DISTINCT removed from gold too": (
        "SELECT DISTINCT a FROM t",
        "SELECT a FROM t GROUP BY a",
        0,
        1,
        "3 rows vs 4 rows",
    ),
    "COUNT(DISTINCT) becomes COUNT": (
        "SELECT count(DISTINCT a) FROM t",
        "SELECT count(a) FROM t",
        1,
        0,
        "match",
    ),
    "order counts with gold ORDER BY": (
        "SELECT a FROM t ORDER BY a",
        "SELECT a FROM t ORDER BY a DESC",
        0,
        1,
        "different order",
    ),
    "order ignored without gold ORDER BY": (
        "SELECT a FROM t",
        "SELECT a FROM t ORDER BY a DESC",
        1,
        1,
        "match",
    ),
    "column permutation": ("SELECT a, b FROM t", "SELECT b, a FROM t", 1, 0, "match"),
    "column permutation, 4 columns": (
        "SELECT c, d, e, f FROM u",
        "SELECT f, e, d, c FROM u",
        1,
        0,
        "match",
    ),
    "column count": ("SELECT a FROM t", "SELECT a, b FROM t", 0, 0, "2 columns vs 1 column"),
    "text is not integer": ("SELECT a FROM t WHERE a = 1", "SELECT '1'", 0, 0, "different values"),
    "1 equals 1.0": ("SELECT a FROM t WHERE a = 1", "SELECT 1.0", 1, 1, "match"),
    "1 vs 1.0 beside 1001: exec_eval's pre-check": (
        "SELECT 1, 1001",
        "SELECT 1.0, 1001",
        0,
        1,
        "equal only across int/real types",
    ),
    "both empty": ("SELECT a FROM t WHERE a > 9", "SELECT b FROM t WHERE a < 0", 1, 1, "match"),
    "one empty": (
        "SELECT a FROM t WHERE a = 1",
        "SELECT a FROM t WHERE a > 9",
        0,
        0,
        "0 rows vs 1 row",
    ),
    "'> =' repaired": (
        "SELECT a FROM t WHERE a >= 2",
        "SELECT a FROM t WHERE a > = 2",
        1,
        0,
        "match",
    ),
    "YEAR(CURDATE()) is 2020": ("SELECT 2020", "SELECT YEAR(CURDATE())", 1, 0, "match"),
    "failing prediction": (
        "SELECT a FROM t",
        "SELECT x FROM t",
        0,
        0,
        "prediction failed: no such column: x",
    ),
}

REAL_CASES = {
    "bag: duplicates count": (
        "SELECT country FROM singer",
        "SELECT country FROM singer GROUP BY country",
        0,
        1,
        "3 rows vs 6 rows",
    ),
    "COUNT(DISTINCT) becomes COUNT": (
        "SELECT count(DISTINCT country) FROM singer",
        "SELECT count(country) FROM singer",
        1,
        0,
        "match",
    ),
    "order counts with gold ORDER BY": (
        "SELECT name FROM singer ORDER BY age",
        "SELECT name FROM singer ORDER BY age DESC",
        0,
        1,
        "different order",
    ),
    "order ignored without gold ORDER BY": (
        "SELECT name FROM singer",
        "SELECT name FROM singer ORDER BY age",
        1,
        1,
        "match",
    ),
    "column permutation": (
        "SELECT name, age FROM singer",
        "SELECT age, name FROM singer",
        1,
        0,
        "match",
    ),
    "column permutation, 4 columns": (
        "SELECT singer_id, name, country, age FROM singer",
        "SELECT age, country, name, singer_id FROM singer",
        1,
        0,
        "match",
    ),
    "text is not integer": (
        "SELECT song_release_year FROM singer",
        "SELECT CAST(song_release_year AS INTEGER) FROM singer",
        0,
        0,
        "different values",
    ),
    "1 vs 1.0 beside 10104: exec_eval's pre-check": (
        "SELECT stadium_id, capacity FROM stadium WHERE stadium_id = 1",
        "SELECT stadium_id * 1.0, capacity FROM stadium WHERE stadium_id = 1",
        0,
        1,
        "equal only across int/real types",
    ),
    "both empty": (
        "SELECT name FROM singer WHERE age > 100",
        "SELECT name FROM singer WHERE age < 0",
        1,
        1,
        "match",
    ),
    "'> =' repaired": (
        "SELECT name FROM singer WHERE age >= 40",
        "SELECT name FROM singer WHERE age > = 40",
        1,
        0,
        "match",
    ),
    "failing prediction": (
        "SELECT name FROM singer",
        "SELECT nme FROM singer",
        0,
        0,
        "no such column: nme",
    ),
}


def check_case(db: Path, gold: str, pred: str, spider: int, set_: int, reason: str) -> None:
    result = score_pair(db, gold, pred)
    assert result.score == float(spider), result.reason
    assert reason in result.reason
    assert result.status == ("success" if spider else "failure")
    assert score_pair(db, gold, pred, mode="set").score == float(set_)


@pytest.mark.parametrize("case", TINY_CASES.values(), ids=TINY_CASES.keys())
def test_rule_on_tiny_db(tiny_db: Path, case: tuple) -> None:
    check_case(tiny_db, *case)


@pytest.mark.parametrize("case", REAL_CASES.values(), ids=REAL_CASES.keys())
def test_rule_on_real_db(concert_db: Path, case: tuple) -> None:
    check_case(concert_db, *case)


def test_result_eq_needs_one_consistent_column_permutation() -> None:
    gold = [(1, "x"), (2, "y")]
    assert spider_result_eq(gold, [("x", 1), ("y", 2)], order_matters=False)
    # each row matches under some permutation, but not under the same one
    assert not spider_result_eq(gold, [("x", 1), (2, "y")], order_matters=False)


def test_result_eq_keeps_exec_evals_int_float_quick_reject() -> None:
    # exec_eval sorts each row by str(value)+str(type) before comparing; 1 and 1.0
    # then sort differently against 1.5, so the official verdict is "different".
    assert spider_result_eq([(1.0, 1.5)], [(1.0, 1.5)], order_matters=False)
    assert not spider_result_eq([(1, 1.5)], [(1.0, 1.5)], order_matters=False)


def test_normalise_spider_keeps_literals_and_identifiers() -> None:
    sql = "SELECT DISTINCT \"distinct\", distinct_x FROM t WHERE b = 'distinct' AND a > = 1"
    assert normalise_spider(sql) == "SELECT  \"distinct\", distinct_x FROM t WHERE b = 'distinct' AND a >= 1"


def test_order_matters_is_exec_evals_literal_test() -> None:
    assert gold_orders_rows("SELECT a FROM t ORDER BY a")
    assert gold_orders_rows("SELECT a FROM (SELECT a FROM t order by a)")
    assert not gold_orders_rows("SELECT a FROM t ORDER  BY a")


def test_missing_database_is_skipped(tmp_path: Path) -> None:
    for db in (None, tmp_path / "absent.sqlite"):
        result = score_pair(db, "SELECT 1", "SELECT 1")
        assert (result.status, result.score, result.category) == ("skipped", 0.0, "skipped")
        assert result.reason == f"database missing: {db}"


@pytest.mark.parametrize("db_fixture", ["tiny_db", "concert_db"])
def test_failing_gold_is_reported_not_raised(db_fixture: str, request: pytest.FixtureRequest) -> None:
    db = request.getfixturevalue(db_fixture)
    result = score_pair(db, "SELECT nope FROM nowhere", "SELECT 1")
    assert (result.status, result.category, result.score) == ("failure", "gold_error", 0.0)
    assert result.reason == "gold failed: no such table: nowhere"


def test_unknown_mode_is_refused(tiny_db: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        score_pair(tiny_db, "SELECT 1", "SELECT 1", mode="exact")


def test_several_statements_refused_by_executor(tiny_db: Path) -> None:
    result = execute_query(tiny_db, "SELECT 1; SELECT 2")
    assert result.rows is None
    assert result.error == "2 statements; only one may run"


def test_row_cap(tiny_db: Path) -> None:
    assert execute_query(tiny_db, "SELECT n FROM big", row_cap=200).rows is not None
    result = execute_query(tiny_db, "SELECT n FROM big", row_cap=199)
    assert result.rows is None
    assert result.error == "row cap exceeded (more than 199 rows)"


def test_non_utf8_text_is_replaced_not_raised(tiny_db: Path) -> None:
    assert execute_query(tiny_db, "SELECT s FROM bad").rows == [("J\ufffdo",)]


def test_gold_result_is_cached(tiny_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clear_caches()
    executed: list[str] = []

    def counting_execute(db_path: Path, sql: str, *args: object) -> execution.QueryResult:
        executed.append(sql)
        return execute_query(db_path, sql, *args)

    monkeypatch.setattr(execution, "execute_query", counting_execute)
    for pred in ("SELECT a FROM t", "SELECT b FROM t", "SELECT a FROM t"):
        score_pair(tiny_db, "SELECT count(*) FROM t", pred)
    assert executed.count("SELECT count(*) FROM t") == 1
    assert len(executed) == 4
    clear_caches()
    score_pair(tiny_db, "SELECT count(*) FROM t", "SELECT 4")
    assert executed.count("SELECT count(*) FROM t") == 2


def test_score_items_keeps_input_order_across_workers(tiny_db: Path) -> None:
    items = [
        {"db_path": tiny_db, "gold_sql": gold, "raw_output": pred} for gold, pred, *_ in list(TINY_CASES.values()) * 3
    ]
    parallel = score_items(items, n_workers=2)
    serial = [score_pair(item["db_path"], item["gold_sql"], item["raw_output"]) for item in items]
    assert [(r.score, r.reason) for r in parallel] == [(r.score, r.reason) for r in serial]


# --- adversarial predictions: each is a miss with a reason, within the time limit,
# and leaves the database file byte-for-byte unchanged. {table} is a table with rows.
ADVERSARIAL = {
    "drop": ("DROP TABLE {table}", "not authorized"),
    "delete": ("DELETE FROM {table}", "not authorized: DELETE"),
    "update": ("UPDATE {table} SET {column} = NULL", "not authorized: UPDATE"),
    "insert": ("INSERT INTO {table} SELECT * FROM {table}", "not authorized: INSERT"),
    "create": ("CREATE TABLE evil (x)", "not authorized: INSERT sqlite_master"),
    "attach": ("ATTACH DATABASE '{scratch}' AS evil", "not authorized: ATTACH"),
    "pragma writable_schema": (
        "PRAGMA writable_schema=1",
        "not authorized: PRAGMA writable_schema",
    ),
    "pragma journal_mode": ("PRAGMA journal_mode=DELETE", "not authorized: PRAGMA journal_mode"),
    # table-valued forms of pragmas that can change state stay refused (issue 31)
    "pragma_user_version": ("SELECT * FROM pragma_user_version", "not authorized: PRAGMA user_version"),
    "pragma user_version=": ("PRAGMA user_version = 7", "not authorized: PRAGMA user_version"),
    "pragma_journal_mode": ("SELECT * FROM pragma_journal_mode", "not authorized: PRAGMA journal_mode"),
    "update sqlite_master": ("UPDATE sqlite_master SET sql = NULL", "may not be modified"),
    "cte then update": ("WITH x AS (SELECT 1) UPDATE {table} SET {column} = NULL", "not authorized: UPDATE"),
    "recursive CTE": (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT * FROM c",
        "row cap exceeded",
    ),
    "6-way cross join": (
        "SELECT count(*) FROM {table} a, {table} b, {table} c, {table} d, {table} e, {table} f",
        "timed out after 1 s",
    ),
    "huge blob": ("SELECT randomblob(1000000000)", "string or blob too big"),
    "huge result": ("SELECT zeroblob(900000) FROM {table} a, {table} b", "result too large"),
    "several statements": (
        "DELETE FROM {table}; SELECT count(*) FROM {table}",
        "not authorized: DELETE",
    ),
    "empty output": ("", "empty prediction"),
    "prose only": ("I am not able to write this query, sorry.", "no SQL found in output"),
    "syntax error": ("SELECT FROM WHERE", "syntax error"),
}


def check_adversarial(db: Path, table: str, column: str, gold: str, pred: str, reason: str) -> None:
    before = sha256(db)
    scratch = db.parent / "scratch.sqlite"
    start = time.monotonic()
    result = score_pair(db, gold, pred.format(table=table, column=column, scratch=scratch), timeout_s=1.0)
    elapsed = time.monotonic() - start
    assert (result.score, result.status) == (0.0, "failure")
    assert reason in result.reason
    assert elapsed < 3.0  # the 1 s limit really interrupted the query
    assert sha256(db) == before
    assert not scratch.exists()


@pytest.mark.parametrize("case", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_adversarial_on_tiny_db(tmp_path: Path, tiny_db: Path, case: tuple) -> None:
    db = tmp_path / "tiny.sqlite"
    shutil.copyfile(tiny_db, db)
    check_adversarial(db, "big", "n", "SELECT count(*) FROM big", *case)


@pytest.mark.parametrize("case", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_adversarial_on_real_db(tmp_path: Path, spider_dir: Path, case: tuple) -> None:
    # A writable copy: were the sandbox to let a write through, the hash would show it.
    original = spider_dir / "database" / "car_1" / "car_1.sqlite"
    db = tmp_path / "car_1.sqlite"
    shutil.copyfile(original, db)
    check_adversarial(db, "cars_data", "mpg", "SELECT count(*) FROM cars_data", *case)
    assert sha256(db) == sha256(original)


def test_timeout_interrupts_and_is_flagged(spider_dir: Path) -> None:
    db = spider_dir / "database" / "car_1" / "car_1.sqlite"
    sql = "SELECT count(*) FROM cars_data a, cars_data b, cars_data c, cars_data d"
    result = execute_query(db, sql, timeout_s=0.5)
    assert (result.rows, result.timed_out, result.error) == (None, True, "timed out after 0.5 s")
    assert result.seconds < 2.0


def test_gold_against_itself_on_all_dev(spider_dir: Path, spider_dev: list[dict]) -> None:
    """Every dev question with a database scores 1.0 against its own gold query (972)."""
    items = [
        {
            "db_path": spider_dir / "database" / x["db_id"] / f"{x['db_id']}.sqlite",
            "gold_sql": x["query"],
            "raw_output": x["query"],
        }
        for x in spider_dev
    ]
    results = score_items(items, n_workers=2)
    scored = [(i, r) for i, r in enumerate(results) if r.status != "skipped"]
    assert len(scored) == 972
    assert [(i, r.reason) for i, r in scored if r.score != 1.0] == []
    skipped = [i for i, r in enumerate(results) if r.status == "skipped"]
    assert skipped == list(range(429, 491))  # wta_1 is missing


# --- issue 17, kind 1: one long SQL function call never reaches the progress handler;
# the worker is killed at the deadline. (sql, gold) on concert_singer, timeout 1 s.
# SQLite's printf loops over the whole requested width even past the length limit: about
# 4 ns a character here, so a width of 2e9 keeps one call busy for about 7 s.
LONG_CALLS = {
    "printf precision": "SELECT count(*) FROM singer WHERE printf('%.*c', 2000000000 + Singer_ID, 'x') IS NULL",
    "in ORDER BY": "SELECT name FROM singer ORDER BY printf('%.*c', 2000000000, name)",
    "format alias": "SELECT count(*) FROM singer WHERE format('%.*c', 2000000000, 'x') IS NULL",
    "in select list": "SELECT length(printf('%.*c', 2000000000, 'x'))",
}
# Generous on a loaded machine, far below the calls' own ~7 s: the bound is the kill.
DEADLINE_SLACK_S = 2.5


@pytest.mark.parametrize("sql", LONG_CALLS.values(), ids=LONG_CALLS.keys())
def test_one_long_function_call_is_killed_at_the_deadline(concert_db: Path, sql: str) -> None:
    start = time.monotonic()
    result = score_pair(concert_db, "SELECT count(*) FROM singer", sql, timeout_s=1.0)
    elapsed = time.monotonic() - start
    assert (result.score, result.status, result.category) == (0.0, "failure", "timeout")
    assert result.reason == "prediction failed: timed out after 1 s"
    assert elapsed < 1.0 + DEADLINE_SLACK_S
    # the next query gets a fresh worker and runs normally
    assert score_pair(concert_db, "SELECT count(*) FROM singer", "SELECT count(*) FROM singer").score == 1.0


def test_the_reported_printf_query_is_never_a_match(concert_db: Path) -> None:
    """The input of the report (8-14 s and scored "match" before): its width now fails in under a
    second on this machine (an error), or times out on a slower one; either way it scores 0 in time."""
    sql = "SELECT count(*) FROM singer WHERE printf('%.*c', 200000000 + Singer_ID, 'x') IS NULL"
    start = time.monotonic()
    result = score_pair(concert_db, "SELECT count(*) FROM singer", sql, timeout_s=1.0)
    assert result.score == 0.0 and result.category in ("exec_error", "timeout")
    assert time.monotonic() - start < 1.0 + DEADLINE_SLACK_S


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM singer WHERE printf('%*d', 200000000 + Singer_ID, 1) IS NULL",
        "SELECT count(*) FROM singer WHERE format('%.*c', 2000000, 'x') IS NULL",
    ],
)
def test_printf_over_the_length_limit_fails_instead_of_giving_null(concert_db: Path, sql: str) -> None:
    """SQLite's printf returns NULL past the length limit, so the count would match; here it is an error."""
    result = score_pair(concert_db, "SELECT count(*) FROM singer", sql, timeout_s=5.0)
    assert (result.score, result.category) == (0.0, "exec_error")
    assert result.reason == "prediction failed: printf result over 1000000 bytes (SQLite would return NULL)"


def test_printf_still_formats(concert_db: Path) -> None:
    sql = "SELECT printf('%d-%s-%.2f-%q', 3, 'a', 2.5, 'it''s'), printf(NULL), format('%5s|', name) FROM singer LIMIT 1"
    assert execute_query(concert_db, sql).rows == [("3-a-2.50-it''s", None, "Joe Sharp|")]


def test_a_late_result_is_a_timeout(tiny_db: Path) -> None:
    """Any answer that arrives after the limit is discarded, however it ended."""
    result = execute_query(tiny_db, "SELECT a FROM t", timeout_s=1e-9)
    assert (result.rows, result.timed_out, result.error) == (None, True, "timed out after 1e-09 s")
    assert execute_query(tiny_db, "SELECT a FROM t").rows == [(1,), (2,), (2,), (3,)]


def test_a_dead_worker_is_replaced(tiny_db: Path) -> None:
    assert execute_query(tiny_db, "SELECT 1").rows == [(1,)]
    worker = execution._worker()
    worker.process.kill()
    worker.process.wait()
    assert execute_query(tiny_db, "SELECT 2").rows == [(2,)]
    assert execution._worker() is not worker


def test_timeouts_do_not_delay_other_items(concert_db: Path) -> None:
    gold = "SELECT count(*) FROM singer"
    items = [{"db_path": concert_db, "gold_sql": gold, "raw_output": gold}] * 20
    items[3] = {**items[3], "raw_output": LONG_CALLS["printf precision"]}
    items[11] = {**items[11], "raw_output": LONG_CALLS["format alias"]}
    start = time.monotonic()
    results = score_items(items, n_workers=2, timeout_s=1.0)
    # Each long call alone runs ~7 s; killed at 1 s, on 2 workers, everything is done well before.
    assert time.monotonic() - start < 1.0 + 2 * DEADLINE_SLACK_S
    assert [r.category for r in results] == ["timeout" if i in (3, 11) else "match" for i in range(20)]


# --- issue 17, kind 5: only the first statement runs; the others are counted, never run.
@pytest.mark.parametrize(
    ("pred", "ignored"),
    [
        ("SELECT count(*) FROM singer; DROP TABLE singer", 1),
        ("```sql\nSELECT count(*) FROM singer;\nDELETE FROM singer;\nDROP TABLE concert;\n```", 2),
        ("SELECT count(*) FROM singer; -- that is all", 0),
        ("SELECT count(*) FROM singer", 0),
    ],
)
def test_ignored_statements_are_counted_not_run(tmp_path: Path, concert_db: Path, pred: str, ignored: int) -> None:
    db = tmp_path / "concert_singer.sqlite"
    shutil.copyfile(concert_db, db)
    before = sha256(db)
    result = score_pair(db, "SELECT count(*) FROM singer", pred)
    assert (result.score, result.extracted_sql, result.ignored_statements) == (
        1.0,
        "SELECT count(*) FROM singer",
        ignored,
    )
    assert sha256(db) == before


def test_a_gold_query_that_failed_once_is_run_again(concert_db: Path) -> None:
    """Only gold successes are cached: a gold timeout on a busy machine must not fail every later prediction."""
    from lora_tradeoff.spider.execution import clear_caches

    clear_caches()
    gold = "SELECT count(*) FROM singer WHERE printf('%.*c', 2000000000, 'x') IS NULL"
    first = score_pair(concert_db, gold, "SELECT 6", timeout_s=0.5)
    assert (first.score, first.reason) == (0.0, "gold failed: timed out after 0.5 s")
    later = score_pair(concert_db, "SELECT count(*) FROM singer", "SELECT count(*) FROM singer", timeout_s=0.5)
    assert later.score == 1.0
    again = score_pair(concert_db, gold, "SELECT 6", timeout_s=0.5)
    assert again.reason == "gold failed: timed out after 0.5 s" and again.seconds > 0.4  # ran, not cached


@pytest.mark.parametrize(("timeout_s", "row_cap"), [(0, 10), (-1, 10), (None, 10), (1.0, 0), (1.0, -5)])
def test_limits_that_would_fail_every_query_are_refused(concert_db: Path, timeout_s, row_cap) -> None:
    with pytest.raises(ValueError, match="timeout_s|row_cap"):
        score_pair(concert_db, "SELECT 1", "SELECT 1", timeout_s=timeout_s, row_cap=row_cap)


# --- issue 31: read-only table-valued functions run, as in the official evaluator
TABLE_VALUED = [
    # (gold, prediction): the same result, the prediction through a table-valued function
    ("SELECT count(*) FROM singer", "SELECT count(*) FROM singer, json_each('[1]')"),
    ("SELECT 7", "SELECT count(*) FROM pragma_table_info('singer')"),
    ("SELECT 'Name'", "SELECT name FROM pragma_table_info('singer') WHERE cid = 1"),
    ("SELECT 2", "SELECT count(*) FROM json_tree('{\"a\": 1}')"),
    ("SELECT 2", "WITH j AS (SELECT value FROM json_each('[3, 4]')) SELECT count(*) FROM j"),
    (
        "SELECT count(*) FROM singer",
        "SELECT count(*) FROM singer WHERE Singer_ID IN (SELECT value FROM json_each('[1,2,3,4,5,6]'))",
    ),
    ("SELECT 'singer'", "SELECT name FROM pragma_table_list WHERE name = 'singer'"),
]


@pytest.mark.parametrize(("gold", "pred"), TABLE_VALUED)
def test_read_only_table_valued_functions_score(spider_dir: Path, gold: str, pred: str) -> None:
    db = spider_dir / "database" / "concert_singer" / "concert_singer.sqlite"
    result = score_pair(db, gold, pred)
    assert (result.score, result.reason) == (1.0, "match")


def test_read_only_pragma_statements_run(spider_dir: Path) -> None:
    db = spider_dir / "database" / "concert_singer" / "concert_singer.sqlite"
    assert [row[1] for row in execute_query(db, "PRAGMA table_info(singer)").rows][:2] == ["Singer_ID", "Name"]


# --- issue 31: memory and temporary disk of one query are bounded whatever the value types
ROWS_100K = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 100000)"
BLOBS_1500 = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 1500)"
DEGENERATE = {
    # 100,000 rows x 100 REAL columns: 10 M floats, about 0.5 GB in each process when only text counted
    "100k x 100 REAL": (f"{ROWS_100K} SELECT {', '.join(f'x * {i}.5' for i in range(100))} FROM c", "result too large"),
    "100k x 100 NULL": (f"{ROWS_100K} SELECT {', '.join('NULL' for _ in range(100))} FROM c", "result too large"),
    # sorting / grouping 1.35 GB of blobs wrote temporary files of that size
    "ORDER BY blobs": (f"{BLOBS_1500} SELECT x FROM c ORDER BY zeroblob(900000) || x", "out of memory"),
    "GROUP BY blobs": (f"{BLOBS_1500} SELECT count(*) FROM c GROUP BY randomblob(900000)", "out of memory"),
}


def _worker_peak_and_disk_writes() -> tuple[int, int]:
    """(peak resident bytes, bytes written to storage) of this thread's query worker (Linux /proc)."""
    pid = execution._worker().process.pid
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    io = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(status["VmHWM"].split()[0]) * 1024, int(io["write_bytes"])


@pytest.mark.parametrize("case", DEGENERATE.values(), ids=DEGENERATE.keys())
def test_degenerate_queries_stay_within_the_memory_and_disk_bounds(spider_dir: Path, case: tuple) -> None:
    """Measured here (2-core shared machine): worker peak ~100 MB for the wide results (was ~0.5 GB in the
    worker and again in the parent), ~270 MB for the blob sorts (SQLite's heap limit of 256 MB), no disk
    writes (was over 1 GB of temporary files), each in 0.5-3 s."""
    sql, reason = case
    db = spider_dir / "database" / "concert_singer" / "concert_singer.sqlite"
    execution._stop_worker()  # a fresh worker: its peak is this query's
    result = execute_query(db, sql, timeout_s=10.0)
    peak, written = _worker_peak_and_disk_writes()
    assert result.rows is None and reason in result.error and not result.timed_out
    assert peak < execution.SQLITE_HEAP_LIMIT + 100_000_000  # the heap limit plus the interpreter
    assert written < 1_000_000
    assert result.seconds < 10.0


def test_every_value_type_counts_toward_the_result_bound() -> None:
    assert execution._row_bytes((1.5, None, 3)) == execution._row_bytes(("", b"", 0)) > 0
    assert execution._row_bytes(("abc",)) == execution._row_bytes((0,)) + 3
