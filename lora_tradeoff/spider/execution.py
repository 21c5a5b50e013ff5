"""Sandboxed SQLite execution and Spider execution-accuracy comparison.

Execution (`execute_query`) opens the database read-only and lets exactly one
read-only statement run, bounded in time, rows and value size, so that no
prediction can change the database, hang the run or exhaust memory.

Comparison has two modes:

- ``spider`` (default) reproduces `eval_exec_match` of test-suite-sql-eval
  (github taoyds/test-suite-sql-eval, exec_eval.py) with its defaults
  (``plug_value=False``, ``keep_distinct=False``) on a single database:
  both queries are normalised (`normalise_spider`) before they run, results are
  bags of rows (duplicates count), row order counts only when the gold query
  contains "order by", a consistent column permutation is allowed, values are
  compared as SQLite returns them (Python ``==``: 1 == 1.0, "1" != 1; but
  exec_eval's type-aware pre-check, kept here, can reject 1 vs 1.0 inside a
  multi-column row), two empty results match, and a failing prediction is a
  miss (`spider_result_eq`). docs/scoring-agreement.md: 6053/6053 verdicts agree.
- ``set`` is the seed briefs' ``set(pred) == set(gold)``: queries run as
  extracted (no normalisation), duplicates and row order are ignored, columns
  must be in the same order, two empty results match, a failing prediction is
  a miss.

Differences from the official evaluator, all deliberate: the database is opened
read-only, the time limit really interrupts the query, a gold query that fails
is reported on its item instead of aborting the run (the official code
asserts), non-UTF-8 bytes decode with U+FFFD instead of being dropped, and
results are bounded in rows and bytes. evaluation.py also rewrites the
prediction with ``p_str.replace("value", "1")`` before calling eval_exec_match,
for models that emit a "value" placeholder; that is not done here because it
corrupts identifiers that contain "value" and our models predict real values.
"""

import functools
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Literal

from lora_tradeoff.spider.extraction import SqlBlock, check_sql_block, extract_statements, split_statements, sql_tokens

Mode = Literal["spider", "set"]
MODES: tuple[Mode, ...] = ("spider", "set")
Status = Literal["success", "failure", "skipped"]
_Outcome = tuple[list[tuple] | None, str | None, bool]  # rows, error, timed out

DEFAULT_TIMEOUT_S = 10.0
# The largest dev gold result has 1,860 rows; a prediction with more rows than
# gold cannot match, so the cap only has to sit well above every gold result.
DEFAULT_ROW_CAP = 100_000
# Largest string or blob SQLite may build (sqlite3_limit LENGTH): stops
# randomblob(1e9)-style allocations inside the engine. Spider values are tiny.
MAX_VALUE_BYTES = 1_000_000
# Memory a result may take in Python, values of every type counted (`_row_bytes`); with the row
# cap this bounds the memory one query's rows take in the worker and again in the parent
# (rows x MAX_VALUE_BYTES alone would not, nor would counting text only: 100,000 rows x 100
# REAL columns are 10 M float objects, about 0.5 GB).
MAX_RESULT_BYTES = 64_000_000
# Bytes counted per row (its tuple) and per value (a pointer and, for a number or NULL, its
# object): CPython's sizes, rounded up.
_ROW_OVERHEAD = 64
_VALUE_OVERHEAD = 32
# SQLite's own heap in a query worker (`PRAGMA hard_heap_limit`, for the whole process): sorts,
# temporary b-trees and hash tables of one query stay under it, and with temp_store = MEMORY so do
# the temporary files an ORDER BY or GROUP BY on large values would otherwise write to disk.
# Over it, the query fails with "out of memory".
SQLITE_HEAP_LIMIT = 256_000_000
# How many SQLite VM instructions run between two deadline checks: small enough
# to stop within milliseconds, large enough that the check costs little.
_PROGRESS_STEPS = 1_000
_FETCH_BATCH = 256
# How long past its time limit a query's worker may take to answer before it is
# killed: the progress handler usually stops a query in time and saves the
# respawn; a late answer is a timeout all the same.
_KILL_GRACE_S = 0.1
# How long a fresh worker may take to start (interpreter and imports).
_WORKER_START_S = 60.0

