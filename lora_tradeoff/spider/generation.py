"""Greedy SQL generation for the base model and every LoRA adapter: prompts, the SQL stop rule, result rows.

The batched engine it runs on (length batching, shared-prefix keys/values,
cascade attention, CUDA-graph decoding) is `lora_tradeoff.inference.engine`;
`generate_sql` turns chat prompts into token ids, runs
`BatchedEngine.generate_until` with the stop rule `SqlStop`, and writes one
row per prompt. Its tokens are those of ``model.generate(do_sample=False)`` run
on one prompt at a time, cut at the first stop (see `stop_point`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lora_tradeoff.inference.engine import BatchedEngine
from lora_tradeoff.inference.profiling import PhaseTimer, phase
from lora_tradeoff.logs import Progress
from lora_tradeoff.model.token_ids import encode_texts, end_of_turn_ids, pad_token_id
from lora_tradeoff.spider.extraction import SqlBlock, check_sql_block, sql_fence_end, statement_terminator


class PromptTooLongError(ValueError):
    """A prompt plus the generation budget does not fit the model's context."""


class MissingChatTemplateError(ValueError):
    """The tokenizer cannot turn chat messages into a prompt."""


# ---------------------------------------------------------------------------
# Prompts


def encode_prompts(tokenizer: Any, prompt_rows: Sequence[dict]) -> list[list[int]]:
    """Token ids of each row's ``messages`` exactly as ``apply_chat_template(messages, add_generation_prompt=True)``.

    The template is rendered to text and the texts are tokenized in one batch
    (that is what ``apply_chat_template(tokenize=True)`` does per prompt, so the
    ids are the same; the batch call is several times faster on 1000 prompts).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise MissingChatTemplateError(
            f"The tokenizer of {tokenizer.name_or_path!r} has no chat template, so chat messages cannot be "
            "turned into a prompt. Use an instruction-tuned model whose checkpoint ships one "
            "(chat_template.jinja or tokenizer_config.json 'chat_template'), i.e. change config.model."
        )
    texts = [
        tokenizer.apply_chat_template(row["messages"], add_generation_prompt=True, tokenize=False)
        for row in prompt_rows
    ]
    return encode_texts(tokenizer, texts)


def check_prompt_lengths(
    prompt_ids: Sequence[Sequence[int]], row_ids: Sequence[str], context_length: int, max_new_tokens: int
) -> None:
    """Fail before any generation when a prompt leaves no room for ``max_new_tokens`` in the context."""
    limit = context_length - max_new_tokens
    for row_id, ids in zip(row_ids, prompt_ids, strict=True):
        if len(ids) > limit:
            raise PromptTooLongError(
                f"Prompt {row_id} has {len(ids)} tokens, but the model's context of {context_length} tokens "
                f"minus generation.max_new_tokens={max_new_tokens} leaves {limit}. Lower prompt.max_seq_len "
                "(fewer schema tables / shorter examples) or generation.max_new_tokens in the config."
            )


# ---------------------------------------------------------------------------
# Stops


def stop_point(
    new_ids: Sequence[int],
    eos_ids: frozenset[int],
    decode: Callable[[Sequence[int]], str],
    complete: bool,
    sql_block: SqlBlock = "first",
) -> tuple[int, str, str] | None:
    """Where generation of one sequence stops: ``(tokens kept, text kept, reason)``, or None to go on.

    Reasons, earliest in the text wins:

    * ``statement_end`` (only with ``sql_block`` "first"): a ';' followed by a newline, or the
      code fence that closes a block holding SQL (`statement_end`). The kept text ends with
      the ';' or the fence; the kept tokens end with the token that completes it. With
      ``sql_block`` "last" a reasoning model may write a draft and then its final query, so
      only eos and the budget stop it.
    * ``eos``: an end-of-turn token. It counts as a kept token, its text is dropped.
    * ``max_new_tokens``: ``complete`` says the budget is spent.
    """
    eos_at = next((i for i, token in enumerate(new_ids) if token in eos_ids), None)
    body = new_ids if eos_at is None else new_ids[:eos_at]
    text = decode(body)
    end = statement_end(text) if sql_block == "first" else None
    if end is not None:
        kept = next(n for n in range(1, len(body) + 1) if decode(body[:n]).startswith(text[:end]))
        return kept, text[:end], "statement_end"
    if eos_at is not None:
        return eos_at + 1, text, "eos"
    if complete:
        return len(new_ids), text, "max_new_tokens"
    return None


def statement_end(text: str) -> int | None:
    """Character offset just after the first statement terminator in ``text``, or None.

    A terminator is a ';' that a newline follows and that ends the answer's
    first statement as SQL reads it (`extraction.statement_terminator`, the
    lexing extraction uses: a ';' inside a string literal, quoted identifier,
    ``--`` or ``/* */`` comment, a reasoning block or a harmony analysis message ends
    nothing), or the ``` or ~~~ fence that closes a block holding a statement
    (`extraction.sql_fence_end`: a fence without SQL, such as a schema excerpt, ends
    nothing). A ';' at the very end is not one yet: the next token may still be a newline, or an eos.
    """
    ends = [end for end in (statement_terminator(text), sql_fence_end(text)) if end is not None]
    return min(ends, default=None)


_STOP_CHARACTERS = (";", "`", "~")
_BYTE_STOPS = ("<0x3B>", "<0x60>", "<0x7E>")


