"""Acquire Spider: questions, schemas and SQLite databases, from one of four sources.

Every source ends in the same files (see :func:`acquire_spider`):

* ``dev.json`` / ``train.json``: the split's items in the official format, each with
  an ``id`` (``dev-0042`` = index 42 of the official dev.json, stable across subsets);
* ``tables.json``: the official schema entries;
* ``databases.json``: ``db_id -> {"path": ..., "sha256": ...}`` or ``{"path": null,
  "missing": reason}``. A question whose database is missing is later reported as
  skipped, never dropped and never counted as a failure.

Sources (``config.spider.source``):

* ``bundled`` (default): the real Spider subset committed under ``data/spider_demo``
  as text (``sqlite3`` dumps, JSON), rebuilt here into ``.sqlite`` files.
* ``dir``: an unpacked official Spider (dev.json, train_spider.json, tables.json,
  database/<db>/<db>.sqlite); databases are used in place, not copied.
* ``zip``: the official zip by URL (``file://`` works) + sha256, unpacked under results.
* ``hf``: questions from a Hugging Face dataset id (a local dataset folder works the
  same), databases and schemas from ``database_dir`` / ``tables``.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lora_tradeoff.files import sha256_file

DEMO_DEV_DATABASES = ("concert_singer", "pets_1", "poker_player", "orchestra")


class SpiderSourceError(RuntimeError):
    """The configured Spider source is missing or malformed."""


def with_ids(items: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    """Add ``id`` = split + official index, unless the items already carry one."""
    return [{"id": item.get("id") or f"{split}-{index:04d}", **item} for index, item in enumerate(items)]


def _read_json(path: Path, key: str) -> Any:
    if not path.exists():
        raise SpiderSourceError(f"{key}: {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SpiderSourceError(f"{key}: {path} is not valid JSON ({error})") from error


def locate_databases(db_ids: Iterable[str], database_dir: Path) -> dict[str, dict[str, Any]]:
    """Map each db_id to its ``database_dir/<db>/<db>.sqlite`` or to a missing entry."""
    located: dict[str, dict[str, Any]] = {}
    for db_id in sorted(set(db_ids)):
        path = database_dir / db_id / f"{db_id}.sqlite"
        if path.exists():
            located[db_id] = {"path": str(path.resolve()), "sha256": sha256_file(path)}
        else:
            located[db_id] = {"path": None, "missing": f"database missing: {path}"}
    return located


def read_spider_dir(spider_dir: Path) -> dict[str, Any]:
    """Read an unpacked official Spider folder (train_others.json is added when present)."""
    spider_dir = Path(spider_dir)
    train = _read_json(spider_dir / "train_spider.json", "config.spider.dir")
    if (spider_dir / "train_others.json").exists():
        train += _read_json(spider_dir / "train_others.json", "config.spider.dir")
    return {
        "dev": with_ids(_read_json(spider_dir / "dev.json", "config.spider.dir"), "dev"),
        "train": with_ids(train, "train"),
        "tables": _read_json(spider_dir / "tables.json", "config.spider.dir"),
        "database_dir": spider_dir / "database",
    }


def rebuild_databases(dump_dir: Path, out_dir: Path) -> None:
    """Turn each ``<db>.sql`` dump into ``out_dir/<db>/<db>.sqlite``."""
    for dump in sorted(Path(dump_dir).glob("*.sql")):
        target = out_dir / dump.stem / f"{dump.stem}.sqlite"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        with sqlite3.connect(target) as conn:
            conn.executescript(dump.read_text())
        conn.close()


def read_bundled(bundle_dir: Path, database_out: Path) -> dict[str, Any]:
    bundle_dir = Path(bundle_dir)
    rebuild_databases(bundle_dir / "databases", database_out)
    return {
        "dev": _read_json(bundle_dir / "dev_subset.json", "config.spider.bundle_dir"),
        "train": _read_json(bundle_dir / "train_subset.json", "config.spider.bundle_dir"),
        "tables": _read_json(bundle_dir / "tables_subset.json", "config.spider.bundle_dir"),
        "database_dir": database_out,
    }


def download(url: str, sha256: str, dest: Path) -> Path:
    """Download ``url`` (http(s) or file://) to ``dest`` and check its sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as error:
        raise SpiderSourceError(f"config.spider.url: cannot download {url}: {error}") from error
    actual = sha256_file(partial)
    if actual != sha256.lower():
        partial.unlink()
        raise SpiderSourceError(
            f"config.spider.sha256: {url} has sha256 {actual}, expected {sha256}. Fix the pin or the URL."
        )
    partial.rename(dest)
    return dest


def read_zip(url: str, sha256: str, work_dir: Path) -> dict[str, Any]:
    archive = download(url, sha256, work_dir / "spider.zip")
    unpacked = work_dir / "unpacked"
    shutil.rmtree(unpacked, ignore_errors=True)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(unpacked)
    candidates = sorted(p.parent for p in unpacked.rglob("dev.json") if "__MACOSX" not in p.parts)
    if not candidates:
        raise SpiderSourceError(f"config.spider.url: {url} holds no dev.json")
    return read_spider_dir(candidates[0])


def read_hf(dataset_id: str, revision: str | None, tables: Path, database_dir: Path) -> dict[str, Any]:
    """Questions from a Hugging Face dataset (id or local folder); schemas and DBs from disk."""
    from datasets import load_dataset

    dataset = load_dataset(dataset_id, revision=revision)
    splits = {"train": "train", "dev": "validation" if "validation" in dataset else "dev"}
    if splits["dev"] not in dataset or "train" not in dataset:
        raise SpiderSourceError(
            f"config.spider.hf_id: {dataset_id} has splits {list(dataset)}, expected train and validation"
        )
    keep = ("db_id", "question", "query", "sql")
    data = {
        name: with_ids([{k: row[k] for k in keep if k in row} for row in dataset[split]], name)
        for name, split in splits.items()
    }
    data["tables"] = _read_json(Path(tables), "config.spider.tables")
    data["database_dir"] = Path(database_dir)
    return data


def acquire_spider(source: dict[str, Any], out_dir: Path) -> dict[str, int]:
    """Acquire Spider as configured and write the normalised files into ``out_dir``."""
    out_dir = Path(out_dir)
    kind = source["source"]
    if kind == "bundled":
        data = read_bundled(Path(source["bundle_dir"]), out_dir / "database")
    elif kind == "dir":
        data = read_spider_dir(Path(source["dir"]))
    elif kind == "zip":
        data = read_zip(source["url"], source["sha256"], out_dir / "download")
    elif kind == "hf":
        data = read_hf(source["hf_id"], source.get("revision"), source["tables"], source["database_dir"])
    else:  # unreachable through the schema's enum
        raise SpiderSourceError(f"config.spider.source: unknown source {kind!r}")

    databases = locate_databases((item["db_id"] for item in data["dev"]), Path(data["database_dir"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "dev.json").write_text(json.dumps(data["dev"], indent=1))
    (out_dir / "train.json").write_text(json.dumps(data["train"], indent=1))
    (out_dir / "tables.json").write_text(json.dumps(data["tables"], indent=1))
    (out_dir / "databases.json").write_text(json.dumps(databases, indent=2))
    missing = sorted(db for db, entry in databases.items() if entry["path"] is None)
    return {
        "dev": len(data["dev"]),
        "train": len(data["train"]),
        "schemas": len(data["tables"]),
        "databases": len(databases) - len(missing),
        "missing_databases": len(missing),
    }


def build_demo_bundle(
    spider_dir: Path,
    out_dir: Path,
    dev_databases: Iterable[str] = DEMO_DEV_DATABASES,
    n_train: int = 300,
    seed: int = 0,
) -> None:
    """Write the committed demo subset from a full Spider folder.

    Dev: every question of ``dev_databases`` (official format, with ids), and their
    databases as ``sqlite3`` dumps. Train: ``n_train`` questions sampled with ``seed``,
    plus the ``tables.json`` entries of every database used.
    """
    full = read_spider_dir(spider_dir)
    dev_databases = tuple(dev_databases)
    dev = [item for item in full["dev"] if item["db_id"] in dev_databases]
    train = sorted(random.Random(seed).sample(full["train"], n_train), key=lambda item: item["id"])
    used = {item["db_id"] for item in dev + train}
    tables = [entry for entry in full["tables"] if entry["db_id"] in used]

    out_dir = Path(out_dir)
    (out_dir / "databases").mkdir(parents=True, exist_ok=True)
    for db_id in dev_databases:
        source = Path(full["database_dir"]) / db_id / f"{db_id}.sqlite"
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as conn:
            dump = "\n".join(conn.iterdump())
        conn.close()
        (out_dir / "databases" / f"{db_id}.sql").write_text(dump + "\n")
    (out_dir / "dev_subset.json").write_text(json.dumps(dev, indent=1) + "\n")
    (out_dir / "train_subset.json").write_text(json.dumps(train, indent=1) + "\n")
    (out_dir / "tables_subset.json").write_text(json.dumps(tables, indent=1) + "\n")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Build the bundled Spider demo subset from a full Spider dir")
    parser.add_argument("--spider-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("data/spider_demo"))
    args = parser.parse_args()
    build_demo_bundle(args.spider_dir, args.out)