# Authorizer actions a read-only query needs; everything else is denied,
# including every write, ATTACH/DETACH, PRAGMA and transaction control.
_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
# Pragmas that only read the schema (their argument names a table or an index, never a value to
# set): allowed as statements and as table-valued functions (pragma_table_info('singer')), which
# the official evaluator runs too. Pragmas that can change state (user_version = 1,
# journal_mode, writable_schema) stay refused.
READ_ONLY_PRAGMAS = frozenset(
    "table_info table_xinfo table_list index_list index_info index_xinfo foreign_key_list "
    "collation_list function_list module_list pragma_list database_list".split()
)
# Statements that read: only for them may a table-valued function (json_each, pragma_*) declare
# its table, which SQLite reports as an UPDATE of sqlite_master (the connection is read-only, and
# SQLite itself refuses to modify sqlite_master without writable_schema, which is refused).
_READ_STATEMENTS = frozenset({"SELECT", "WITH", "VALUES"})
# Authorizer action code -> name, to say in the reason what was refused.
_ACTION_NAMES = {
    getattr(sqlite3, f"SQLITE_{name}"): name
    for name in (
        "CREATE_INDEX CREATE_TABLE CREATE_TEMP_INDEX CREATE_TEMP_TABLE CREATE_TEMP_TRIGGER "
        "CREATE_TEMP_VIEW CREATE_TRIGGER CREATE_VIEW DELETE DROP_INDEX DROP_TABLE "
        "DROP_TEMP_INDEX DROP_TEMP_TABLE DROP_TEMP_TRIGGER DROP_TEMP_VIEW DROP_TRIGGER "
        "DROP_VIEW INSERT PRAGMA TRANSACTION UPDATE ATTACH DETACH ALTER_TABLE REINDEX "
        "ANALYZE CREATE_VTABLE DROP_VTABLE SAVEPOINT"
    ).split()
}


@dataclass(frozen=True)
class QueryResult:
    """Outcome of one sandboxed query: rows on success, else an error message."""

    rows: list[tuple] | None
    error: str | None
    seconds: float
    timed_out: bool = False


@dataclass(frozen=True)
class ScoreResult:
    """Execution-accuracy verdict for one (gold, prediction) pair.

    `status` is "success" (score 1.0), "failure" (score 0.0) or "skipped"
    (database missing; not a failure and not part of EX). `category` is a
    coarse, countable form of `reason`: match, wrong_result, row_count,
    exec_error, timeout, empty, skipped or gold_error. `gold_rows`/`pred_rows`
    are row counts, None when that query did not run or failed.
    `ignored_statements` counts the statements after the first in the
    extracted SQL: only the first runs (as in the official evaluator).
    """

    extracted_sql: str
    score: float
    status: Status
    reason: str
    category: str
    gold_rows: int | None
    pred_rows: int | None
    seconds: float
    ignored_statements: int = 0


def _decode_text(value: bytes) -> str:
    """Text factory: invalid UTF-8 becomes U+FFFD instead of raising mid-result."""
    return value.decode("utf-8", errors="replace")


class _Sandbox:
    """A read-only connection to one database with the sandbox installed.

    Reused across queries: the authorizer lets nothing but reads run, so no
    query can leave state behind (no PRAGMA, temp table, ATTACH or open
    transaction) for the next. `deadline` is re-armed per query.

    printf()/format() are replaced by a wrapper around SQLite's own: under the
    length limit SQLite's printf returns NULL for a result over MAX_VALUE_BYTES
    instead of failing, so "printf('%*d', 2e8, 1) IS NULL" would be true here
    and false in the official evaluator; the wrapper makes it an error.
    """

    def __init__(self, db_path: Path):
        self.deadline = float("inf")
        self.reading = False  # the statement being prepared is a SELECT, WITH or VALUES
        self.denied: list[str] = []
        self.function_error: str | None = None
        self.conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True, isolation_level=None)
        self.conn.text_factory = _decode_text
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        # Temporary tables, sorts and indexes in memory, where SQLITE_HEAP_LIMIT bounds them, not on disk.
        self.conn.execute("PRAGMA temp_store = MEMORY")
        self.conn.set_authorizer(self._authorize)
        # A truthy return makes SQLite abort the running statement ("interrupted").
        self.conn.set_progress_handler(lambda: time.monotonic() > self.deadline, _PROGRESS_STEPS)
        self.printf_conn = sqlite3.connect(":memory:", isolation_level=None)
        self.printf_conn.text_factory = _decode_text
        self.printf_conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        for name in ("printf", "format"):
            self.conn.create_function(name, -1, self._printf, deterministic=True)

    def _printf(self, *args: object) -> object:
        """SQLite's printf, except that a result over MAX_VALUE_BYTES raises instead of becoming NULL."""
        if not args:
            return None
        (value,) = self.printf_conn.execute(f"SELECT printf({', '.join('?' * len(args))})", args).fetchone()
        if value is None and args[0] is not None:
            self.function_error = f"printf result over {MAX_VALUE_BYTES} bytes (SQLite would return NULL)"
            raise ValueError(self.function_error)
        return value

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, database: str | None, *_: object) -> int:
        if action in _ALLOWED_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in READ_ONLY_PRAGMAS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_UPDATE and self.reading and arg1 == "sqlite_master" and database == "main":
            return sqlite3.SQLITE_OK  # a table-valued function declaring its table
        self.denied.append(" ".join(filter(None, (_ACTION_NAMES.get(action, str(action)), arg1))))
        return sqlite3.SQLITE_DENY