def _stop_candidates(tokenizer: Any) -> frozenset[int]:
    """Token ids whose text holds a ';', a backtick or a tilde: only a sequence with one of them
    can reach a statement end."""
    vocabulary = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    # Byte-level BPE and SentencePiece pieces spell ';' and '`' as themselves; SentencePiece's
    # byte-fallback pieces (Mistral, Llama-2) spell them <0x3B>, <0x60> and <0x7E>.
    return frozenset(
        i
        for i, token in enumerate(vocabulary)
        if token and (any(c in token for c in _STOP_CHARACTERS) or token in _BYTE_STOPS)
    )


# ---------------------------------------------------------------------------
# The stop rule


class SqlStop:
    """The SQL stop rule (`lora_tradeoff.inference.base.StopRule`): decides, from token ids on the host,
    when a sequence has stopped (see `stop_point`)."""

    def __init__(self, model: Any, tokenizer: Any, max_new_tokens: int, sql_block: SqlBlock = "first") -> None:
        self.tokenizer = tokenizer
        self.sql_block = check_sql_block(sql_block)
        self.eos_ids = end_of_turn_ids(model, tokenizer)
        self.candidates = _stop_candidates(tokenizer)
        self.max_new_tokens = max_new_tokens

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def check(self, new_ids: list[int]) -> tuple[list[int], str, str] | None:
        """``(kept token ids, kept text, reason)`` once ``new_ids`` hold a stop, else None."""
        complete = len(new_ids) >= self.max_new_tokens
        # Decoding is the slow part; a sequence without eos or ';'/'`'/'~' tokens cannot have
        # stopped, and with sql_block "last" only eos and the budget stop one.
        candidates = self.candidates if self.sql_block == "first" else frozenset()
        if not complete and not any(token in self.eos_ids or token in candidates for token in new_ids):
            return None
        stop = stop_point(new_ids, self.eos_ids, self.decode, complete, self.sql_block)
        return None if stop is None else (new_ids[: stop[0]], stop[1], stop[2])


def generate_sql(
    model: Any,
    tokenizer: Any,
    prompt_rows: list[dict],
    max_new_tokens: int,
    batch_size: int,
    progress: Callable[[str], None] | None = None,
    cuda_graphs: bool = True,
    timer: PhaseTimer | None = None,
    sql_block: SqlBlock = "first",
) -> list[dict]:
    """Greedy answers to chat prompts, one result row per prompt row, in input order.

    ``prompt_rows`` need "id" and "messages" (chat turns; the model sees
    ``apply_chat_template(messages, add_generation_prompt=True)``). The model is
    any causal LM, with or without a (merged or unmerged) adapter, in eval mode.

    Each result row holds:

    * id, prompt_tokens: the prompt's length in tokens;
    * raw_output: the generated text up to and including the stop (a ';' that
      ends a statement, a closing code fence) or up to eos, eos itself excluded;
    * output_token_ids, new_tokens: the generated tokens kept (eos included when
      that was the stop) and their number;
    * stop_reason: "statement_end", "eos" or "max_new_tokens";
    * seconds: this item's share of its batch's wall time plus its share of the
      shared-prefix encoding, so the column sums to the total time.

    ``sql_block`` (config generation.sql_block): "first" stops at the first statement end, as an
    instruct model's answer needs; "last" lets a reasoning model write a draft and a final
    block, stopping at eos or ``max_new_tokens`` only (see `stop_point`).
    ``cuda_graphs`` (CUDA only) replays each batch's decode step as a CUDA graph.
    ``progress`` receives one line per batch: items done of all, items/s, ETA.
    ``timer`` (profiling only, `lora_tradeoff.inference.profiling`) times tokenization,
    planning and the engine's phases, synchronising the device at each phase boundary.

    The tokens are those of ``model.generate(do_sample=False)`` on each prompt
    alone, cut at the stop (float rounding differences aside, which batching can
    introduce on GPUs in bf16).
    """
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError(f"max_new_tokens ({max_new_tokens}) and batch_size ({batch_size}) must be at least 1")
    with phase(timer, "tokenize"):
        prompt_ids = encode_prompts(tokenizer, prompt_rows)
    with phase(timer, "plan"):
        check_prompt_lengths(
            prompt_ids,
            [row["id"] for row in prompt_rows],
            int(model.config.get_text_config(decoder=True).max_position_embeddings),
            max_new_tokens,
        )
    with phase(timer, "stop_rule_setup"):
        scanner = SqlStop(model, tokenizer, max_new_tokens, sql_block)
    tracker = Progress(len(prompt_rows), "items", "generated", progress)
    engine = BatchedEngine(model, pad_token_id(tokenizer, model), cuda_graphs=cuda_graphs, timer=timer)
    outputs = engine.generate_until(prompt_ids, scanner, batch_size, on_batch=lambda batch: tracker.advance(len(batch)))
    return [
        {
            "id": row["id"],
            "prompt_tokens": len(ids),
            "raw_output": output.text,
            "output_token_ids": output.token_ids,
            "new_tokens": len(output.token_ids),
            "stop_reason": output.stop_reason,
            "seconds": output.seconds,
        }
        for row, ids, output in zip(prompt_rows, prompt_ids, outputs, strict=True)
    ]
