"""GPU claiming for jobs that run at once on a machine with several cards (lora_tradeoff.gpus)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lora_tradeoff.gpus import claim_gpu

ROOT = Path(__file__).resolve().parents[2]
CLAIM = (
    "import os, sys; sys.path.insert(0, {root!r}); from lora_tradeoff.gpus import claim_gpu;"
    "os.environ.pop('CUDA_VISIBLE_DEVICES', None);"
    "print(claim_gpu({lock_dir!r}, gpu_count={count}), os.environ['CUDA_VISIBLE_DEVICES'], flush=True);"
    "sys.stdin.readline()"
)


class Job:
    """A process that claims a card and holds it until told to end."""

    def __init__(self, lock_dir: Path, count: int) -> None:
        code = CLAIM.format(root=str(ROOT), lock_dir=str(lock_dir), count=count)
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        claimed, visible = self.process.stdout.readline().split()
        assert claimed == visible
        self.gpu = claimed

    def end(self) -> None:
        self.process.communicate("\n", timeout=30)


def test_jobs_get_their_own_cards_then_share_the_least_held(tmp_path):
    jobs = [Job(tmp_path, count=2) for _ in range(2)]
    assert sorted(job.gpu for job in jobs) == ["0", "1"]
    third = Job(tmp_path, count=2)
    fourth = Job(tmp_path, count=2)
    assert [third.gpu, fourth.gpu] == ["0", "1"]  # one more on each card, not both on the first
    jobs[0].end()  # its card is free again: the kernel dropped the lock with the process
    fifth = Job(tmp_path, count=2)
    assert fifth.gpu == jobs[0].gpu
    for job in [jobs[1], third, fourth, fifth]:
        job.end()


def test_a_card_chosen_by_the_scheduler_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert claim_gpu(tmp_path, gpu_count=4) is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("count", [0, 1])
def test_nothing_to_choose_on_one_card_or_none(tmp_path, monkeypatch, count):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert claim_gpu(tmp_path, gpu_count=count) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
