"""Logging for rule scripts: everything a rule prints goes to its Snakemake log file, and its own
lines (progress included) also to the terminal, named by job."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def rule_logger(log_path: str | Path, name: str) -> logging.Logger:
    """Send stderr (tracebacks, library warnings) and a timestamped logger to ``log_path``.

    The returned logger ``name`` (e.g. ``fine_tune[r16_qv]``) also writes its lines to the
    terminal the job was started from (the process's original stderr), so a long job shows
    which step it is at. Progress bars (tqdm, huggingface_hub, transformers, datasets) are turned off:
    their carriage returns would fill the log file.
    """
    _disable_progress_bars()
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    sys.stderr = open(log_path, "w", buffering=1)  # line-buffered: progress is visible while the rule runs
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format=LOG_FORMAT, force=True)
    logger = logging.getLogger(name)
    if sys.__stderr__ is not None:
        terminal = logging.StreamHandler(sys.__stderr__)
        terminal.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.handlers = [terminal]  # and, through the root logger, the log file
    return logger


def _disable_progress_bars() -> None:
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    # Plain tqdm bars (e.g. transformers' GGUF conversion) read TQDM_* defaults when tqdm is imported.
    os.environ["TQDM_DISABLE"] = "1"
    # Libraries imported before this call read the variables already: switch them off directly.
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()


def format_seconds(seconds: float) -> str:
    """``h:mm:ss``, or ``?`` when unknown (NaN, infinite)."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    """Counts finished units of a job and reports ``{verb} {done}/{total} {unit}, {rate} {unit}/s, ETA h:mm:ss``.

    The rate counts the units done since this object was made (a resumed run starts at
    ``done`` > 0), over wall time; the ETA is the remaining units at that rate. ``report``
    (e.g. a logger's ``info``) receives each line; None reports nothing.
    """

    def __init__(
        self, total: int, unit: str, verb: str, report: Callable[[str], None] | None = None, done: int = 0
    ) -> None:
        self.total, self.unit, self.verb, self.report = total, unit, verb, report
        self.done = self.start_done = done
        self.started = time.perf_counter()

    def advance(self, units: int = 1, note: str = "") -> str:
        """Add ``units`` finished units; report and return the progress line (``note`` appended)."""
        return self.update(self.done + units, note)

    def update(self, done: int, note: str = "") -> str:
        """Set the finished units to ``done``; report and return the progress line (``note`` appended)."""
        self.done = done
        elapsed = time.perf_counter() - self.started
        rate = (done - self.start_done) / elapsed if elapsed > 0 else math.nan
        eta = (self.total - done) / rate if rate > 0 else math.nan
        line = f"{self.verb} {done}/{self.total} {self.unit}, {rate:.3g} {self.unit}/s, ETA {format_seconds(eta)}"
        line += f", {note}" if note else ""
        if self.report is not None:
            self.report(line)
        return line


def peak_gpu_memory() -> str:
    """``"; peak GPU memory X.XX GiB"`` (``torch.cuda.max_memory_allocated``, this process), or ``""``
    where CUDA is not in use: the tail of a GPU rule's last log line."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return ""
    return f"; peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
