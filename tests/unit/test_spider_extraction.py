"""extract_sql: one statement out of raw model output; split_statements / sql_tokens lexing."""

import time

import pytest

from lora_tradeoff.spider.extraction import (
    MAX_ANSWER_CHARS,
    extract_sql,
    extract_statements,
    split_statements,
    sql_tokens,
    statement_terminator,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("SELECT name FROM singer", "SELECT name FROM singer"),
        ("```sql\nSELECT name FROM singer;\n```", "SELECT name FROM singer"),
        ("```\nSELECT name FROM singer\n```", "SELECT name FROM singer"),
        ("```SELECT 1```", "SELECT 1"),
        ("Here you go:\n```sqlite\nselect a from t\n```\nIt lists a.", "select a from t"),
        ("SQL: SELECT a FROM t", "SELECT a FROM t"),
        ("Answer: SELECT a FROM t;", "SELECT a FROM t"),
        (
            "Sure! The query is:\n\nSELECT a\nFROM t\nWHERE b > 1;\n\nThis returns a.",
            "SELECT a\nFROM t\nWHERE b > 1",
        ),
        ("SELECT a FROM t\nQuestion: how many b?\nSQL: SELECT count(b) FROM t", "SELECT a FROM t"),
        ("SELECT a FROM t; SELECT b FROM t;", "SELECT a FROM t"),
        ("SELECT a FROM t;;;", "SELECT a FROM t"),
        ("SELECT a FROM t<|im_end|>", "SELECT a FROM t"),
        ("<|im_start|>assistant\nSELECT a FROM t<|im_end|>\n<|endoftext|>", "SELECT a FROM t"),
        ("SELECT a FROM t</s>", "SELECT a FROM t"),
        ("The answer is SELECT count(*) FROM t", "SELECT count(*) FROM t"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH x AS (SELECT 1) SELECT * FROM x"),
        ("```\nprint('hi')\n```\n```sql\nSELECT 2\n```", "SELECT 2"),
        # a ';' inside a literal, quoted identifier or comment does not end the statement
        ("SELECT a FROM t WHERE b = 'x;y'; SELECT 2", "SELECT a FROM t WHERE b = 'x;y'"),
        ('SELECT "a;b" FROM t; SELECT 2', 'SELECT "a;b" FROM t'),
        ("SELECT a -- c;d\nFROM t; SELECT 2", "SELECT a -- c;d\nFROM t"),
        ("SELECT a FROM t WHERE b = 'it''s;'", "SELECT a FROM t WHERE b = 'it''s;'"),
        # write statements are extracted, so the sandbox refuses them with a reason
        ("DROP TABLE singer; SELECT 1", "DROP TABLE singer"),
    ],
)
def test_extracts_first_statement(raw: str, expected: str) -> None:
    assert extract_sql(raw) == expected


@pytest.mark.parametrize("raw", ["", "   \n", "I don't know.", "<|im_end|>", "```\n```", ";;"])
def test_no_sql_gives_empty_string(raw: str) -> None:
    assert extract_sql(raw) == ""


@pytest.mark.parametrize("sql", ["SELECT 'a''b' -- x\n/* y */ FROM [t] `u` \"v\"", "SELECT 'unterminated", "/* open"])
def test_tokens_round_trip(sql: str) -> None:
    assert "".join(sql_tokens(sql)) == sql


def test_split_statements_ignores_comment_only_pieces() -> None:
    assert split_statements("SELECT 1; -- done\n") == ["SELECT 1"]
    assert split_statements("SELECT 1; /* c */ ; SELECT 2") == ["SELECT 1", "SELECT 2"]
    assert split_statements("  ") == []


def test_gold_queries_extract_to_themselves(spider_dev: list[dict]) -> None:
    """Every real gold query passes through unchanged (bar a trailing ';' and spaces)."""
    for item in spider_dev:
        assert extract_sql(item["query"]) == item["query"].strip().rstrip(";").strip()