@functools.lru_cache(maxsize=64)
def _sandbox(db_path: Path, pid: int, thread: int) -> _Sandbox:
    """One sandbox per database, process and thread: opening a connection and
    parsing the schema cost more than most Spider queries; SQLite connections
    must not cross fork() and this one's deadline must not be shared."""
    return _Sandbox(db_path)


def _row_bytes(row: tuple) -> int:
    """Bytes `row` takes in Python, about: the tuple, a pointer per value, each number or NULL as
    an object, each str or bytes as its length plus an object."""
    return _ROW_OVERHEAD + sum(
        _VALUE_OVERHEAD + (len(value) if isinstance(value, (str, bytes)) else 0) for value in row
    )


def _fetch_bounded(cursor: sqlite3.Cursor, row_cap: int) -> tuple[list[tuple] | None, str | None]:
    """Fetch all rows unless there are more than `row_cap` or they take more than MAX_RESULT_BYTES
    (`_row_bytes`: values of every type count)."""
    rows: list[tuple] = []
    payload = 0
    while batch := cursor.fetchmany(_FETCH_BATCH):
        rows.extend(batch)
        if len(rows) > row_cap:
            return None, f"row cap exceeded (more than {row_cap} rows)"
        payload += sum(_row_bytes(row) for row in batch)
        if payload > MAX_RESULT_BYTES:
            return None, f"result too large (more than {MAX_RESULT_BYTES} bytes)"
    return rows, None


def _run_sandboxed(db_path: str, sql: str, timeout_s: float, row_cap: int) -> _Outcome:
    """(rows, error, timed_out) of one statement in this process's sandbox for `db_path`.

    Runs inside the query worker (`_QueryWorker`). The progress handler stops
    most over-long queries here; one long SQL function call it cannot stop, and
    for that the worker is killed from outside.
    """
    try:
        box = _sandbox(Path(db_path), os.getpid(), threading.get_ident())
    except sqlite3.Error as exc:
        return None, f"cannot open database: {exc}", False
    box.denied.clear()
    box.function_error = None
    words = [token for token in sql_tokens(sql) if not (token.isspace() or token.startswith(("--", "/*")))]
    box.reading = bool(words) and words[0].upper() in _READ_STATEMENTS
    timed_out = False
    try:
        box.deadline = time.monotonic() + timeout_s
        with closing(box.conn.execute(sql)) as cursor:
            rows, error = _fetch_bounded(cursor, row_cap)
    except (sqlite3.Error, ValueError, OverflowError, MemoryError) as exc:
        rows, error = None, str(exc)
        if isinstance(exc, MemoryError):  # SQLite's heap limit: Python raises it with no message
            error = f"out of memory (SQLite may use {SQLITE_HEAP_LIMIT} bytes per query worker)"
        timed_out = isinstance(exc, sqlite3.OperationalError) and time.monotonic() > box.deadline
        if box.function_error and not timed_out:
            error = box.function_error
        elif box.denied and not timed_out:
            error = f"{error}: {', '.join(dict.fromkeys(box.denied))} (read-only sandbox)"
    return rows, error, timed_out


