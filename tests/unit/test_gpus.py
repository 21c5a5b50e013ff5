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
    "os.environ.pop('CUDA_VISIBLE_DEVICES', None) if {visible!r} is None else "
    "os.environ.__setitem__('CUDA_VISIBLE_DEVICES', {visible!r});"
    "print(claim_gpu({lock_dir!r}, gpu_count={count}), os.environ['CUDA_VISIBLE_DEVICES'], flush=True);"
    "sys.stdin.readline()"
)


class Job:
    """A process that claims a card and holds it until told to end (``visible``: its inherited
    CUDA_VISIBLE_DEVICES; None: unset)."""

    def __init__(self, lock_dir: Path, count: int, visible: str | None = None) -> None:
        code = CLAIM.format(root=str(ROOT), lock_dir=str(lock_dir), count=count, visible=visible)
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


def test_a_new_job_goes_to_the_card_that_fewer_jobs_hold(tmp_path):
    # Three jobs on each of two cards; three end, two of them on card 1: card 0 holds two jobs
    # (in its second and third slots) and card 1 one. The next job belongs on card 1.
    jobs = [Job(tmp_path, count=2) for _ in range(6)]
    assert [job.gpu for job in jobs] == ["0", "1", "0", "1", "0", "1"]
    for job in (jobs[0], jobs[3], jobs[5]):
        job.end()
    new = Job(tmp_path, count=2)
    assert new.gpu == "1"
    for job in (jobs[1], jobs[2], jobs[4], new):
        job.end()


def test_jobs_share_out_the_cards_a_scheduler_gave_the_workflow(tmp_path):
    # salloc/srun with two GPUs sets CUDA_VISIBLE_DEVICES=2,5 for the whole workflow: each job
    # takes one of those two cards, not both (where it would put everything on the first).
    jobs = [Job(tmp_path, count=8, visible="2,5") for _ in range(3)]
    assert [job.gpu for job in jobs] == ["2", "5", "2"]
    for job in jobs:
        job.end()


@pytest.mark.parametrize("visible", ["", "1", "GPU-8a1c2d3e"])
def test_an_empty_or_single_card_choice_is_kept(tmp_path, monkeypatch, visible):
    # "" hides every card (CUDA then runs nothing on a GPU): a deliberate choice, kept as it is.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert claim_gpu(tmp_path, gpu_count=4) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == visible and list(tmp_path.iterdir()) == []
