"""The phase timer of profiling runs and the per-batch figures it gives (bench_generation --profile-out)."""

from __future__ import annotations

import pytest

from bench.bench_generation import main as bench_generation
from lora_tradeoff.inference.profiling import PhaseTimer, phase, summarize_batch, tokens_needed


class PairStop:
    """Stops once the last two ids are (7, 8) and keeps the 7 (like ';' then a newline), or at ``max_new_tokens``."""

    max_new_tokens = 6

    def check(self, new_ids: list[int]) -> tuple[list[int], str, str] | None:
        if new_ids[-2:] == [7, 8]:
            return new_ids[:-1], "", "statement_end"
        if len(new_ids) >= self.max_new_tokens:
            return new_ids, "", "max_new_tokens"
        return None


def test_tokens_needed_counts_the_token_that_confirms_the_stop():
    stop = PairStop()
    assert tokens_needed(stop, [1, 7, 8, 9, 9], kept=2) == 3
    assert tokens_needed(stop, [1, 2, 3, 4, 5, 6], kept=6) == 6


def test_phase_timer_sums_per_phase_and_per_batch():
    syncs = []
    timer = PhaseTimer(lambda: syncs.append(1))
    with timer.phase("plan"):
        pass
    timer.begin_batch()
    for _ in range(3):
        with phase(timer, "decode_eager"):
            pass
    timer.end_batch({"generated": [[1, 7, 8]], "kept": [2]}, PairStop())
    assert timer.calls == {"plan": 1, "decode_eager": 3} and len(syncs) == 8  # before and after every phase
    (batch,) = timer.batches
    assert batch["needed"] == [3] and batch["phase_calls"] == {"decode_eager": 3}
    assert set(batch["phase_seconds"]) == {"decode_eager"}
    assert all(timer.launch_seconds[name] <= timer.seconds[name] for name in timer.seconds)
    with phase(None, "plan"):  # no timer: nothing recorded anywhere
        pass
    assert timer.calls["plan"] == 1


def test_batch_figures_count_the_slots_left_to_finished_rows():
    """Four rows; after step 2 the two short ones are dropped. A row that needed n tokens is useful in steps 1..n-1.

    Useful slot-steps: 2 + 1 + 0 + 2 = 5 of 5 + 5 + 2 + 2 = 14. Finished rows are a majority in steps 3, 4, 5
    (both rows left had finished), not in steps 1 (1 of 4) and 2 (2 of 4).
    """
    facts = {
        "prefix_tokens": [10, 10, 12, 10],
        "shared_prefix_tokens": [10, 12],
        "suffix_tokens": [6, 5, 5, 3],
        "prefill_runs": [(3, 6), (1, 3)],
        "steps_in_decoder": [5, 5, 2, 2],
        "needed": [3, 2, 1, 3],
        "kept": [3, 2, 1, 2],
        "drops": [(2, 4, 2)],
        "stop_checks": 3,
        "phase_seconds": {"decode_warmup": 0.002, "decode_replay": 0.008, "graph_capture": 0.03, "prefill": 0.5},
        "phase_calls": {"decode_warmup": 1, "decode_replay": 4, "graph_capture": 1, "prefill": 1},
    }
    figures = summarize_batch(facts)
    assert figures["rows"] == 4 and figures["prompt_tokens"] == 61 and figures["own_prompt_tokens"] == 19
    assert (figures["shared_prefixes"], figures["shared_prefix_tokens"]) == (2, 22)
    assert (figures["prefill_forwards"], figures["prefill_padded_tokens"]) == (2, 21)
    assert (figures["new_tokens_kept"], figures["new_tokens_needed"], figures["max_needed"]) == (8, 9, 3)
    assert (figures["decode_steps"], figures["slot_steps"]) == (5, 14)
    assert figures["wasted_slot_share"] == pytest.approx(9 / 14, abs=1e-4)
    assert figures["steps_mostly_finished"] == 3
    assert figures["decode_ms_per_step"] == pytest.approx(2.0)  # warm-up and replays; the capture apart
    assert (figures["graph_captures"], figures["graph_capture_seconds"]) == (1, 0.03)
    assert figures["row_drops"] == [[2, 4, 2]]


def test_profile_out_that_is_a_folder_is_refused_before_the_model_loads(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench_generation(["--model-dir", str(tmp_path / "absent"), "--profile-out", str(tmp_path)])
    assert "is a folder" in capsys.readouterr().err