# Real model output shapes (issue 17, kind 2): each input from the issue, then variants.
SINGERS = "SELECT count(*) FROM singer"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # trailing prose after the SQL
        (f"{SINGERS}\nThis counts the singers.", SINGERS),
        (f"{SINGERS};\nThe query counts singers.", SINGERS),
        (f"{SINGERS}. This counts the singers.", SINGERS),
        (f"{SINGERS}\nwhich counts all singers", SINGERS),
        (f"{SINGERS}\nThis is the number of singers", SINGERS),
        (f"{SINGERS}\nHope this helps!", SINGERS),
        (
            "SELECT name\nFROM singer\nWHERE age > 30\nIt returns the names of singers older than 30.",
            "SELECT name\nFROM singer\nWHERE age > 30",
        ),
        # SQL over several lines, a '.' in a literal and a number are not sentence ends
        (
            "SELECT name, age\nFROM singer\nORDER BY age DESC\nLIMIT 1",
            "SELECT name, age\nFROM singer\nORDER BY age DESC\nLIMIT 1",
        ),
        (
            "select name from singer where country = 'France. Paris'",
            "select name from singer where country = 'France. Paris'",
        ),
        ("SELECT avg(age) FROM singer WHERE age > 30.", "SELECT avg(age) FROM singer WHERE age > 30."),
        # reasoning blocks: the answer is after the block
        (f"<think>Maybe SELECT * FROM singer;\nNo, count them.</think>\n{SINGERS}", SINGERS),
        (f"<think>\nSELECT name FROM singer\n</think>\n\n```sql\n{SINGERS};\n```", SINGERS),
        (f"Draft: SELECT name FROM singer\n</think>\n{SINGERS}", SINGERS),  # template opened the block
        (f"<thinking>SELECT 1</thinking>{SINGERS}", SINGERS),
        (f"<think>SELECT 1</think>\n<think>SELECT 2</think>\nSQL: {SINGERS}", SINGERS),
        # JSON with a query / sql key
        (f'{{"query": "{SINGERS}"}}', SINGERS),
        (f'```json\n{{"sql": "{SINGERS};"}}\n```', SINGERS),
        (f'{{"reasoning": "count the rows of singer", "SQL": "{SINGERS}"}}', SINGERS),
        (f'{{"answer": {{"sql_query": "{SINGERS}"}}}}', SINGERS),
        ('{"query": "SELECT count(*)\\nFROM singer"}', "SELECT count(*)\nFROM singer"),
        # a prose line that starts with "Select" is not SQL; a later SQL line is
        (
            "Explanation: Select every singer older than 30.\nSQL: SELECT * FROM singer WHERE age > 30",
            "SELECT * FROM singer WHERE age > 30",
        ),
        # SQL in an inline code span
        (f"`{SINGERS}`", SINGERS),
        (f"The query is `{SINGERS}`.", SINGERS),
        ("Use `SELECT name FROM singer WHERE age > 30` to list them.", "SELECT name FROM singer WHERE age > 30"),
        ("The column `name` holds it: SELECT name FROM singer", "SELECT name FROM singer"),
    ],
)
def test_extracts_sql_from_real_output_shapes(raw: str, expected: str) -> None:
    assert extract_sql(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "Explanation: Select every singer older than 30.",
        "Note: select the singers who are older than thirty",
        "<think>SELECT name FROM singer",  # reasoning cut short: no answer yet
        '{"explanation": "count the singers"}',
    ],
)
def test_prose_and_unfinished_reasoning_are_not_sql(raw: str) -> None:
    assert extract_sql(raw) == ""


@pytest.mark.parametrize(
    ("raw", "statements"),
    [
        (f"{SINGERS}; DROP TABLE singer", [SINGERS, "DROP TABLE singer"]),
        (f"```sql\n{SINGERS};\nDELETE FROM singer;\n```", [SINGERS, "DELETE FROM singer"]),
        (f"{SINGERS}; -- done", [SINGERS]),
    ],
)
def test_extract_statements_keeps_the_ignored_ones(raw: str, statements: list[str]) -> None:
    assert extract_statements(raw) == statements
    assert extract_sql(raw) == statements[0]


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("-- count the singers;\nSELECT count(*) FROM singer", None),
        (
            "-- count the singers;\nSELECT count(*) FROM singer;\nmore",
            "-- count the singers;\nSELECT count(*) FROM singer;",
        ),
        ("SELECT name FROM singer WHERE name = 'a;\nb';\n", "SELECT name FROM singer WHERE name = 'a;\nb';"),
        ('SELECT "odd;\nname" FROM t;\n', 'SELECT "odd;\nname" FROM t;'),
        ("SELECT /* one;\ntwo */ 1;\nSELECT 2;\n", "SELECT /* one;\ntwo */ 1;"),
        ("SELECT 1 -- done;\n;\n", "SELECT 1 -- done;\n;"),
        ("Here's the query: SELECT 1;\n", "Here's the query: SELECT 1;"),  # prose before the SQL is not lexed
        ("<think>SELECT 1;\nhmm</think>\nSELECT 2;\n", "<think>SELECT 1;\nhmm</think>\nSELECT 2;"),
        ("<think>SELECT 1;\n", None),
        ("SELECT 1;", None),
    ],
)
def test_statement_terminator_reads_sql(text: str, kept: str | None) -> None:
    end = statement_terminator(text)
    assert (None if end is None else text[:end]) == kept


