"""Spider acquisition from each source, on real Spider files."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import zipfile
from pathlib import Path

import pytest

from lora_tradeoff.spider.data import SpiderSourceError, acquire_spider

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "data" / "spider_demo"


def read(path: Path):
    return json.loads(path.read_text())


def rows(db_path: str, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return sorted(conn.execute(sql).fetchall(), key=repr)


def test_bundled_databases_rebuild_to_the_same_answers(tmp_path, spider_dir):
    counts = acquire_spider({"source": "bundled", "bundle_dir": str(BUNDLE)}, tmp_path)
    assert counts == {"dev": 167, "train": 300, "schemas": 115, "databases": 4, "missing_databases": 0}
    databases = read(tmp_path / "databases.json")
    dev = read(tmp_path / "dev.json")
    for item in dev:  # every bundled gold query gives the official database's answer
        original = spider_dir / "database" / item["db_id"] / f"{item['db_id']}.sqlite"
        assert rows(databases[item["db_id"]]["path"], item["query"]) == rows(str(original), item["query"])
    official = read(spider_dir / "dev.json")
    assert all(official[int(item["id"][4:])]["question"] == item["question"] for item in dev)


def test_dir_source_reports_the_missing_database(tmp_path, spider_dir):
    counts = acquire_spider({"source": "dir", "dir": str(spider_dir)}, tmp_path)
    assert counts == {"dev": 1034, "train": 7000, "schemas": 166, "databases": 19, "missing_databases": 1}
    databases = read(tmp_path / "databases.json")
    assert databases["wta_1"]["path"] is None and "database missing" in databases["wta_1"]["missing"]
    assert read(tmp_path / "dev.json")[429]["id"] == "dev-0429"


def _official_zip(spider_dir: Path, target: Path) -> str:
    with zipfile.ZipFile(target, "w") as archive:
        for name in ("dev.json", "train_spider.json", "tables.json"):
            archive.write(spider_dir / name, f"spider/{name}")
        archive.write(spider_dir / "database/pets_1/pets_1.sqlite", "spider/database/pets_1/pets_1.sqlite")
    return hashlib.sha256(target.read_bytes()).hexdigest()


def test_zip_source_checks_sha256(tmp_path, spider_dir):
    sha = _official_zip(spider_dir, tmp_path / "spider.zip")
    url = (tmp_path / "spider.zip").as_uri()
    counts = acquire_spider({"source": "zip", "url": url, "sha256": sha}, tmp_path / "out")
    assert counts["dev"] == 1034 and counts["databases"] == 1 and counts["missing_databases"] == 19
    with pytest.raises(SpiderSourceError, match="config.spider.sha256: .* expected 0{64}"):
        acquire_spider({"source": "zip", "url": url, "sha256": "0" * 64}, tmp_path / "bad")


def test_hf_source_reads_a_dataset_folder(tmp_path, spider_dir):
    # The same load_dataset call that takes a hub id takes a local dataset folder.
    folder = tmp_path / "spider_hf"
    folder.mkdir()
    dev = read(spider_dir / "dev.json")[:20]
    train = read(spider_dir / "train_spider.json")[:30]
    for name, items in (("validation", dev), ("train", train)):
        with open(folder / f"{name}.jsonl", "w") as handle:
            for item in items:
                handle.write(json.dumps({k: item[k] for k in ("db_id", "question", "query")}) + "\n")
    source = {
        "source": "hf",
        "hf_id": str(folder),
        "tables": str(spider_dir / "tables.json"),
        "database_dir": str(spider_dir / "database"),
    }
    counts = acquire_spider(source, tmp_path / "out")
    assert counts["dev"] == 20 and counts["train"] == 30
    assert read(tmp_path / "out" / "dev.json")[3]["query"] == dev[3]["query"]
