"""Batched SQL generation on the real model and real Spider prompts from the workflow's formatter.

The reference is the plain path: ``model.generate(do_sample=False)`` on one prompt
at a time. The batched path must give the same tokens, cut at its stop.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from peft import LoraConfig, get_peft_model

from bench.bench_generation import hf_batched_generate, naive_generate, spider_prompt_rows
from bench.bench_generation import main as bench_generation
from lora_tradeoff.files import read_jsonl, write_jsonl
from lora_tradeoff.inference import engine
from lora_tradeoff.inference.batching import (
    grouped_batches,
    prefix_groups,
    shared_prefix_length,
    similar_length_groups,
)
from lora_tradeoff.inference.engine import BatchedEngine
from lora_tradeoff.inference.hf import HFReference
from lora_tradeoff.inference.profiling import PhaseTimer, summarize_batch
from lora_tradeoff.model.loading import AdapterMismatchError, load_model_and_tokenizer
from lora_tradeoff.spider.generation import (
    MissingChatTemplateError,
    PromptTooLongError,
    SqlStop,
    encode_prompts,
    generate_sql,
    statement_end,
    stop_point,
)

MAX_NEW = 24


@pytest.fixture(scope="module")
def base(base_model_dir):
    return load_model_and_tokenizer(base_model_dir, device="cpu")


@pytest.fixture(scope="module")
def rows(spider_dir, base):
    """Few-shot and zero-shot prompts over databases of different sizes (220 to 914 tokens), so padding matters."""
    _, tokenizer = base
    few_shot = spider_prompt_rows(spider_dir, tokenizer, 8, "few_shot")
    zero_shot = spider_prompt_rows(spider_dir, tokenizer, 8, "zero_shot")
    return {"few_shot": [few_shot[i] for i in (0, 2)], "zero_shot": [zero_shot[i] for i in (0, 2, 3)]}


def prefix_rows_schema(row: dict) -> str:
    """The schema text of a prompt row's question turn (the template puts it before the question)."""
    return row["messages"][-1]["content"].split("Schema:\n", 1)[1].split("\n\nQuestion:", 1)[0]


def assert_same_tokens_as_one_at_a_time(model, tokenizer, prompt_rows, results, max_new_tokens):
    """The reference backend, one prompt at a time, cut by the same stop rule: the same tokens, text and reason."""
    reference = HFReference(model, tokenizer.pad_token_id).generate_until(
        encode_prompts(tokenizer, prompt_rows), SqlStop(model, tokenizer, max_new_tokens), batch_size=1
    )
    for row, result, expected in zip(prompt_rows, results, reference, strict=True):
        assert result["id"] == row["id"]
        assert result["output_token_ids"] == expected.token_ids, row["id"]
        assert (result["raw_output"], result["stop_reason"]) == (expected.text, expected.stop_reason), row["id"]


def test_engine_and_reference_backend_generate_the_same_tokens(base, rows):
    """Both backends behind the one interface, on a batch with a shared prefix and padding."""
    model, tokenizer = base
    prompt_ids = encode_prompts(tokenizer, rows["zero_shot"][:3])
    stop = SqlStop(model, tokenizer, 12)
    ours = BatchedEngine(model, tokenizer.pad_token_id).generate_until(prompt_ids, stop, batch_size=3)
    reference = HFReference(model, tokenizer.pad_token_id).generate_until(prompt_ids, stop, batch_size=1)
    assert [g.token_ids for g in ours] == [g.token_ids for g in reference]
    assert all(g.token_ids for g in ours) and [g.text for g in ours] == [g.text for g in reference]


def test_naive_generate_of_the_benchmark_agrees_with_the_reference_backend(base, rows):
    model, tokenizer = base
    prompt_rows = rows["zero_shot"][:1]
    naive = naive_generate(model, tokenizer, prompt_rows, 8)
    (reference,) = HFReference(model, tokenizer.pad_token_id).generate_until(
        encode_prompts(tokenizer, prompt_rows), SqlStop(model, tokenizer, 8), batch_size=1
    )
    assert reference.token_ids == naive[0][: len(reference.token_ids)]


