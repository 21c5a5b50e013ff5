"""Pull one SQL statement out of raw LLM output, and lex SQL just enough to split it.

`extract_sql` is deliberately forgiving about the wrapping (chat tokens,
reasoning blocks, JSON, code fences and spans, "SQL:" labels, prose) and strict
about the payload: it returns exactly one statement, the first, without
trailing semicolons, or "" when the output holds no SQL. It never repairs the
SQL itself; a broken query stays broken and fails at execution, where the
failure gets a reason.

`statement_terminator` finds where the answer's first statement ends with the
same lexing; generation stops there (`generation.statement_end`).
"""

import json
import re
from collections.abc import Iterator

# One lexical token of SQLite SQL. The alternatives cover everything that can
# hide a ';' or a keyword (string literals, quoted identifiers, comments), so a
# ';' token outside them really ends a statement. An unterminated quote or
# comment runs to the end of the text, as SQLite would read it. Joining the
# tokens gives back the input exactly.
_TOKEN = re.compile(
    r"""
    '(?:[^']|'')*'?           # string literal, '' escapes a quote
    | "(?:[^"]|"")*"?         # quoted identifier
    | `[^`]*`?                # MySQL-style quoted identifier (SQLite accepts it)
    | \[[^\]]*\]?             # MS-style quoted identifier (SQLite accepts it)
    | --[^\n]*                # line comment
    | /\*.*?(?:\*/|\Z)        # block comment
    | [A-Za-z_][A-Za-z0-9_$]* # bare word: keyword or identifier
    | \s+
    | .
    """,
    re.DOTALL | re.VERBOSE,
)

# Special tokens that chat templates put around a turn (<|im_end|>, <|eot_id|>,
# <|endoftext|>, </s>, <end_of_turn>, ...). They are never part of SQL.
# Tokens that end a model's turn: generation stops there, so nothing after the first one (once
# the answer has begun) is the answer ("SELECT 1<|im_end|>garbage SELECT 2" -> "SELECT 1").
_END_OF_TURN = re.compile(r"<\|im_end\|>|<\|endoftext\|>|<\|eot_id\|>|</s>|<end_of_turn>|<eos>")
# The answer region is read up to this many characters. Extraction has parts that grow with the
# square of the text (a JSON decode attempt at each '{"', a prose check per statement start); a
# SQL answer is a few hundred characters, and 20,000 keep a 1 MB output's extraction under a
# second. Everything past it is not read.
MAX_ANSWER_CHARS = 20_000
_CHAT_TOKEN = re.compile(r"<\|[A-Za-z0-9_]+\|>|</?s>|<(?:start_of_turn|end_of_turn|eos|bos|pad)>")

# A fenced code block. The info string ("sql", "sqlite", ...) is optional and
# only read as such when a newline follows it, so "```SELECT 1```" keeps SELECT.
_FENCE = re.compile(r"```(?:[ \t]*[A-Za-z0-9_+-]*[ \t]*\n)?(.*?)(?:```|\Z)", re.DOTALL)

# Words that can start an SQLite statement. Write statements are recognised too,
# so that they reach the sandbox and are scored as failures with a reason,
# instead of being skipped over in favour of some later SELECT.
_STATEMENT_START = (
    r"(?:SELECT|WITH|VALUES|INSERT|UPDATE|DELETE|REPLACE|DROP|CREATE|ALTER|"
    r"ATTACH|DETACH|PRAGMA|VACUUM|REINDEX|ANALYZE|BEGIN|COMMIT|ROLLBACK|EXPLAIN)\b"
)

# A line that starts a statement, optionally after a short label such as
# "SQL:", "Answer:" or "The query is:".
_STATEMENT_LINE = re.compile(
    r"^[ \t>*-]*(?:[A-Za-z][A-Za-z0-9 _]{0,40}:[ \t]*)?(" + _STATEMENT_START + ")",
    re.IGNORECASE | re.MULTILINE,
)

# Fallback for SQL inline in a sentence ("The answer is SELECT ..."): an
# upper-case SELECT, because lower-case "select" is too common in prose.
_INLINE_SELECT = re.compile(r"\bSELECT\b")

# An inline code span (single backticks) on one line: `SELECT count(*) FROM singer`.
_CODE_SPAN = re.compile(r"(?<!`)`(?!`)([^`\n]+)`(?!`)")

