"""Rule logging: one progress helper, lines in the log file and on the terminal, no progress bars."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from lora_tradeoff.logs import Progress, format_seconds

REPO = Path(__file__).resolve().parents[2]


def test_progress_counts_rate_and_eta_from_where_this_process_started(monkeypatch):
    clock = iter([100.0, 110.0, 130.0])
    monkeypatch.setattr("lora_tradeoff.logs.time.perf_counter", lambda: next(clock))
    lines: list[str] = []
    progress = Progress(total=100, unit="steps", verb="[r16] trained", report=lines.append, done=40)  # resumed at 40
    progress.update(50, "loss 1.2500")  # 10 steps in 10 s: 50 left at 1 step/s
    progress.advance(10)  # 20 steps in 30 s
    assert lines == [
        "[r16] trained 50/100 steps, 1 steps/s, ETA 0:00:50, loss 1.2500",
        "[r16] trained 60/100 steps, 0.667 steps/s, ETA 0:01:00",
    ]
    assert format_seconds(float("nan")) == "?" and format_seconds(3725.4) == "1:02:05"


def test_rule_logger_writes_the_log_file_and_the_terminal_without_progress_bars(tmp_path: Path):
    log_path = tmp_path / "logs" / "job.log"
    script = textwrap.dedent(
        f"""
        import sys
        import lora_tradeoff.model.source  # what get_base_model imports first: no tqdm yet
        from lora_tradeoff.logs import rule_logger

        assert "tqdm" not in sys.modules
        log = rule_logger({str(log_path)!r}, "score_mmlu[base]")
        log.info("scored 2/4 questions")
        print("library warning", file=sys.stderr)
        from tqdm.auto import tqdm  # as transformers' GGUF conversion does
        from transformers.utils import logging as transformers_logging

        assert tqdm(range(3)).disable and not transformers_logging.is_progress_bar_enabled()
        """
    )
    # generate_sql and score_mmlu import transformers before the logger: its bars are switched off directly.
    late = "import transformers; from lora_tradeoff.logs import rule_logger; rule_logger({!r}, 'x'); "
    late += "from transformers.utils import logging; assert not logging.is_progress_bar_enabled()"
    late_proc = subprocess.run(
        [sys.executable, "-c", late.format(str(tmp_path / "late.log"))], capture_output=True, text=True, cwd=REPO
    )
    assert late_proc.returncode == 0, late_proc.stderr
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "score_mmlu[base]: scored 2/4 questions" in proc.stderr  # the terminal
    assert "library warning" not in proc.stderr
    text = log_path.read_text()
    assert "INFO score_mmlu[base]: scored 2/4 questions" in text and "library warning" in text
    assert text.count("scored 2/4") == 1 and "\r" not in text


def test_peak_gpu_memory_reads_torch_and_is_empty_without_cuda(monkeypatch):
    import torch

    from lora_tradeoff.logs import peak_gpu_memory

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert peak_gpu_memory() == ""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 3 * 2**30 + 2**29)
    assert peak_gpu_memory() == "; peak GPU memory 3.50 GiB"