def _serve(read_fd: int, write_fd: int) -> None:
    """Main loop of a query worker: answer (db_path, sql, timeout_s, row_cap) requests until EOF."""
    requests, answers = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    with closing(sqlite3.connect(":memory:")) as connection:  # the limit is the process's, set once
        connection.execute(f"PRAGMA hard_heap_limit = {SQLITE_HEAP_LIMIT}")
    answers.send("ready")
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError):
            return
        answers.send(_run_sandboxed(*request))


class _QueryWorker:
    """A child Python process that executes queries for one thread of this process.

    A query that has not answered by its deadline (plus `_KILL_GRACE_S`) is
    stopped by killing the process, whatever SQLite is doing (one long
    function call such as printf('%.*c', 2e8, 'x') never returns to the
    progress handler); the next query starts a fresh worker. A subprocess, not
    a multiprocessing.Process, so that forked pool workers (daemons) may own one.
    """

    def __init__(self) -> None:
        self.owner = os.getpid()
        parent_read, child_write = os.pipe()
        child_read, parent_write = os.pipe()
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))}
        code = (
            "import sys; from lora_tradeoff.spider.execution import _serve; _serve(int(sys.argv[1]), int(sys.argv[2]))"
        )
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code, str(child_read), str(child_write)],
                pass_fds=(child_read, child_write),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            os.close(child_read)
            os.close(child_write)
        self.requests = Connection(parent_write, readable=False)
        self.answers = Connection(parent_read, writable=False)
        if not self.answers.poll(_WORKER_START_S) or self.answers.recv() != "ready":
            self.close()
            raise RuntimeError(f"the SQL query worker did not start within {_WORKER_START_S:g} s")

    def run(self, db_path: Path, sql: str, timeout_s: float, row_cap: int) -> _Outcome:
        """(rows, error, timed_out); raises OSError/EOFError when the worker died, and closes it."""
        self.requests.send((str(db_path), sql, timeout_s, row_cap))
        if not self.answers.poll(timeout_s + _KILL_GRACE_S):
            self.close()
            return None, None, True
        try:
            return self.answers.recv()
        except (EOFError, OSError):
            self.close()
            raise

    @property
    def alive(self) -> bool:
        return self.process.poll() is None and not self.answers.closed

    def close(self) -> None:
        """Kill the worker process (only from the process that started it)."""
        if os.getpid() != self.owner:
            return
        for connection in (self.requests, self.answers):
            connection.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to clean up
            pass


_local = threading.local()


def _worker() -> _QueryWorker:
    """This thread's query worker, started on first use and after a kill or a fork."""
    worker = getattr(_local, "worker", None)
    if worker is None or worker.owner != os.getpid() or not worker.alive:
        worker = _local.worker = _QueryWorker()
    return worker


def _stop_worker() -> None:
    worker = getattr(_local, "worker", None)
    _local.worker = None
    if worker is not None:
        worker.close()


def execute_query(
    db_path: Path | str,
    sql: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    row_cap: int = DEFAULT_ROW_CAP,
) -> QueryResult:
    """Run one read-only statement on `db_path` within `timeout_s` and `row_cap`.

    The statement runs in a worker process (`_QueryWorker`) that is killed if
    it has not answered `timeout_s` (+0.1 s) after the request: the time bound
    holds for any query, including one long SQL function call. Fails (rows
    None, error set) on: several statements, any non-read action (write, DDL,
    ATTACH/DETACH, a PRAGMA other than READ_ONLY_PRAGMAS, transaction; read-only
    table-valued functions such as json_each and pragma_table_info run), a value over MAX_VALUE_BYTES, more
    than `row_cap` rows or MAX_RESULT_BYTES (values of every type counted), SQLite's
    heap over SQLITE_HEAP_LIMIT (temporary data included), any SQLite error, a worker
    that died, and a result that arrives after `timeout_s` (timed_out True; the
    clock covers execution, fetching and the transfer of the rows, and a late
    result is discarded). Never raises for a bad query.
    """
    statements = split_statements(sql)
    if len(statements) > 1:
        return QueryResult(None, f"{len(statements)} statements; only one may run", 0.0)
    worker = _worker()  # started before the clock: start-up is not the query's time
    start = time.monotonic()
    try:
        rows, error, timed_out = worker.run(Path(db_path).absolute(), sql, timeout_s, row_cap)
    except (EOFError, OSError) as exc:
        code = worker.process.returncode
        return QueryResult(None, f"query worker died (exit code {code}): {exc!r}", time.monotonic() - start)
    seconds = time.monotonic() - start
    if timed_out or seconds > timeout_s:
        return QueryResult(None, f"timed out after {timeout_s:g} s", seconds, True)
    return QueryResult(rows, error, seconds)


