"""One GPU per job on a machine with several: the GPU rules run at once, each on its own card.

Snakemake counts GPUs (``--resources gpu=N``, each GPU rule takes ``gpu=1``) but does not say
which card a job may use, so without this every job would take the first one. Each GPU job
claims a card by taking an exclusive ``flock`` on ``<lock_dir>/gpu<i>.lock`` and sets
``CUDA_VISIBLE_DEVICES`` to it before CUDA starts; the lock is held for the life of the process
and the kernel drops it when the process ends, even on a crash, so no stale claim survives.

Where a scheduler already chose the card (SLURM sets ``CUDA_VISIBLE_DEVICES`` for a job with
``--gres=gpu``), nothing is changed. With more jobs than cards (``--resources gpu`` above the
number of cards, on purpose: a 140 GB card holds several of these jobs), a job shares the card
that the fewest running jobs of this workflow hold.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path
from typing import IO

DEFAULT_LOCK_DIR = Path(".snakemake/gpu_locks")
MAX_JOBS_PER_GPU = 64

# Lock files held open by this process (closing one would release its claim).
_HELD: list[IO[str]] = []


def visible_gpu_count() -> int:
    """Number of NVIDIA GPUs on this machine, from ``nvidia-smi -L`` (0 where there is none).

    ``nvidia-smi`` rather than ``torch.cuda.device_count()``: the latter may start CUDA, after
    which ``CUDA_VISIBLE_DEVICES`` no longer applies to this process.
    """
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True)
    except (subprocess.SubprocessError, OSError):
        return 0
    return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))


def claim_gpu(lock_dir: Path | str = DEFAULT_LOCK_DIR, gpu_count: int | None = None) -> str | None:
    """Choose this process's GPU and set ``CUDA_VISIBLE_DEVICES`` to it; call before CUDA starts.

    Args:
        lock_dir: folder of the lock files, shared by the jobs of one workflow on one machine.
        gpu_count: cards to choose from (default: :func:`visible_gpu_count`).

    Returns the card's index as set in ``CUDA_VISIBLE_DEVICES``, or ``None`` when nothing was
    changed: the variable was already set (a scheduler's or the user's choice), or the machine has
    fewer than two cards (there is nothing to choose).

    Each card has slots ``gpu<i>.slot<k>.lock``; the job takes the first free slot in the order
    (slot 0 of every card, then slot 1 of every card, ...), that is a card of its own while there
    is one, else the card that the fewest running jobs hold.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return None
    count = visible_gpu_count() if gpu_count is None else gpu_count
    if count < 2:
        return None
    folder = Path(lock_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for slot in range(MAX_JOBS_PER_GPU):
        for index in range(count):
            handle = open(folder / f"gpu{index}.slot{slot}.lock", "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            _HELD.append(handle)
            os.environ["CUDA_VISIBLE_DEVICES"] = str(index)
            return str(index)
    raise RuntimeError(
        f"more than {MAX_JOBS_PER_GPU} jobs per GPU hold the locks in {folder}: lower --resources gpu "
        "(each GPU job takes one) or set CUDA_VISIBLE_DEVICES yourself"
    )
