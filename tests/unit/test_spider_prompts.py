"""The one formatter, on real Spider rows and the real tokenizer."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from lora_tradeoff.spider.data import locate_databases, read_spider_dir
from lora_tradeoff.spider.prompts import (
    SchemaLookup,
    format_split,
    schema_from_sqlite,
    schema_from_tables_json,
    select_fewshot_examples,
)

SYSTEM = "You translate questions into SQLite."
TEMPLATE = "Schema:\n{schema}\n\nQuestion: {question}"


@pytest.fixture(scope="module")
def spider(spider_dir):
    data = read_spider_dir(spider_dir)
    databases = locate_databases({item["db_id"] for item in data["dev"]}, data["database_dir"])
    return {**data, "databases": databases}


@pytest.fixture(scope="module")
def tokenizer(base_model_dir):
    return AutoTokenizer.from_pretrained(base_model_dir)


def test_schema_comes_from_the_sqlite_file(spider_dir):
    schema = schema_from_sqlite(spider_dir / "database/concert_singer/concert_singer.sqlite")
    assert schema.count("CREATE TABLE") == 4
    assert schema.splitlines()[0].startswith('CREATE TABLE "stadium" ( "Stadium_ID" int, "Location" text,')


def test_tables_json_fallback_keeps_keys(spider):
    entry = next(e for e in spider["tables"] if e["db_id"] == "concert_singer")
    schema = schema_from_tables_json(entry)
    assert "CREATE TABLE singer (Singer_ID number PRIMARY KEY, Name text" in schema
    assert "FOREIGN KEY (Singer_ID) REFERENCES singer(Singer_ID)" in schema
    # train databases are absent from the reduced data: the lookup falls back
    assert SchemaLookup(spider["tables"], {})("concert_singer") == schema


def test_zero_shot_prompt_is_exact(spider, tokenizer):
    kept, dropped = format_split(
        spider["dev"],
        spider["tables"],
        spider["databases"],
        tokenizer,
        SYSTEM,
        TEMPLATE,
        max_seq_len=4096,
        limit=None,
        seed=0,
    )
    assert len(kept) == 1034 and dropped == []
    row = kept[0]
    assert row["id"] == "dev-0000" and row["prompt_style"] == "zero_shot"
    schema = schema_from_sqlite(spider["databases"]["concert_singer"]["path"])
    assert row["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Schema:\n{schema}\n\nQuestion: How many singers do we have?"},
    ]
    text = tokenizer.apply_chat_template(row["messages"], add_generation_prompt=True, tokenize=False)
    assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nSchema:\nCREATE TABLE")
    assert text.endswith("Question: How many singers do we have?<|im_end|>\n<|im_start|>assistant\n")


def test_training_rows_are_prompt_plus_answer(spider, tokenizer):
    kept, _ = format_split(
        spider["train"],
        spider["tables"],
        {},
        tokenizer,
        SYSTEM,
        TEMPLATE,
        max_seq_len=4096,
        limit=25,
        seed=3,
        with_answer=True,
    )
    prompts, _ = format_split(
        spider["train"], spider["tables"], {}, tokenizer, SYSTEM, TEMPLATE, max_seq_len=4096, limit=25, seed=3
    )
    assert [r["id"] for r in kept] == [r["id"] for r in prompts]
    assert [r["id"] for r in kept] == sorted(r["id"] for r in kept)
    for train_row, prompt_row in zip(kept, prompts, strict=True):
        assert train_row["messages"][:-1] == prompt_row["messages"]
        assert train_row["messages"][-1] == {"role": "assistant", "content": train_row["query"]}


def test_over_long_items_are_dropped_not_lost(spider, tokenizer):
    kept, dropped = format_split(
        spider["dev"][:40],
        spider["tables"],
        spider["databases"],
        tokenizer,
        SYSTEM,
        TEMPLATE,
        max_seq_len=300,
        limit=None,
        seed=0,
    )
    assert len(kept) + len(dropped) == 40 and dropped
    assert all(r["n_tokens"] > 300 for r in dropped) and all(r["n_tokens"] <= 300 for r in kept)


def test_fewshot_examples_are_seeded_and_shared(spider, tokenizer):
    schemas = SchemaLookup(spider["tables"], {})
    examples = select_fewshot_examples(spider["train"], schemas, n_shot=3, seed=0, max_tables=4)
    assert examples == select_fewshot_examples(spider["train"], schemas, n_shot=3, seed=0, max_tables=4)
    assert examples != select_fewshot_examples(spider["train"], schemas, n_shot=3, seed=1, max_tables=4)
    assert len({e["db_id"] for e in examples}) == 3
    assert all(e["schema"].count("CREATE TABLE") <= 4 for e in examples)
    kept, _ = format_split(
        spider["dev"][:5],
        spider["tables"],
        spider["databases"],
        tokenizer,
        SYSTEM,
        TEMPLATE,
        max_seq_len=4096,
        limit=None,
        seed=0,
        examples=examples,
    )
    for row in kept:
        assert row["prompt_style"] == "few_shot" and len(row["messages"]) == 8
        assert [m["content"] for m in row["messages"][2:7:2]] == [e["query"] for e in examples]
    assert len({json.dumps(row["messages"][:7]) for row in kept}) == 1  # one shared prefix


# Mistral-7B-Instruct-v0.2's chat template as published in its tokenizer_config.json: user/assistant only.
MISTRAL_V02_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)


def test_template_without_system_turn_names_the_key_and_system_role_false_fits_it(spider, base_model_dir):
    from lora_tradeoff.spider.prompts import ChatTemplateError

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    tokenizer.chat_template = MISTRAL_V02_TEMPLATE
    examples = select_fewshot_examples(spider["train"], SchemaLookup(spider["tables"], {}), 3, 0, 6)
    arguments = (spider["dev"], spider["tables"], spider["databases"], tokenizer, SYSTEM, TEMPLATE)
    with pytest.raises(ChatTemplateError, match=r"roles must alternate.*prompt\.system_role: false"):
        format_split(*arguments, max_seq_len=4096, limit=2, seed=0, examples=examples)
    kept, _ = format_split(*arguments, max_seq_len=4096, limit=2, seed=0, examples=examples, system_role=False)
    messages = kept[0]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3 + ["user"]
    assert messages[0]["content"].startswith(SYSTEM + "\n\nSchema:\n")
    assert messages[-1]["content"].startswith("Schema:\n")  # the system text appears once, in the first turn
