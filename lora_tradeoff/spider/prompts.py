"""One formatter for training and inference: Spider items -> chat messages.

A prompt is ``[system, user]`` where the user turn holds the database schema as
``CREATE TABLE`` statements and the question; for training an ``assistant`` turn with
the gold SQL follows. The few-shot prompt puts ``n_shot`` solved train examples as
(user, assistant) pairs between the system turn and the question, the same examples
for every question and every model. A fine-tuned model is evaluated on exactly the
zero-shot prompt it was trained on, so training text == inference prompt + answer.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

Message = dict[str, str]


def schema_from_sqlite(db_path: Path) -> str:
    """The database's own ``CREATE TABLE`` statements, in creation order."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        ).fetchall()
    conn.close()
    return "\n\n".join(" ".join(sql.split()) + ";" for (sql,) in rows)


def schema_from_tables_json(entry: dict[str, Any]) -> str:
    """``CREATE TABLE`` statements rebuilt from a Spider ``tables.json`` entry.

    Used when the database file is absent (all train databases in the reduced data):
    column types, primary keys and foreign keys come from the entry.
    """
    tables = entry["table_names_original"]
    columns = entry["column_names_original"]
    types = entry["column_types"]
    primary = set(_flatten(entry.get("primary_keys", [])))
    foreign: dict[int, list[tuple[int, int]]] = {}
    for source, target in entry.get("foreign_keys", []):
        foreign.setdefault(columns[source][0], []).append((source, target))
    statements = []
    for table_index, table in enumerate(tables):
        lines = [
            f"{name} {types[column_index]}" + (" PRIMARY KEY" if column_index in primary else "")
            for column_index, (owner, name) in enumerate(columns)
            if owner == table_index
        ]
        lines += [
            f"FOREIGN KEY ({columns[source][1]}) REFERENCES {tables[columns[target][0]]}({columns[target][1]})"
            for source, target in foreign.get(table_index, [])
        ]
        statements.append(f"CREATE TABLE {table} ({', '.join(lines)});")
    return "\n\n".join(statements)


def _flatten(keys: Iterable[Any]) -> Iterable[int]:
    for key in keys:
        if isinstance(key, list):
            yield from key
        else:
            yield key


class SchemaLookup:
    """db_id -> schema text: from the SQLite file when present, else from tables.json."""

    def __init__(self, tables: list[dict[str, Any]], databases: dict[str, dict[str, Any]]):
        self._entries = {entry["db_id"]: entry for entry in tables}
        self._databases = databases
        self._cache: dict[str, str] = {}

    def __call__(self, db_id: str) -> str:
        if db_id not in self._cache:
            path = (self._databases.get(db_id) or {}).get("path")
            if path:
                self._cache[db_id] = schema_from_sqlite(Path(path))
            elif db_id in self._entries:
                self._cache[db_id] = schema_from_tables_json(self._entries[db_id])
            else:
                raise KeyError(f"no database file and no tables.json entry for db_id {db_id!r}")
        return self._cache[db_id]

    def n_tables(self, db_id: str) -> int:
        return self(db_id).count("CREATE TABLE")


def user_turn(template: str, schema: str, question: str) -> Message:
    return {"role": "user", "content": template.format(schema=schema, question=question)}


def prompt_messages(
    item: dict[str, Any],
    schema: str,
    system: str,
    user_template: str,
    examples: list[dict[str, Any]] = (),
    system_role: bool = True,
) -> list[Message]:
    """Messages for one question; ``examples`` carry their own ``schema`` and ``query``.

    ``system_role=False`` puts the system text at the head of the first user turn
    instead of a system turn, for chat templates that accept only alternating
    user/assistant turns (Mistral-7B-Instruct-v0.2's raises on a system turn).
    """
    messages = [{"role": "system", "content": system}] if system_role else []
    for example in examples:
        messages.append(user_turn(user_template, example["schema"], example["question"]))
        messages.append({"role": "assistant", "content": example["query"]})
    messages.append(user_turn(user_template, schema, item["question"]))
    if not system_role:
        first = messages[0]
        messages[0] = {"role": first["role"], "content": f"{system}\n\n{first['content']}"}
    return messages