def test_the_stock_batched_anchor_generates_what_we_generate(base, rows):
    """bench_generation's stock path (left-padded batches, stop at ';') is a fair anchor: same tokens."""
    model, tokenizer = base
    prompt_rows = rows["zero_shot"][:3]
    ours = generate_sql(model, tokenizer, prompt_rows, max_new_tokens=MAX_NEW, batch_size=3)
    side = tokenizer.padding_side
    stock = hf_batched_generate(model, tokenizer, prompt_rows, MAX_NEW, batch_size=3, cache_implementation=None)
    assert tokenizer.padding_side == side  # restored for the rules that share the tokenizer
    assert len(stock) == len(ours) == 3
    for result, ids in zip(ours, stock, strict=True):
        shared = min(len(ids), result["new_tokens"])
        assert shared > 0 and ids[:shared] == result["output_token_ids"][:shared], result["id"]


def test_the_static_cache_anchor_runs_one_padded_shape_and_generates_what_we_generate(base, rows):
    """With ``pad_to`` every batch is padded to one length and filled to the full batch (one compiled
    shape); the filler rows' outputs are dropped and the real rows' tokens are still ours."""
    model, tokenizer = base
    prompt_rows = rows["zero_shot"][:3]
    ours = generate_sql(model, tokenizer, prompt_rows, max_new_tokens=MAX_NEW, batch_size=3)
    pad_to = max(row["n_tokens"] for row in prompt_rows) + 7
    stock = hf_batched_generate(model, tokenizer, prompt_rows, MAX_NEW, 2, "static", pad_to=pad_to)
    assert len(stock) == 3  # batches of 2: the second holds one real row and one filler
    for result, ids in zip(ours, stock, strict=True):
        shared = min(len(ids), result["new_tokens"])
        assert shared > 0 and ids[:shared] == result["output_token_ids"][:shared], result["id"]


def test_prompt_ids_are_exactly_the_formatters_chat_template(base, rows):
    _, tokenizer = base
    prompt_rows = rows["few_shot"] + rows["zero_shot"]
    expected = [
        tokenizer.apply_chat_template(row["messages"], add_generation_prompt=True)["input_ids"] for row in prompt_rows
    ]
    assert encode_prompts(tokenizer, prompt_rows) == expected
    assert [len(ids) for ids in expected] == [row["n_tokens"] for row in prompt_rows]


@pytest.mark.slow
def test_batched_equals_one_at_a_time_with_padding(base, rows):
    """Mixed styles: a short shared prefix and suffixes of very different lengths in one batch."""
    model, tokenizer = base
    prompt_rows = [rows["zero_shot"][0], rows["few_shot"][0], rows["zero_shot"][1], rows["zero_shot"][2]]
    lines = []
    results = generate_sql(model, tokenizer, prompt_rows, MAX_NEW, batch_size=3, progress=lines.append)
    assert_same_tokens_as_one_at_a_time(model, tokenizer, prompt_rows, results, MAX_NEW)
    assert [r["prompt_tokens"] for r in results] == [r["n_tokens"] for r in prompt_rows]
    assert len(lines) == 2 and lines[-1].startswith("generated 4/4 items")
    assert all(r["seconds"] > 0 and r["new_tokens"] == len(r["output_token_ids"]) for r in results)


@pytest.mark.slow
def test_few_shot_prompts_share_their_examples_prefix(base, rows, monkeypatch):
    model, tokenizer = base
    prompt_rows = rows["few_shot"]
    ids = encode_prompts(tokenizer, prompt_rows)
    assert shared_prefix_length(ids) > 0.6 * min(len(i) for i in ids)  # system turn + 3 examples
    results = generate_sql(model, tokenizer, prompt_rows, MAX_NEW, batch_size=8)
    assert_same_tokens_as_one_at_a_time(model, tokenizer, prompt_rows, results, MAX_NEW)
    assert {r["stop_reason"] for r in results} <= {"statement_end", "eos", "max_new_tokens"}
    for result in results:
        if result["stop_reason"] == "statement_end":
            assert result["raw_output"].rstrip().endswith((";", "```"))
    # On CUDA stops are looked for every few steps only; the output must not change.
    monkeypatch.setattr(engine, "_steps_per_stop_check", lambda device: 5)
    lagging = generate_sql(model, tokenizer, prompt_rows, MAX_NEW, batch_size=8)
    assert [dict(r, seconds=0) for r in lagging] == [dict(r, seconds=0) for r in results]