# --- inputs found by trying to break extraction: nesting, size, text after the end of the turn


@pytest.mark.parametrize("output", ['{"a":' * 1000, '{"a":' + "[" * 1000, '{"query": ' * 2000])
def test_deeply_nested_json_never_raises(output: str) -> None:
    assert extract_sql(output) == ""


@pytest.mark.parametrize(
    "output",
    [
        '{"' * 500_000,
        '{"query": "' * 100_000,
        "we SELECT many things here ok " * 40_000,
        "`SELECT all things` " * 50_000,
    ],
)
def test_megabyte_outputs_are_read_only_up_to_the_answer_limit(output: str) -> None:
    """These took 20 s to over 4 minutes when the whole text was read (parts of extraction grow
    with its square); only the first MAX_ANSWER_CHARS of the answer are read now."""
    start = time.monotonic()
    extract_sql(output)
    assert time.monotonic() - start < 10  # a hang guard, not a speed target (about 0.2 s here)


def test_sql_past_the_answer_limit_is_not_read() -> None:
    assert extract_sql("x " * MAX_ANSWER_CHARS + "SELECT 1") == ""
    assert extract_sql("SELECT 1\n\n" + "x " * MAX_ANSWER_CHARS) == "SELECT 1"


@pytest.mark.parametrize(
    ("output", "sql"),
    [
        ("SELECT count(*) FROM singer<|im_end|>garbage SELECT 2", "SELECT count(*) FROM singer"),
        ("SELECT count(*) FROM singer<eos>SELECT 1", "SELECT count(*) FROM singer"),
        ("SELECT count(*) FROM singer</s>\nSELECT 1", "SELECT count(*) FROM singer"),
        ("<|im_end|>SELECT count(*) FROM singer", "SELECT count(*) FROM singer"),  # nothing before: kept
    ],
)
def test_the_answer_ends_at_the_first_end_of_turn_token(output: str, sql: str) -> None:
    assert extract_sql(output) == sql


# --- issue 31: answers in every shape real models write. Each kind: the shape, then variants.
ANSWER_SHAPES = {
    "explanation after the statement, same line": [
        f"{SINGERS}; this returns the number of singers",
        f"{SINGERS};This returns 6.",
        f"{SINGERS}; which counts every singer in the table",
        f"```sql\n{SINGERS}; -- the count\n```",
        f"SQL: {SINGERS}; It counts them, see above!",
    ],
    "answer tags and markup": [
        f"<answer>{SINGERS}</answer>",
        f"<sql>\n{SINGERS};\n</sql>",
        f"<solution>\n```sql\n{SINGERS}\n```\n</solution>",
        f"<answer>The query is <sql>{SINGERS}</sql></answer>",
        f"**{SINGERS}**",
        f"**SQL:** `{SINGERS}`",
        f"__{SINGERS}__",
        f"Use <code>{SINGERS}</code> to count them.",
        f'<pre class="sql">{SINGERS}</pre>',
        f"{SINGERS}\n| count(*) |\n|----------|\n| 6 |",
        f"{SINGERS};\n+----------+\n| count(*) |\n+----------+",
    ],
    "end-of-turn tokens of other tokenizer families": [
        f"{SINGERS}<\uff5cend\u2581of\u2581sentence\uff5c>",
        f"<\uff5cAssistant\uff5c>{SINGERS}<\uff5cend\u2581of\u2581sentence\uff5c>SELECT 2",
        f"{SINGERS}<|end|>\nSELECT 2",  # Phi-3
        f"{SINGERS}<|eot|>",
    ],
    "gpt-oss harmony channels": [
        "<|channel|>analysis<|message|>Maybe SELECT name FROM singer;\nNo, count them.<|end|>"
        f"<|start|>assistant<|channel|>final<|message|>{SINGERS}<|return|>",
        f"<|channel|>analysis<|message|>SELECT 1;<|end|><|channel|>final <|constrain|>sql<|message|>{SINGERS};",
        f"analysisThe user wants a count. SELECT name FROM singer;assistantfinal{SINGERS}",
        "<|channel|>commentary<|message|>SELECT 1<|end|><|start|>assistant<|channel|>final<|message|>"
        f"```sql\n{SINGERS}\n```<|return|>",
    ],
    "~~~ fences": [
        f"~~~sql\n{SINGERS};\n~~~",
        f"~~~\n{SINGERS}\n~~~\nThat counts them.",
        f"~~~~sqlite\n{SINGERS}\n~~~~",
    ],
    "a non-SQL fence before the SQL fence": [
        f"The table:\n```\nsinger(singer_id, name, age)\n```\nThe query:\n```sql\n{SINGERS}\n```",
        f"```text\nCount the rows.\n```\n~~~sql\n{SINGERS}\n~~~",
    ],
}