_GOLD_CACHE: dict[tuple[Path, str, float, int], QueryResult] = {}
_GOLD_CACHE_SIZE = 4096


def _execute_gold(db_path: Path, sql: str, timeout_s: float, row_cap: int) -> QueryResult:
    """Gold results repeat across predictions and models; run each gold query once.

    Only successes are kept: a gold query that failed (a timeout on a busy machine, a worker
    that died) is run again next time instead of failing every later prediction.
    """
    key = (db_path, sql, timeout_s, row_cap)
    cached = _GOLD_CACHE.get(key)
    if cached is not None:
        return cached
    result = execute_query(db_path, sql, timeout_s, row_cap)
    if result.error is None:
        if len(_GOLD_CACHE) >= _GOLD_CACHE_SIZE:
            _GOLD_CACHE.pop(next(iter(_GOLD_CACHE)))  # the oldest entry
        _GOLD_CACHE[key] = result
    return result


def clear_caches() -> None:
    """Forget cached gold results and stop this thread's query worker with its
    cached connections (for a database file that changed on disk, or a
    cold-cache benchmark)."""
    _GOLD_CACHE.clear()
    _sandbox.cache_clear()
    _stop_worker()


# --- spider normalisation: exec_eval.postprocess, parse.remove_distinct, replace_cur_year

_CUR_YEAR = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.IGNORECASE)


def normalise_spider(sql: str) -> str:
    """Rewrite `sql` as test-suite-sql-eval does before executing it (both sides).

    - "> =", "< =", "! =" become ">=", "<=", "!=" (exec_eval.postprocess);
    - every DISTINCT keyword is deleted (parse.remove_distinct, since
      keep_distinct defaults to False) -- also inside aggregates, so
      COUNT(DISTINCT x) counts duplicates; literals and quoted names are kept;
    - MySQL's YEAR(CURDATE()) becomes 2020 (exec_eval.replace_cur_year).
    """
    sql = sql.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")
    sql = "".join(token for token in sql_tokens(sql) if token.lower() != "distinct")
    return _CUR_YEAR.sub("2020", sql)


def gold_orders_rows(normalised_gold: str) -> bool:
    """Row order counts iff the gold text contains "order by" (exec_eval's literal test,
    so "ORDER  BY" with two spaces does not count and an ORDER BY in a subquery does)."""
    return "order by" in normalised_gold.lower()


# --- comparison: mirror of exec_eval.result_eq and helpers


def _unorder_row(row: tuple) -> tuple:
    # exec_eval sorts values by str(value) + str(type): int 1 and float 1.0 may then
    # land in different places, so this pre-check can reject pairs that are equal
    # under Python ==. Mirrored on purpose: it is part of the official verdict.
    return tuple(sorted(row, key=lambda v: str(v) + str(type(v))))


def _quick_reject(gold: list[tuple], pred: list[tuple], order_matters: bool) -> bool:
    """exec_eval.quick_rej negated: True when the rows, each read as a sorted
    bag of values, already differ (as lists if order matters, else as sets)."""
    g = [_unorder_row(row) for row in gold]
    p = [_unorder_row(row) for row in pred]
    return g != p if order_matters else set(g) != set(p)


def _column_candidates(gold: list[tuple], pred: list[tuple]) -> list[set[int]]:
    """For each gold column, the pred columns that may map onto it.

    exec_eval prunes only for more than 3 columns, by 20 random pred rows: a pred
    column whose value is absent from a gold column cannot be that column. The
    pruning is sound, so which rows are sampled never changes the verdict; a fixed
    seed keeps it reproducible.
    """
    n = len(gold[0])
    candidates = [set(range(n)) for _ in range(n)]
    if n <= 3:
        return candidates
    gold_columns = [{row[i] for row in gold} for i in range(n)]
    sample = random.Random(0).choices(pred, k=20)
    for row in sample:
        for g_col in range(n):
            candidates[g_col] = {p for p in candidates[g_col] if row[p] in gold_columns[g_col]}
    return candidates