def select_fewshot_examples(
    train: list[dict[str, Any]], schemas: SchemaLookup, n_shot: int, seed: int, max_tables: int
) -> list[dict[str, Any]]:
    """``n_shot`` train examples drawn with ``seed`` from distinct databases.

    Only databases with at most ``max_tables`` tables qualify, so that three schemas
    do not crowd out the question in a small model's context.
    """
    rng = random.Random(seed)
    candidates = list(train)
    rng.shuffle(candidates)
    chosen: list[dict[str, Any]] = []
    used: set[str] = set()
    for item in candidates:
        if item["db_id"] in used or schemas.n_tables(item["db_id"]) > max_tables:
            continue
        chosen.append(
            {
                "id": item["id"],
                "db_id": item["db_id"],
                "question": item["question"],
                "query": item["query"],
                "schema": schemas(item["db_id"]),
            }
        )
        used.add(item["db_id"])
        if len(chosen) == n_shot:
            return chosen
    raise ValueError(f"only {len(chosen)} train databases have <= {max_tables} tables; need {n_shot}")


def sample_items(items: list[dict[str, Any]], limit: int | None, seed: int) -> list[dict[str, Any]]:
    """All items, or ``limit`` of them drawn with ``seed``, kept in official order."""
    if not limit or limit >= len(items):
        return list(items)
    chosen = set(random.Random(seed).sample(range(len(items)), limit))
    return [item for index, item in enumerate(items) if index in chosen]


def format_items(
    items: list[dict[str, Any]],
    schemas: SchemaLookup,
    system: str,
    user_template: str,
    count_tokens: Callable[[list[Message]], int],
    max_seq_len: int,
    examples: list[dict[str, Any]] = (),
    with_answer: bool = False,
    style: str = "zero_shot",
    system_role: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Format items into prompt rows; returns ``(kept, dropped)``.

    Rows longer than ``max_seq_len`` tokens (answer included for training) are dropped
    and returned separately so the caller can log and record them.
    """
    kept, dropped = [], []
    for item in items:
        messages = prompt_messages(item, schemas(item["db_id"]), system, user_template, examples, system_role)
        if with_answer:
            messages.append({"role": "assistant", "content": item["query"]})
        n_tokens = count_tokens(messages)
        row = {
            "id": item["id"],
            "db_id": item["db_id"],
            "question": item["question"],
            "query": item["query"],
            "prompt_style": style,
            "n_tokens": n_tokens,
            "messages": messages,
        }
        (kept if n_tokens <= max_seq_len else dropped).append(row)
    return kept, dropped


class ChatTemplateError(ValueError):
    """The model's chat template refuses the prompt's turns."""


def chat_token_counter(tokenizer: Any, add_generation_prompt: bool) -> Callable[[list[Message]], int]:
    from jinja2 import TemplateError

    def count(messages: list[Message]) -> int:
        try:
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)
        except TemplateError as error:
            roles = "/".join(message["role"] for message in messages)
            raise ChatTemplateError(
                f"The chat template of {tokenizer.name_or_path!r} refuses a prompt with turns {roles}: {error}. "
                + (
                    "Set prompt.system_role: false in the config to put the system text into the first user turn."
                    if messages and messages[0]["role"] == "system"
                    else "Change prompt.* or config.model so the turns fit the template."
                )
            ) from error
        if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        return len(ids)

    return count


def format_split(
    items: list[dict[str, Any]],
    tables: list[dict[str, Any]],
    databases: dict[str, dict[str, Any]],
    tokenizer: Any,
    system: str,
    user_template: str,
    max_seq_len: int,
    limit: int | None,
    seed: int,
    examples: list[dict[str, Any]] = (),
    with_answer: bool = False,
    system_role: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Sample, then format a split for inference (``with_answer=False``) or SFT."""
    style = "few_shot" if examples else "zero_shot"
    return format_items(
        sample_items(items, limit, seed),
        SchemaLookup(tables, databases),
        system,
        user_template,
        chat_token_counter(tokenizer, add_generation_prompt=not with_answer),
        max_seq_len,
        examples=examples,
        with_answer=with_answer,
        style=style,
        system_role=system_role,
    )
