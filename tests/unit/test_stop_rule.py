"""generate_sql's stop rule (`SqlStop`) on token streams of the default model's real tokenizer.

Each stream is a whole answer as a model would write it, fed to the rule one token more at a
time, as the engine does; the rule must stop where the answer's SQL is complete (issue 31, kinds
4-7) and never before, and the saved text must still score.
"""

from __future__ import annotations

import pytest

from lora_tradeoff.spider.extraction import extract_sql
from lora_tradeoff.spider.generation import SqlStop

SINGERS = "SELECT count(*) FROM singer"
DRAFT = "SELECT name FROM singer"
TAIL = "\nThat is all. SELECT 99;\nMore text after the answer"


@pytest.fixture(scope="module")
def tokenizer(base_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model_dir)


def stop_rule(tokenizer, sql_block: str = "first", max_new_tokens: int = 512) -> SqlStop:
    class Config:
        eos_token_id = tokenizer.eos_token_id

    class Model:
        generation_config = Config()

    return SqlStop(Model(), tokenizer, max_new_tokens, sql_block)


def first_stop(rule: SqlStop, ids: list[int]) -> tuple[list[int], str, str]:
    """The rule's answer at the first prefix of `ids` where it stops (the engine's view)."""
    for n in range(1, len(ids) + 1):
        stop = rule.check(ids[:n])
        if stop is not None:
            return stop
    raise AssertionError("the stream never stopped")


def stream(tokenizer, text: str) -> list[int]:
    return [*tokenizer.encode(text, add_special_tokens=False), tokenizer.eos_token_id]


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        # harmony: the draft's ';' in the analysis channel ends nothing; the final one does
        (
            f"<|channel|>analysis<|message|>Maybe {DRAFT};\nNo, count them.<|end|><|start|>assistant"
            f"<|channel|>final<|message|>{SINGERS};\n",
            f"<|channel|>analysis<|message|>Maybe {DRAFT};\nNo, count them.<|end|><|start|>assistant"
            f"<|channel|>final<|message|>{SINGERS};",
        ),
        # ~~~ fences close the block as ``` fences do
        (f"~~~sql\n{SINGERS}\n~~~\n{TAIL}", f"~~~sql\n{SINGERS}\n~~~"),
        (f"~~~~\n{SINGERS}\n~~~~{TAIL}", f"~~~~\n{SINGERS}\n~~~~"),
        # a fence without SQL (a schema excerpt, a plan) does not end the answer
        (
            f"```\nsinger(singer_id, name, age)\n```\nSo:\n```sql\n{SINGERS}\n```{TAIL}",
            f"```\nsinger(singer_id, name, age)\n```\nSo:\n```sql\n{SINGERS}\n```",
        ),
        (
            f"~~~text\nCount the rows of singer\n~~~\n```sql\n{SINGERS}\n```{TAIL}",
            f"~~~text\nCount the rows of singer\n~~~\n```sql\n{SINGERS}\n```",
        ),
        # an instruct model's plain answer still stops at once (sql_block first, the default)
        (f"{SINGERS};\n{TAIL}", f"{SINGERS};"),
        (f"```sql\n{SINGERS}\n```\n{TAIL}", f"```sql\n{SINGERS}\n```"),
    ],
)
def test_the_stop_rule_waits_for_the_sql_and_stops_after_it(tokenizer, answer, kept):
    ids, text, reason = first_stop(stop_rule(tokenizer), stream(tokenizer, answer))
    assert (text, reason) == (kept, "statement_end")
    assert tokenizer.decode(ids) == kept
    assert extract_sql(text) == SINGERS


@pytest.mark.parametrize(
    "answer",
    [
        "<|channel|>analysis<|message|>SELECT name FROM singer;\nthen count<|end|>",
        "```\nsinger(singer_id, name, age)\n```\nThinking about it\n",
        "~~~\nno sql here\n~~~\n",
    ],
)
def test_drafts_and_fences_without_sql_run_to_eos(tokenizer, answer):
    _, text, reason = first_stop(stop_rule(tokenizer), stream(tokenizer, answer))
    assert (text, reason) == (answer, "eos")


CHAIN_OF_THOUGHT = (
    f"Let me draft it.\n```sql\n{DRAFT};\n```\nWait, the question asks how many.\n```sql\n{SINGERS};\n```\nDone."
)


def test_sql_block_last_lets_a_reasoning_model_finish(tokenizer):
    ids = stream(tokenizer, CHAIN_OF_THOUGHT)
    _, first_text, first_reason = first_stop(stop_rule(tokenizer, "first"), ids)
    assert first_reason == "statement_end" and extract_sql(first_text) == DRAFT
    kept, last_text, last_reason = first_stop(stop_rule(tokenizer, "last"), ids)
    assert (last_text, last_reason, kept) == (CHAIN_OF_THOUGHT, "eos", ids)
    assert extract_sql(last_text, "last") == SINGERS


def test_sql_block_last_stops_at_the_budget(tokenizer):
    ids = tokenizer.encode(CHAIN_OF_THOUGHT, add_special_tokens=False)
    kept, _, reason = first_stop(stop_rule(tokenizer, "last", max_new_tokens=10), ids)
    assert (kept, reason) == (ids[:10], "max_new_tokens")


def test_an_unknown_sql_block_is_refused_naming_the_setting(tokenizer):
    with pytest.raises(ValueError, match="generation.sql_block"):
        stop_rule(tokenizer, "final")


def test_tilde_tokens_are_stop_candidates(tokenizer):
    rule = stop_rule(tokenizer)
    assert set(tokenizer.encode("~~~", add_special_tokens=False)) <= rule.candidates