def _permutations(candidates: list[set[int]]) -> Iterator[tuple[int, ...]]:
    """Injective column maps with perm[i] in candidates[i], by backtracking
    (exec_eval enumerates the product and drops non-permutations: same set)."""
    n = len(candidates)
    perm: list[int] = []

    def extend(i: int) -> Iterator[tuple[int, ...]]:
        if i == n:
            yield tuple(perm)
            return
        for col in sorted(candidates[i] - set(perm)):
            perm.append(col)
            yield from extend(i + 1)
            perm.pop()

    return extend(0)


def _permutation_match(gold: list[tuple], pred: list[tuple], order_matters: bool) -> bool:
    """The core of exec_eval.result_eq, for results of equal, non-zero shape."""
    gold_set, gold_bag = set(gold), Counter(gold)
    for perm in _permutations(_column_candidates(gold, pred)):
        permuted = [tuple(row[i] for i in perm) for row in pred]
        if order_matters:
            if permuted == gold:
                return True
        elif set(permuted) == gold_set and Counter(permuted) == gold_bag:
            return True
    return False


def spider_result_eq(gold: list[tuple], pred: list[tuple], order_matters: bool) -> bool:
    """exec_eval.result_eq: is there a column permutation of `pred` equal to `gold`?

    Equal means the same bag of rows (duplicates count), and additionally the
    same row sequence when `order_matters`. Two empty results are equal; one
    empty and one not, different row counts or different column counts are not.
    """
    if not gold and not pred:
        return True
    if len(gold) != len(pred) or len(gold[0]) != len(pred[0]):
        return False
    return not _quick_reject(gold, pred, order_matters) and _permutation_match(gold, pred, order_matters)


def set_result_eq(gold: list[tuple], pred: list[tuple]) -> bool:
    """`set` mode: same set of rows, columns in the same order; duplicates and order ignored."""
    return set(gold) == set(pred)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _mismatch(gold: list[tuple], pred: list[tuple], mode: Mode, order_matters: bool) -> tuple[str, str]:
    """(reason, category) for two results that did not match in `mode`."""
    if mode == "set":
        n_gold, n_pred, noun = len(set(gold)), len(set(pred)), "distinct row"
    else:
        n_gold, n_pred, noun = len(gold), len(pred), "row"
    if n_gold != n_pred:
        return f"{_count(n_pred, noun)} vs {_count(n_gold, noun)} (prediction vs gold)", "row_count"
    if gold and pred and len(gold[0]) != len(pred[0]):
        counts = f"{_count(len(pred[0]), 'column')} vs {_count(len(gold[0]), 'column')}"
        return f"{counts} (prediction vs gold)", "wrong_result"
    if mode == "spider" and _permutation_match(gold, pred, order_matters):
        return (
            "equal only across int/real types (1 vs 1.0), which exec_eval's pre-check rejects",
            "wrong_result",
        )
    if mode == "spider" and order_matters and spider_result_eq(gold, pred, order_matters=False):
        return "same rows in a different order (gold has ORDER BY)", "wrong_result"
    return "different values", "wrong_result"


def _compare(gold: QueryResult, pred: QueryResult, mode: Mode, gold_text: str) -> tuple[str, str]:
    """(reason, category) for two successful results; reason "match" on a match."""
    order_matters = mode == "spider" and gold_orders_rows(gold_text)
    matched = (
        spider_result_eq(gold.rows, pred.rows, order_matters)
        if mode == "spider"
        else set_result_eq(gold.rows, pred.rows)
    )
    return ("match", "match") if matched else _mismatch(gold.rows, pred.rows, mode, order_matters)