@pytest.mark.parametrize("raw", [raw for shapes in ANSWER_SHAPES.values() for raw in shapes], ids=lambda raw: raw[:40])
def test_answer_shapes_give_the_sql(raw: str) -> None:
    assert extract_sql(raw) == SINGERS


@pytest.mark.parametrize(
    "raw",
    [
        "<|channel|>analysis<|message|>SELECT count(*) FROM singer;<|end|>",  # the draft only: no final answer
        "<|channel|>analysis<|message|>SELECT count(*) FROM singer;<|end|><|start|>assistant<|channel|>final"
        "<|message|>I cannot answer that.<|return|>",
        "<answer>I do not know.</answer>",
        "<\uff5cend\u2581of\u2581sentence\uff5c>",
        "~~~\nsinger(singer_id, name, age)\n~~~",
        # prose in sentence case made of words that are SQLite keywords too
        "Select every row of the singer table where the age is over 30",
        "Select every row of the singer table.",
        "Select all singers",
        "Select all rows in the singer table",
        "Explanation:\nSelect each singer and count them",
    ],
)
def test_answer_shapes_without_sql_give_nothing(raw: str) -> None:
    assert extract_sql(raw) == ""


@pytest.mark.parametrize(
    ("raw", "sql"),
    [
        ("Select name from singer", "Select name from singer"),  # sentence case that SQLite parses
        ("Select 1", "Select 1"),
        ("Select every row of the singer table:\nSELECT * FROM singer", "SELECT * FROM singer"),
        ('<pre class="sql">SELECT name FROM singer WHERE age &gt; 30</pre>', "SELECT name FROM singer WHERE age > 30"),
        ("SELECT first__name FROM t", "SELECT first__name FROM t"),  # identifiers keep their underscores
        ("SELECT a FROM t /** doc */", "SELECT a FROM t /** doc */"),
        ("SELECT a || b FROM t\n|| c", "SELECT a || b FROM t\n|| c"),  # "||" is concatenation, not a table
        ("SELECT name FROM singer WHERE a < b AND c > d", "SELECT name FROM singer WHERE a < b AND c > d"),
        (f"{SINGERS}; SELECT 2", SINGERS),  # a second statement is still a statement
    ],
)
def test_sql_that_looks_like_markup_or_prose_is_kept(raw: str, sql: str) -> None:
    assert extract_sql(raw) == sql


DRAFT = "SELECT name FROM singer"


@pytest.mark.parametrize(
    "raw",
    [
        f"```sql\n{DRAFT}\n```\nWait, the question asks for a count.\n```sql\n{SINGERS}\n```",
        f"Draft:\n{DRAFT}\n\nFinal:\n{SINGERS}",
        f"~~~sql\n{DRAFT}\n~~~\n```sql\n{SINGERS};\n```",
        f'{{"sql": "{DRAFT}"}}\n{{"sql": "{SINGERS}"}}',
    ],
)
def test_sql_block_chooses_the_draft_or_the_final_block(raw: str) -> None:
    assert extract_sql(raw) == DRAFT
    assert extract_sql(raw, "first") == DRAFT
    assert extract_sql(raw, "last") == SINGERS


def test_the_last_block_keeps_a_subquery_in_its_statement() -> None:
    nested = "SELECT name FROM singer\nWHERE age IN (\nSELECT max(age) FROM singer)"
    assert extract_sql(nested, "last") == nested
    assert extract_sql(f"{DRAFT}\n\nFixed:\n{nested}", "last") == nested


def test_an_unknown_sql_block_names_the_setting() -> None:
    with pytest.raises(ValueError, match="generation.sql_block"):
        extract_sql(SINGERS, "final")  # type: ignore[arg-type]
