"""Logging for rule scripts: everything a rule prints goes to its Snakemake log file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def rule_logger(log_path: str | Path, name: str) -> logging.Logger:
    """Send stderr (tracebacks, library warnings) and a timestamped logger to ``log_path``."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    sys.stderr = open(log_path, "w", buffering=1)  # line-buffered: progress is visible while the rule runs
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    return logging.getLogger(name)
