"""extract_sql: one statement out of raw model output; split_statements / sql_tokens lexing."""

import pytest

from lora_tradeoff.sql_extract import extract_sql, split_statements, sql_tokens


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