def _judge(
    db_path: Path | None,
    gold_sql: str,
    raw_output: str,
    extracted: str,
    mode: Mode,
    timeout_s: float,
    row_cap: int,
) -> tuple[str, str, int | None, int | None]:
    """(reason, category, gold_rows, pred_rows) for one pair; see `score_pair`."""
    if db_path is None or not db_path.is_file():
        return f"database missing: {db_path}", "skipped", None, None
    if mode == "spider":
        gold_text, pred_text = normalise_spider(gold_sql), normalise_spider(extracted)
    else:
        gold_text, pred_text = gold_sql, extracted
    gold = _execute_gold(db_path.absolute(), gold_text, timeout_s, row_cap)
    if gold.rows is None:
        return f"gold failed: {gold.error}", "gold_error", None, None
    if not extracted:
        reason = "empty prediction" if not raw_output.strip() else "no SQL found in output"
        return reason, "empty", len(gold.rows), None
    pred = execute_query(db_path, pred_text, timeout_s, row_cap)
    if pred.rows is None:
        category = "timeout" if pred.timed_out else "exec_error"
        return f"prediction failed: {pred.error}", category, len(gold.rows), None
    reason, category = _compare(gold, pred, mode, gold_text)
    return reason, category, len(gold.rows), len(pred.rows)


def check_limits(timeout_s: float, row_cap: int) -> None:
    """Refuse limits that would fail every query: ``timeout_s`` > 0 seconds, ``row_cap`` >= 1 row.

    Raises ``ValueError`` naming the setting (a configuration error, not a model output).
    """
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(f"timeout_s must be a number of seconds > 0, not {timeout_s!r}")
    if isinstance(row_cap, bool) or not isinstance(row_cap, int) or row_cap < 1:
        raise ValueError(f"row_cap must be a whole number of rows >= 1, not {row_cap!r}")


def score_pair(
    db_path: Path | str | None,
    gold_sql: str,
    raw_output: str,
    mode: Mode = "spider",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    row_cap: int = DEFAULT_ROW_CAP,
    sql_block: SqlBlock = "first",
) -> ScoreResult:
    """Score one model output against its gold query on one database.

    The SQL is the first statement `extract_sql` takes from `raw_output`'s first or last
    SQL block (`sql_block`, config generation.sql_block) (any
    further statements are counted in `ignored_statements`, never run); gold and prediction
    run in the sandbox (`execute_query`; gold results are cached per database
    and query), and the results are compared in `mode` (see the module doc).
    A missing database is "skipped"; a failing gold query, an empty or failing
    prediction and a different result are "failure" with score 0.0; a match is
    "success" with score 1.0. Never raises for bad SQL on either side.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    check_limits(timeout_s, row_cap)
    start = time.monotonic()
    statements = extract_statements(raw_output, sql_block)
    extracted = statements[0] if statements else ""
    path = None if db_path is None else Path(db_path)
    reason, category, gold_rows, pred_rows = _judge(path, gold_sql, raw_output, extracted, mode, timeout_s, row_cap)
    status: Status = {"match": "success", "skipped": "skipped"}.get(category, "failure")
    return ScoreResult(
        extracted_sql=extracted,
        score=1.0 if status == "success" else 0.0,
        status=status,
        reason=reason,
        category=category,
        gold_rows=gold_rows,
        pred_rows=pred_rows,
        seconds=time.monotonic() - start,
        ignored_statements=max(len(statements) - 1, 0),
    )


def _score_item(item: dict, mode: Mode, timeout_s: float, row_cap: int, sql_block: SqlBlock) -> ScoreResult:
    return score_pair(item["db_path"], item["gold_sql"], item["raw_output"], mode, timeout_s, row_cap, sql_block)


def score_items(
    items: Sequence[dict],
    n_workers: int = 1,
    mode: Mode = "spider",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    row_cap: int = DEFAULT_ROW_CAP,
    sql_block: SqlBlock = "first",
) -> list[ScoreResult]:
    """`score_pair` over items {"db_path", "gold_sql", "raw_output"}, in input order.

    With n_workers > 1 the items are spread over that many threads, each with
    its own query worker process (`execute_query`), so that many queries run
    at once; extraction and comparison share this process. Every query is
    bounded by its worker's kill, so no item can hang the others.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    score = functools.partial(
        _score_item, mode=mode, timeout_s=timeout_s, row_cap=row_cap, sql_block=check_sql_block(sql_block)
    )
    if n_workers <= 1 or len(items) < 2:
        return [score(item) for item in items]
    with ThreadPoolExecutor(n_workers) as pool:
        return list(pool.map(score, items))