@pytest.mark.slow
def test_phase_timer_changes_no_token_and_accounts_for_every_decode_step(base, rows, monkeypatch):
    """The profiling run (bench_generation --profile-out) is the normal path timed: the same rows; and
    its per-batch step and slot counts follow from the stops, the check interval and the row drops."""
    model, tokenizer = base
    prompt_rows = rows["zero_shot"]
    # Stops looked for every 4 steps, as on CUDA every 8: rows run past their stop and are dropped later.
    monkeypatch.setattr(engine, "_steps_per_stop_check", lambda device: 4)
    plain = generate_sql(model, tokenizer, prompt_rows, MAX_NEW, batch_size=2)
    timer = PhaseTimer()
    timed = generate_sql(model, tokenizer, prompt_rows, MAX_NEW, batch_size=2, timer=timer)
    assert [dict(r, seconds=0) for r in timed] == [dict(r, seconds=0) for r in plain]
    phases = {"tokenize", "plan", "stop_rule_setup", "prefix_prefill", "batch_setup", "prefill", "stop_check"}
    assert phases | {"decode_eager"} == set(timer.seconds) - {"drop_rows"}  # CPU: every step eager, no capture
    assert timer.calls["drop_rows"] == sum(len(facts["drops"]) for facts in timer.batches) >= 1
    batches = [summarize_batch(facts) for facts in timer.batches]
    longest_first = sorted(timed, key=lambda row: -row["prompt_tokens"])
    assert [b["rows"] for b in batches] == [2, 1] and timer.calls["prefill"] == 2
    assert [b["new_tokens_kept"] for b in batches] == [
        sum(row["new_tokens"] for row in longest_first[:2]),
        longest_first[2]["new_tokens"],
    ]
    assert sum(b["decode_steps"] for b in batches) == timer.calls["decode_eager"]
    for facts, batch in zip(timer.batches, batches, strict=True):
        assert all(kept <= needed <= kept + 1 for kept, needed in zip(facts["kept"], facts["needed"], strict=True))
        # The batch ends at the first check (every 4th step, or the budget) that sees the last row's stop.
        last_seen = min(-(-batch["max_needed"] // 4) * 4, MAX_NEW)
        assert batch["decode_steps"] == last_seen - 1
        width, done, slot_steps = batch["rows"], 0, 0
        for steps, before, after in facts["drops"]:
            assert before == width and after < before
            slot_steps, width, done = slot_steps + width * (steps - done), after, steps
        assert batch["slot_steps"] == slot_steps + width * (batch["decode_steps"] - done)
        assert 0 <= batch["wasted_slot_share"] < 1


@pytest.mark.slow
def test_bench_generation_writes_the_profile_after_its_figures(base_model_dir, spider_dir, tmp_path):
    out = tmp_path / "profile" / "generation.txt"
    figures = tmp_path / "figures.json"
    argv = ["--model-dir", str(base_model_dir), "--spider-dir", str(spider_dir), "--device", "cpu"]
    argv += ["--n", "3", "--batch-size", "2", "--max-new-tokens", "6", "--reference-n", "1", "--anchors", ""]
    report = bench_generation([*argv, "--json-out", str(figures), "--profile-out", str(out), "--profile-n", "2"])
    assert json.loads(figures.read_text()) == report
    text = out.read_text()
    phases = json.loads(next(line for line in text.splitlines() if line.startswith("PHASES_JSON "))[12:])
    assert phases["tokens_identical_to_timed_run"] == "3/3" and len(phases["batches"]) == 2
    assert sum(phases["groups"].values()) == pytest.approx(phases["profiled_seconds"], abs=0.01)
    assert "(d) decode" in text and "top 30 by self_cpu_time_total" in text and "aten::mm" in text


def test_bench_generation_refuses_an_unknown_anchor_before_loading_anything(tmp_path, capsys):
    """'' quoted inside a shell variable arrives as the two characters ''; it must fail at once, not
    after the timed runs (which would lose their figures)."""
    with pytest.raises(SystemExit):
        bench_generation(["--model-dir", str(tmp_path / "no-model"), "--anchors", "''"])
    assert "unknown cache \"''\"" in capsys.readouterr().err


def _save_adapter(base_model_dir, path, random_b: bool) -> None:
    model, _ = load_model_and_tokenizer(base_model_dir, device="cpu")
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    if random_b:  # default init has B = 0: the adapter is a no-op until trained
        generator = torch.Generator().manual_seed(0)
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.data = torch.randn(parameter.shape, generator=generator) * 0.5
    peft_model.save_pretrained(path)


@pytest.mark.slow
def test_adapter_changes_output_and_zero_adapter_does_not(base_model_dir, base, rows, tmp_path):
    model, tokenizer = base
    prompt_rows = rows["zero_shot"][:2]
    base_ids = [r["output_token_ids"] for r in generate_sql(model, tokenizer, prompt_rows, 12, batch_size=2)]
    for name, random_b, changes in (("zero", False, False), ("random", True, True)):
        _save_adapter(base_model_dir, tmp_path / name, random_b)
        adapted, adapted_tokenizer = load_model_and_tokenizer(base_model_dir, tmp_path / name, device="cpu")
        ids = [r["output_token_ids"] for r in generate_sql(adapted, adapted_tokenizer, prompt_rows, 12, batch_size=2)]
        assert (ids != base_ids) == changes, name


def test_adapter_from_another_model_names_its_config(base_model_dir, tmp_path):
    adapter = tmp_path / "deep"
    _save_adapter(base_model_dir, adapter, random_b=False)
    config_path = adapter / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["layers_to_transform"] = [0, 31]
    config_path.write_text(json.dumps(config))
    with pytest.raises(AdapterMismatchError, match=f"{config_path}.*31.*30 layers"):
        load_model_and_tokenizer(base_model_dir, adapter, device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterMismatchError, match=f"{tmp_path / 'empty'} has no adapter_config.json"):
        load_model_and_tokenizer(base_model_dir, tmp_path / "empty", device="cpu")


def test_over_long_prompt_names_its_id_and_the_config_keys(base, rows):
    model, tokenizer = base
    row = rows["few_shot"][0]
    with pytest.raises(
        PromptTooLongError,
        match=rf"{row['id']} has {row['n_tokens']} tokens.*prompt.max_seq_len.*"
        r"generation.max_new_tokens",
    ):
        generate_sql(model, tokenizer, [row], max_new_tokens=8192 - 100, batch_size=1)


def test_model_without_chat_template_is_refused(base, rows):
    model, tokenizer = base
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    with pytest.raises(MissingChatTemplateError, match="no chat template.*config.model"):
        generate_sql(model, plain, rows["zero_shot"][:1], MAX_NEW, batch_size=1)


def _chars(ids):
    return "".join(chr(i) for i in ids)


def _ids(text):
    return [ord(c) for c in text]


@pytest.mark.parametrize(
    ("text", "end"),
    [
        ("SELECT 1;\nSELECT 2;\n", len("SELECT 1;")),
        ("SELECT 1; \n", len("SELECT 1;")),
        ("SELECT 1;", None),  # the newline (or eos) may still come
        ("SELECT 'a;b' FROM t", None),
        ("```sql\nSELECT 1\n```\nExplanation", len("```sql\nSELECT 1\n```")),
        ("```sql\nSELECT 1;\n```", len("```sql\nSELECT 1;")),
        ("```sql\nSELECT 1", None),
        # ';' + newline inside a comment or literal ends nothing: the stop reads SQL as extraction does
        ("-- count the singers;\nSELECT count(*) FROM singer", None),
        (
            "-- count the singers;\nSELECT count(*) FROM singer;\n",
            len("-- count the singers;\nSELECT count(*) FROM singer;"),
        ),
        ("SELECT /* a;\n */ 1", None),
        ("SELECT name FROM singer WHERE name = 'x;\ny'", None),
        ('SELECT "a;\nb" FROM t', None),
        ("```sql\n-- why;\nSELECT 1\n```", len("```sql\n-- why;\nSELECT 1\n```")),
        ("<think>```sql\nSELECT 1;\n```</think>", None),  # a draft in reasoning is not the answer
    ],
)
def test_statement_end(text, end):
    assert statement_end(text) == end


def test_stop_point_keeps_tokens_up_to_the_stop():
    eos = frozenset({0})
    assert stop_point(_ids("SELECT 1;\nSEL"), eos, _chars, complete=False) == (9, "SELECT 1;", "statement_end")
    assert stop_point([*_ids("SELECT 1;"), 0, 65], eos, _chars, complete=False) == (10, "SELECT 1;", "eos")
    assert stop_point(_ids("SELECT 1"), eos, _chars, complete=False) is None
    assert stop_point(_ids("SELECT 1"), eos, _chars, complete=True) == (8, "SELECT 1", "max_new_tokens")
    commented = "-- count the singers;\nSELECT count(*) FROM singer;\n"
    assert stop_point(_ids(commented), eos, _chars, complete=False) == (
        len(commented) - 1,
        commented[:-1],
        "statement_end",
    )


def test_shared_prefix_leaves_every_prompt_a_token():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix_length([[1, 2], [1, 2, 3]]) == 1
    assert shared_prefix_length([[7, 8, 9]]) == 2
    assert shared_prefix_length([[1], [2]]) == 0


def test_prefix_groups_find_the_prompts_that_share_more_than_all_do():
    common, a, b = [1, 2, 3], [1, 2, 3] + [10] * 8, [1, 2, 3] + [20] * 8
    prompts = [a + [5, 6], b + [7], a + [8], common + [9, 9], b + [4, 4], a + [6]]
    # Sorted, [1, 2, 3, 9, 9] comes first and is left over: its group's prefix is all but its last token.
    assert prefix_groups(prompts) == ([0, 1, 0, 2, 1, 0], [11, 11, 4])
    # Two prompts sharing two tokens beyond the ten all share: a group of their own would prefill
    # 12 + 1 + 1 tokens instead of 2 + 3 after the common ten. One group.
    assert prefix_groups([[1] * 10 + [5, 5, 1], [1] * 10 + [5, 5, 2], [1] * 10 + [6, 0]]) == ([0, 0, 0], [10])
    assert prefix_groups([[1, 2], [3, 4]]) == ([0, 0], [0])  # nothing shared: no prefix
    assert prefix_groups([[7, 8, 9]]) == ([0], [2])
    assert prefix_groups([[1, 2, 3, 4], (1, 2, 3, 5), [1, 2, 9]]) == ([0, 0, 0], [2])  # lists and tuples
    assert prefix_groups([]) == ([], [])


def test_prefix_groups_hold_on_random_prompts():
    """On random prompts built from shared pieces: each group's prefix is common to its prompts and
    leaves each a token, and grouping never prefills more tokens than one group of all would."""
    import random

    rng = random.Random(0)
    for _ in range(300):
        pieces = [[rng.randint(0, 3) for _ in range(rng.randint(0, 12))] for _ in range(3)]
        prompts = [
            rng.choice(pieces) + rng.choice(pieces) + [rng.randint(0, 3) for _ in range(rng.randint(1, 6))]
            for _ in range(rng.randint(1, 9))
        ]
        groups, lengths = prefix_groups(prompts)
        assert sorted(set(groups)) == list(range(len(lengths)))
        for group, length in enumerate(lengths):
            members = [ids for ids, g in zip(prompts, groups, strict=True) if g == group]
            assert all(ids[:length] == members[0][:length] and len(ids) > length for ids in members)
        prefilled = sum(lengths) + sum(len(ids) - lengths[g] for ids, g in zip(prompts, groups, strict=True))
        common = shared_prefix_length(prompts)
        assert prefilled <= common + sum(len(ids) - common for ids in prompts)


def test_grouped_batches_keep_a_group_together_longest_first():
    # Groups by their longest own part: 1 (9), 2 (5), 0 (3); rows longest first within each.
    assert grouped_batches([3, 9, 1, 7, 5], [0, 1, 0, 1, 2], 2) == [[1, 3], [4, 0], [2]]
    with pytest.raises(ValueError, match="batch_size"):
        grouped_batches([3], [0], 0)


@pytest.mark.slow
def test_groups_that_the_prefill_runs_interleave_decode_as_the_reference(base):
    """Two groups, a long and a short question each: the prefill runs by length take A, B then A, B,
    and the decoder must put each group's rows together again."""
    model, tokenizer = base

    def encode(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    common = encode("You write SQLite queries. ")
    schema_a = encode("CREATE TABLE singer (singer_id number, name text, age number); ")
    schema_b = encode("CREATE TABLE pets (pet_id number, kind text, weight number); ")
    long_question = encode("Question: How many singers or pets are older than three years and heavier than ten? SQL:")
    short_question = encode("Question: Count them. SQL:")
    prompts = [common + schema_a + long_question, common + schema_b + long_question]
    prompts += [common + schema_a + short_question, common + schema_b + short_question]
    groups, _ = prefix_groups(prompts)
    assert groups[0] == groups[2] != groups[1] == groups[3]
    stop = SqlStop(model, tokenizer, 12)
    batched = BatchedEngine(model, tokenizer.pad_token_id)
    with pytest.raises(ValueError, match="prompt 1 has no tokens"):
        batched.generate_until([prompts[0], []], stop, batch_size=4)
    ours = batched.generate_until(prompts, stop, batch_size=4)
    reference = HFReference(model, tokenizer.pad_token_id).generate_until(prompts, stop, batch_size=1)
    assert [(g.token_ids, g.stop_reason) for g in ours] == [(g.token_ids, g.stop_reason) for g in reference]


@pytest.mark.slow
def test_prompts_of_one_database_share_its_schema_as_a_group_prefix(base, spider_dir):
    """Two databases' questions interleaved with a third database's lone one: the two pairs are found
    as groups (their prefix runs through the schema), batches of 3 split a group and mix groups,
    and the tokens are still the reference's, one prompt at a time."""
    model, tokenizer = base
    by_database: dict[str, list[dict]] = {}
    for row in spider_prompt_rows(spider_dir, tokenizer, 60, "zero_shot"):
        by_database.setdefault(row["db_id"], []).append(row)
    pairs = [rows[:2] for rows in by_database.values() if len(rows) >= 2][:2]
    lone = next(rows[0] for rows in by_database.values() if len(rows) == 1)
    prompt_rows = [pairs[0][0], lone, pairs[1][0], pairs[0][1], pairs[1][1]]
    ids = encode_prompts(tokenizer, prompt_rows)
    groups, lengths = prefix_groups(ids)
    assert groups[0] == groups[3] != groups[2] == groups[4] and len(set(groups)) == 3
    for row in (0, 2):  # the group's prefix holds the database's schema, not the question
        prefix = tokenizer.decode(ids[row][: lengths[groups[row]]])
        assert prefix_rows_schema(prompt_rows[row]) in prefix and prompt_rows[row]["question"] not in prefix
    results = generate_sql(model, tokenizer, prompt_rows, MAX_NEW, batch_size=3)
    assert_same_tokens_as_one_at_a_time(model, tokenizer, prompt_rows, results, MAX_NEW)


def test_prefill_runs_keep_padding_under_the_tolerance():
    assert similar_length_groups([100, 95, 91, 89, 50, 48], tolerance=0.1) == [(0, 3), (3, 4), (4, 6)]
    assert similar_length_groups([7], tolerance=0.1) == [(0, 1)]


def test_predictions_round_trip(tmp_path):
    rows = [{"id": "dev-0000", "raw_output": "SELECT 'é';", "new_tokens": 5, "stop_reason": "statement_end"}]
    path = tmp_path / "out" / "predictions.jsonl"
    write_jsonl(rows, path)
    assert read_jsonl(path) == rows


@pytest.mark.parametrize("order", [[0, 0, 1, 2, 2], [2, 0, 0, 1, 1]])
@pytest.mark.parametrize("q_length", [1, 5])
@pytest.mark.parametrize(
    "device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
)
def test_cascade_attention_equals_attention_over_group_prefix_and_own_keys(device, q_length, order):
    """Each row's attention over its group's shared prefix merged with its own keys through log-sum-exps
    = one attention over both; grouped query heads (4 over 2 key/value heads), decode (one query) and
    prefill shapes, groups in prefix order and not. On CUDA the prefix part is the variable-length
    flash kernel, checked also against the per-group path it replaces."""
    from types import SimpleNamespace

    from lora_tradeoff.inference import cascade

    generator = torch.Generator().manual_seed(0)
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    heads, kv_heads, dim, own_len, prefix_lengths = 4, 2, 16, 9, [7, 3, 11]
    batch = len(order)

    def tensor(*shape):
        return torch.randn(*shape, generator=generator).to(device, dtype)

    packed_k, packed_v = tensor(sum(prefix_lengths), kv_heads, dim), tensor(sum(prefix_lengths), kv_heads, dim)
    prefixes = cascade.SharedPrefixes([packed_k], [packed_v], [0, 7, 10], prefix_lengths)
    query = tensor(batch, heads, q_length, dim)
    own_k, own_v = tensor(batch, kv_heads, own_len, dim), tensor(batch, kv_heads, own_len, dim)
    mask = (torch.rand(batch, 1, q_length, own_len, generator=generator) > 0.3).to(device)
    mask[0, 0, 0] = False  # a query that sees none of its own keys (a pad position): the prefix carries it
    layer = SimpleNamespace(layer_idx=0)
    segments = cascade.PrefixSegments(prefixes, order, q_length)
    assert segments.varlen == (device == "cuda")
    with cascade.attending(segments):
        merged, _ = cascade.cascade_attention(layer, query, own_k, own_v, cascade.additive_bias(mask, dtype))
    assert merged.shape == (batch, q_length, heads, dim)

    expected = []
    for row, group in enumerate(order):
        start, length = prefixes.starts[group], prefix_lengths[group]
        keys = torch.cat([packed_k[start : start + length].transpose(0, 1), own_k[row]], dim=1)
        values = torch.cat([packed_v[start : start + length].transpose(0, 1), own_v[row]], dim=1)
        row_mask = torch.cat([torch.ones(1, q_length, length, dtype=torch.bool, device=device), mask[row]], dim=-1)
        expected.append(
            torch.nn.functional.scaled_dot_product_attention(
                query[row].float(),
                keys.repeat_interleave(2, dim=0).float(),
                values.repeat_interleave(2, dim=0).float(),
                attn_mask=row_mask,
            )
        )
    expected = torch.stack(expected).transpose(1, 2)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    assert torch.allclose(merged.float(), expected, atol=tolerance)
    if device == "cuda":
        segments.varlen = False  # the per-group dense path, as on GPUs without flash attention
        with cascade.attending(segments):
            dense, _ = cascade.cascade_attention(layer, query, own_k, own_v, cascade.additive_bias(mask, dtype))
        assert torch.allclose(dense.float(), expected, atol=tolerance)
    with pytest.raises(ValueError, match="consecutive"):
        cascade.PrefixSegments(prefixes, [0, 1, 0], q_length)


@pytest.mark.slow
def test_bench_decode_step_times_the_engines_decoder_per_row_count(base_model_dir, tmp_path):
    from bench.bench_decode_step import main as bench_decode_step

    out = tmp_path / "decode.json"
    argv = ["--model-dir", str(base_model_dir), "--device", "cpu", "--rows", "1,3", "--prefix", "16", "--groups", "2"]
    report = bench_decode_step([*argv, "--capacity", "48", "--new", "16", "--steps", "4", "--json-out", str(out)])
    assert json.loads(out.read_text()) == report
    assert [step["rows"] for step in report["steps"]] == [1, 3]
    # CPU: eager steps, no graph; the timed steps stop before the free slots run out.
    assert all(step["steps_timed"] == 4 and not step["graph"] and step["ms_per_step"] > 0 for step in report["steps"])
    with pytest.raises(SystemExit):
        bench_decode_step([*argv, "--capacity", "16", "--new", "16"])


def test_liger_kernels_are_refused_off_cuda_before_anything_changes(base):
    from lora_tradeoff.model.loading import apply_liger_kernels

    model, _ = base
    forward = model.model.norm.forward
    with pytest.raises(ValueError, match="CUDA only; this model is on cpu"):
        apply_liger_kernels(model)
    assert model.model.norm.forward == forward
    with pytest.raises(SystemExit):
        bench_generation(["--liger", "--profile-out", "profile.txt"])