# Reasoning blocks (<think>...</think>): drafts, not the answer. A closing tag
# without its opening one (chat templates that open the block in the prompt)
# ends the reasoning too; an unclosed block runs to the end of the text.
_REASONING_OPEN = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)
_REASONING_CLOSE = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)

# JSON answers: {"query": "..."} / {"sql": "..."} (any case, possibly nested).
_JSON_OBJECT = re.compile(r"\{\s*\"")
_JSON_SQL_KEYS = ("sql", "query", "sql_query", "sqlquery")

# SQLite's keywords (sqlite.org/lang_keywords.html). A run of three bare words
# none of which is a keyword never occurs in SQL (at most "expr alias" or
# "table alias" stand side by side), so such a run marks prose.
_KEYWORDS = frozenset(
    """
    ABORT ACTION ADD AFTER ALL ALTER ALWAYS ANALYZE AND AS ASC ATTACH AUTOINCREMENT BEFORE BEGIN
    BETWEEN BY CASCADE CASE CAST CHECK COLLATE COLUMN COMMIT CONFLICT CONSTRAINT CREATE CROSS
    CURRENT CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP DATABASE DEFAULT DEFERRABLE DEFERRED DELETE
    DESC DETACH DISTINCT DO DROP EACH ELSE END ESCAPE EXCEPT EXCLUDE EXCLUSIVE EXISTS EXPLAIN FAIL
    FILTER FIRST FOLLOWING FOR FOREIGN FROM FULL GENERATED GLOB GROUP GROUPS HAVING IF IGNORE
    IMMEDIATE IN INDEX INDEXED INITIALLY INNER INSERT INSTEAD INTERSECT INTO IS ISNULL JOIN KEY LAST
    LEFT LIKE LIMIT MATCH MATERIALIZED NATURAL NO NOT NOTHING NOTNULL NULL NULLS OF OFFSET ON OR
    ORDER OTHERS OUTER OVER PARTITION PLAN PRAGMA PRECEDING PRIMARY QUERY RAISE RANGE RECURSIVE
    REFERENCES REGEXP REINDEX RELEASE RENAME REPLACE RESTRICT RETURNING RIGHT ROLLBACK ROW ROWS
    SAVEPOINT SELECT SET TABLE TEMP TEMPORARY THEN TIES TO TRANSACTION TRIGGER UNBOUNDED UNION
    UNIQUE UPDATE USING VACUUM VALUES VIEW VIRTUAL WHEN WHERE WINDOW WITH WITHOUT
    """.split()
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
# Keywords that start a clause: a line holding one is read as SQL.
_CLAUSE_KEYWORDS = frozenset(
    "SELECT FROM WHERE JOIN ON GROUP ORDER BY HAVING LIMIT OFFSET UNION INTERSECT EXCEPT".split()
)

# What may follow a statement's ';' for it to end the statement in generation.
_NEWLINE_AFTER = re.compile(r"[ \t]*\n")

# Where SQL that is not fenced ends: a blank line, a label line that starts a new
# section ("Question:", "Explanation:"; no SQL line starts with "word:"), a
# markdown heading or a fence.
_SECTION_END = re.compile(r"\n[ \t]*\n|\n[ \t]*(?:[A-Za-z][A-Za-z0-9 _]{0,40}:|#)|```")


def sql_tokens(sql: str) -> list[str]:
    """Split `sql` into lexical tokens; `"".join(sql_tokens(s)) == s`."""
    return _TOKEN.findall(sql)


def split_statements(sql: str) -> list[str]:
    """Split on ';' outside literals and comments; return the non-empty statements, stripped.

    A piece that holds only whitespace and comments is not a statement (SQLite
    ignores it too), so "SELECT 1; -- done" is one statement.
    """
    statements: list[list[str]] = [[]]
    for token in sql_tokens(sql):
        if token == ";":
            statements.append([])
        else:
            statements[-1].append(token)
    return [
        "".join(tokens).strip()
        for tokens in statements
        if any(not (t.isspace() or t.startswith(("--", "/*"))) for t in tokens)
    ]


def answer_span(text: str) -> tuple[int, int]:
    """(begin, end) character offsets of the answer in `text`: after the last
    closing reasoning tag (</think>, </thinking>, </reasoning>), and before a
    reasoning block that is still open (then the answer has not begun: begin == end
    is possible)."""
    begin = 0
    for close in _REASONING_CLOSE.finditer(text):
        begin = close.end()
    opening = _REASONING_OPEN.search(text, begin)
    return begin, opening.start() if opening else len(text)


def _is_word(token: str) -> bool:
    return _WORD.fullmatch(token) is not None


def _significant(tokens: list[str]) -> list[str]:
    """`tokens` without whitespace and comments."""
    return [t for t in tokens if not (t.isspace() or t.startswith(("--", "/*")))]


def _has_prose_run(tokens: list[str]) -> bool:
    """Three bare non-keyword words in a row, with only spaces between: not SQL."""
    run = 0
    for token in tokens:
        if token.isspace():
            continue
        run = run + 1 if _is_word(token) and token.upper() not in _KEYWORDS else 0
        if run == 3:
            return True
    return False


def _is_prose_line(tokens: list[str]) -> bool:
    """A line that follows SQL but reads as a sentence ("This counts the singers.").

    Prose: three non-keyword words in a row; or ending in '.' (not after a
    digit), '!' or '?'; or four or more bare words and nothing else, the first
    not a keyword, the second lower-case, and no clause keyword (FROM, WHERE,
    JOIN, ...) among them ("This is the number of singers").
    """
    significant = _significant(tokens)
    if not significant:
        return False
    if _has_prose_run(tokens):
        return True
    last = significant[-1]
    if last in ("!", "?") or (last == "." and len(significant) > 1 and not significant[-2].isdigit()):
        return True
    return (
        len(significant) >= 4
        and all(_is_word(t) for t in significant)
        and significant[0].upper() not in _KEYWORDS
        and significant[1].islower()
        and not any(t.upper() in _CLAUSE_KEYWORDS for t in significant)
    )


def _lines(tokens: list[str]) -> Iterator[list[str]]:
    """Group tokens into lines; a literal or comment that spans lines stays in one."""
    line: list[str] = []
    for token in tokens:
        if token.isspace() and "\n" in token:
            yield line
            line = []
        line.append(token)
    yield line


def _sentence_end(line: list[str], before: str) -> int | None:
    """Index in `line` of a '.' that ends a sentence: whitespace (or the line end)
    follows it and it does not end a number; `before` is the token before `line`."""
    for i, token in enumerate(line):
        previous = line[i - 1] if i else before
        following = line[i + 1] if i + 1 < len(line) else " "
        if token == "." and following.isspace() and previous and not previous.isdigit():
            return i
    return None


def _sql_prefix(region: str) -> str | None:
    """The part of `region` (text from a statement keyword on) that is SQL, or None
    when its first line is prose ("Select every singer older than 30.").

    It ends before the first line that is prose (`_is_prose_line`) and at a
    sentence end (`_sentence_end`: "... FROM singer. It counts them.").
    """
    kept: list[str] = []
    for number, line in enumerate(_lines(sql_tokens(region))):
        if number and _is_prose_line(line):
            break
        cut = _sentence_end(line, kept[-1] if kept else "")
        if cut is not None:
            line = line[:cut]
        if number == 0 and _has_prose_run(line):
            return None
        kept.extend(line)
        if cut is not None:
            break
    return "".join(kept)


def _statement_starts(text: str) -> Iterator[tuple[int, int]]:
    """(begin, end) of each candidate SQL region in `text`, in order of preference.

    First the lines that start with a statement keyword (after an optional
    label) and inline code spans that hold a statement, by position; each line
    region runs to the end of its section, each span to its closing backtick.
    Then inline upper-case SELECTs, to the end of their section.
    """
    candidates = [(m.start(1), None) for m in _STATEMENT_LINE.finditer(text)]
    for span in _CODE_SPAN.finditer(text):
        body = span.group(1)
        if re.match(r"\s*" + _STATEMENT_START, body, re.IGNORECASE):
            candidates.append((span.start(1) + len(body) - len(body.lstrip()), span.end(1)))
    candidates.sort(key=lambda c: c[0])
    candidates += [(m.start(), None) for m in _INLINE_SELECT.finditer(text)]
    for begin, end in candidates:
        if end is None:
            section = _SECTION_END.search(text, begin)
            end = section.start() if section else len(text)
        yield begin, end


def _sql_in(text: str) -> str | None:
    """The SQL of the first candidate region in `text` that is not prose, or None."""
    for begin, end in _statement_starts(text):
        sql = _sql_prefix(text[begin:end])
        if sql is not None:
            return sql
    return None


def _json_sql(value: object, depth: int = 0) -> str | None:
    """The string under a "sql"/"query" key of a decoded JSON value, searched to depth 3."""
    if isinstance(value, dict) and depth < 3:
        for key, item in value.items():
            if isinstance(item, str) and str(key).lower() in _JSON_SQL_KEYS:
                return item
        for item in value.values():
            found = _json_sql(item, depth + 1)
            if found is not None:
                return found
    return None


def _json_answer(text: str) -> str | None:
    """SQL given as a JSON object ({"query": "SELECT ..."}), fenced or not; None if there is none."""
    decoder = json.JSONDecoder()
    for match in _JSON_OBJECT.finditer(text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python's parser recurses
            continue
        found = _json_sql(value)
        if found is not None:
            return found
    return None


def _candidate_text(text: str) -> str:
    """The region of `text` that holds the SQL, or "" if there is none.

    A JSON object with a "query"/"sql" key wins; then the first fenced block
    that contains a statement, from its statement keyword to the closing fence;
    then the first statement line or code span outside fences (`_statement_starts`).
    Prose before and after the SQL is left out (`_sql_prefix`).
    """
    from_json = _json_answer(text)
    if from_json is not None:
        return from_json
    for match in _FENCE.finditer(text):
        sql = _sql_in(match.group(1))
        if sql is not None:
            return sql
    return _sql_in(text) or ""


def extract_statements(raw_output: str) -> list[str]:
    """All statements of the SQL found in `raw_output` (see `extract_sql`), first first; [] if none."""
    text = _before_end_of_turn(raw_output)
    text = _CHAT_TOKEN.sub("\n", text)
    begin, end = answer_span(text)
    return split_statements(_candidate_text(text[begin : min(end, begin + MAX_ANSWER_CHARS)]))


def _before_end_of_turn(text: str) -> str:
    """`text` up to the first end-of-turn token that follows some content (leading ones are dropped)."""
    for match in _END_OF_TURN.finditer(text):
        if text[: match.start()].strip():
            return text[: match.start()]
    return text


def extract_sql(raw_output: str) -> str:
    """Return the first SQL statement in `raw_output`, or "" when there is none.

    Rules, in order:
    - the answer ends at the first end-of-turn token (<|im_end|>, <|endoftext|>, <|eot_id|>, </s>,
      <end_of_turn>, <eos>) after some text, as generation would have stopped there; other chat
      special tokens are removed;
    - reasoning blocks (<think>...</think>, also <thinking>, <reasoning>) are
      drafts: the answer is the text after the last closing tag, and an
      unclosed block (reasoning cut short) holds no answer;
    - a JSON object with a "query" or "sql" key (any case, nested up to 3
      deep) gives its string;
    - inside a ``` fence (with or without a language tag) the first fence that
      contains a statement wins; its text before the statement keyword is dropped;
    - without a fence, SQL starts at the first line that begins with a statement
      keyword, possibly after a label ("SQL:", "Answer:"), or in an inline code
      span (`SELECT ...`), whichever comes first, else at an inline upper-case
      SELECT; it ends at a blank line, a new labelled section, a line of prose
      or a sentence end ('.' plus space); a candidate whose first line is
      prose ("Explanation: Select every singer older than 30.") is not SQL;
    - of several statements only the first is kept, and the ';' that ends it is
      dropped; ';' inside string literals, quoted identifiers and comments does
      not split;
    - only the first MAX_ANSWER_CHARS (20,000) characters of the answer are read.
    Never raises for any string.
    """
    statements = extract_statements(raw_output)
    return statements[0] if statements else ""


def statement_terminator(text: str) -> int | None:
    """Offset just after the ';' that ends the answer's first statement, once a newline follows it; else None.

    The answer is read as `extract_sql` reads it: reasoning blocks are skipped,
    the SQL starts at the first statement line (or inline upper-case SELECT),
    and a ';' inside a string literal, quoted identifier or comment ends
    nothing ("-- count the singers;\nSELECT ..." goes on). A ';' at the very
    end does not count yet: the next token may still be a newline or an eos.
    """
    begin, end = answer_span(text)
    line = _STATEMENT_LINE.search(text, begin, end)
    inline = _INLINE_SELECT.search(text, begin, end)
    starts = ([line.start(1)] if line else []) + ([inline.start()] if inline else [])
    if not starts:
        return None
    offset = min(starts)
    tokens = sql_tokens(text[offset:end])
    for i, token in enumerate(tokens[:-1]):
        if token == ";" and _NEWLINE_AFTER.match(tokens[i + 1]):
            return offset + sum(map(len, tokens[: i + 1]))
    return None
