"""MMLU per-question rows for the report tests: what score_mmlu writes, for chosen outcomes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lora_tradeoff.stats import regression_table


def mmlu_scored_frame(
    correct: np.ndarray,
    subjects: Sequence[str],
    categories: Sequence[str],
    probs: np.ndarray | float = 0.25,
    truncated_tokens: Sequence[int] | int = 0,
) -> pd.DataFrame:
    """One row per question, as in ``mmlu_scored.csv``; a wrong answer predicts A (B where gold is A);
    ``truncated_tokens``: tokens dropped from each prompt's left (0: it fit the context)."""
    n = len(correct)
    gold = [("A", "B", "C", "D")[i % 4] for i in range(n)]
    columns = np.broadcast_to(probs, (n, 4))
    return pd.DataFrame(
        {
            "id": [f"mmlu-{i:03d}" for i in range(n)],
            "subject": list(subjects),
            "category": list(categories),
            "gold": gold,
            "prediction": [g if ok else "A" if g != "A" else "B" for g, ok in zip(gold, correct, strict=True)],
            **{f"prob_{letter}": columns[:, j] for j, letter in enumerate("ABCD")},
            "correct": correct,
            "parse_failed": False,
            "completion": "",
            "truncated_tokens": np.broadcast_to(truncated_tokens, (n,)),
        }
    )


def write_mmlu_tables(root: Path, frames: Mapping[str, pd.DataFrame]) -> None:
    """Each model's ``<root>/<model>/mmlu_scored.csv`` and the regression table against ``base``."""
    for model, frame in frames.items():
        frame.to_csv(root / model / "mmlu_scored.csv", index=False)
    (root / "mmlu").mkdir()
    regression_table(frames, base="base", n_resamples=2000, seed=1234).to_csv(
        root / "mmlu" / "regression.csv", index=False
    )
