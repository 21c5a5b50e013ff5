"""Benchmark: execution-accuracy scoring of all Spider dev questions, twice.

Pass 1 scores each gold query against itself, pass 2 against a mutated gold
(`mutate` below: dropped ORDER BY, added DISTINCT, changed literal, extra
LIMIT, swapped select columns, in turn). Both passes go through the same
`score_predictions` the workflow uses, each with cold caches (no gold result
or open connection from an earlier pass), and the figure is pairs/s.

    python bench/bench_scoring.py --spider-dir ../shared/data/spider --workers 2
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lora_tradeoff.files import write_json  # noqa: E402
from lora_tradeoff.spider.execution import clear_caches  # noqa: E402
from lora_tradeoff.spider.scoring import score_predictions, summarize_scores  # noqa: E402


def drop_order_by(sql: str) -> str | None:
    out = re.sub(r"\s+ORDER\s+BY\s+.*?(?=\s+LIMIT\b|\)|$)", "", sql, count=1, flags=re.I | re.S)
    return out if out != sql else None


def add_distinct(sql: str) -> str | None:
    if re.match(r"\s*SELECT\s+DISTINCT\b", sql, re.I):
        return None
    return re.sub(r"^\s*SELECT\b", "SELECT DISTINCT", sql, count=1, flags=re.I)


def change_literal(sql: str) -> str | None:
    out = re.sub(r"(?<![\w.])(\d+)(?![\w.])", lambda m: str(int(m.group(1)) + 1), sql, count=1)
    if out == sql:
        out = re.sub(r"'([^']*)'", r"'\1x'", sql, count=1)
    return out if out != sql else None


def add_limit(sql: str) -> str | None:
    return None if re.search(r"\bLIMIT\b", sql, re.I) else f"{sql.rstrip().rstrip(';')} LIMIT 1"


def swap_columns(sql: str) -> str | None:
    match = re.match(r"(\s*SELECT\s+)([^,()]+?),\s*([^,()]+?)(\s+FROM\b.*)", sql, re.I | re.S)
    if not match:
        return None
    head, first, second, rest = match.groups()
    return f"{head}{second}, {first}{rest}"


MUTATIONS: tuple[Callable[[str], str | None], ...] = (
    drop_order_by,
    add_distinct,
    change_literal,
    add_limit,
    swap_columns,
)


def mutate(sql: str, index: int) -> str:
    """The first mutation that applies, starting at MUTATIONS[index % 5]."""
    for k in range(len(MUTATIONS)):
        out = MUTATIONS[(index + k) % len(MUTATIONS)](sql)
        if out is not None:
            return out
    return f"{sql} LIMIT 0"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spider-dir", type=Path, default=REPO.parent / "shared/data/spider")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout-s", type=float, default=10.0)
    parser.add_argument("--json-out", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    dev = json.loads((args.spider_dir / "dev.json").read_text())
    items = [
        {"id": f"dev-{i:04d}", "db_id": x["db_id"], "question": x["question"], "query": x["query"], "sql": x["sql"]}
        for i, x in enumerate(dev)
    ]
    databases = {
        x["db_id"]: str(path)
        if (path := args.spider_dir / "database" / x["db_id"] / f"{x['db_id']}.sqlite").exists()
        else None
        for x in dev
    }
    passes = {
        "gold": [{"id": it["id"], "raw_output": it["query"]} for it in items],
        "mutated": [{"id": it["id"], "raw_output": mutate(it["query"], i)} for i, it in enumerate(items)],
    }
    total = 0.0
    report: dict = {"workers": args.workers}
    for name, predictions in passes.items():
        clear_caches()
        start = time.perf_counter()
        frame = score_predictions(items, predictions, databases, timeout_s=args.timeout_s, n_workers=args.workers)
        seconds = time.perf_counter() - start
        total += seconds
        summary = summarize_scores(frame)
        print(
            f"{name:8s} {len(items)} pairs in {seconds:.2f} s = {len(items) / seconds:.0f} pairs/s "
            f"(EX {summary['ex']:.3f} over {summary['n_scored']}, {summary['skipped']} skipped)"
        )
        report[name] = {"pairs": len(items), "seconds": round(seconds, 2), "ex": round(summary["ex"], 4)}
    pairs = len(items) * len(passes)
    print(f"total    {pairs} pairs in {total:.2f} s = {pairs / total:.0f} pairs/s with {args.workers} workers")
    report.update(pairs=pairs, seconds=round(total, 2), pairs_per_s=round(pairs / total))
    if args.json_out:
        write_json(args.json_out, report)
    return report


if __name__ == "__main__":
    main()
