"""One GPU per job on a machine with several: the GPU rules run at once, each on its own card.

Snakemake counts GPUs (``--resources gpu=N``, each GPU rule takes ``gpu=1``) but does not say
which card a job may use, so without this every job would take the first one. Each GPU job
claims a card by taking an exclusive ``flock`` on ``<lock_dir>/gpu<i>.lock`` and sets
``CUDA_VISIBLE_DEVICES`` to it before CUDA starts; the lock is held for the life of the process
and the kernel drops it when the process ends, even on a crash, so no stale claim survives.

Where a scheduler already chose the card (SLURM sets ``CUDA_VISIBLE_DEVICES`` for a job with
``--gres=gpu``), nothing is changed; where it gave the whole workflow several (``salloc
--gpus=4``, then Snakemake inside), each job takes one of those. With more jobs than cards
(``--resources gpu`` above the number of cards, on purpose: a 140 GB card holds several of these
jobs), a job shares the card that the fewest running jobs of this workflow hold.
"""

from __future__ import annotations

import fcntl
import os
import re
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
        gpu_count: cards to choose from when ``CUDA_VISIBLE_DEVICES`` is unset (default:
            :func:`visible_gpu_count`).

    The cards are those that ``CUDA_VISIBLE_DEVICES`` lists (``salloc``/``srun`` with several
    GPUs sets it for the whole workflow), or cards ``0 .. gpu_count - 1`` when it is unset.
    Returns the card as set in ``CUDA_VISIBLE_DEVICES``, or ``None`` when nothing was changed:
    the variable names one card or none (``""``: CUDA sees no GPU; a scheduler's or the user's
    choice, kept), or there are fewer than two cards (nothing to choose).

    Each card has slots ``gpu<card>.slot<k>.lock``. Claims are taken one at a time (an exclusive
    lock on ``claim.lock``); the job takes the first free slot of the card whose slots the fewest
    running jobs hold (the lowest-listed card on a tie): a card of its own while there is one,
    else the least-held card.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        cards = [card.strip() for card in visible.split(",") if card.strip()]
    else:
        cards = [str(index) for index in range(visible_gpu_count() if gpu_count is None else gpu_count)]
    if len(cards) < 2:
        return None
    folder = Path(lock_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "claim.lock", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # released when closed
        held, free = {}, {}
        for card in cards:
            held[card], free[card] = _probe_slots(folder, card)
        candidates = [card for card in cards if free[card] is not None]
        chosen = min(candidates, key=lambda card: held[card]) if candidates else None
        for card, handle in free.items():
            if handle is not None and card != chosen:
                handle.close()
    if chosen is None:
        raise RuntimeError(
            f"more than {MAX_JOBS_PER_GPU} jobs per GPU hold the locks in {folder}: lower --resources gpu "
            "(each GPU job takes one) or set CUDA_VISIBLE_DEVICES yourself"
        )
    _HELD.append(free[chosen])
    os.environ["CUDA_VISIBLE_DEVICES"] = chosen
    return chosen


def _probe_slots(folder: Path, card: str) -> tuple[int, IO[str] | None]:
    """How many of ``card``'s slots running jobs hold, and its first free slot, locked (or None).

    Slot files are created in order, so the first missing one ends the card's slots.
    """
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", card)  # GPU-<uuid>, MIG-<uuid>/1/0, ...
    held, first_free = 0, None
    for slot in range(MAX_JOBS_PER_GPU):
        path = folder / f"gpu{name}.slot{slot}.lock"
        if first_free is not None and not path.exists():
            break
        handle = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            held += 1
            continue
        if first_free is None:
            first_free = handle
        else:
            handle.close()  # free: a probe only
    return held, first_free
