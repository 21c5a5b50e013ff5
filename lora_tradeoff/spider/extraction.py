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

import html
import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from typing import Literal

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

# Special tokens that chat templates put around a turn: <|im_end|>, <|eot_id|>, <|endoftext|>,
# DeepSeek's full-width <｜end▁of▁sentence｜> and <｜Assistant｜> (U+FF5C bars, U+2581 for spaces),
# </s>, <end_of_turn>, ... They are never part of SQL. A special token is any name of word
# characters between "<|" and "|>", with either bar.
_BAR = "[|\uff5c]"
_SPECIAL_TOKEN = re.compile(f"<{_BAR}([A-Za-z0-9_\u2581]{{1,64}}){_BAR}>")
_CHAT_TOKEN = re.compile(f"{_SPECIAL_TOKEN.pattern}|</?s>|<(?:start_of_turn|end_of_turn|eos|bos|pad)>")
# Names (lower case, '▁' read as '_') of the special tokens that end a model's turn: generation
# stops there, so nothing after the first one (once the answer has begun) is the answer
# ("SELECT 1<|im_end|>garbage SELECT 2" -> "SELECT 1").
_END_OF_TURN_NAMES = frozenset(
    {"im_end", "endoftext", "end_of_text", "eot_id", "eot", "end_of_sentence", "eos", "return", "end_of_turn", "end"}
)
_END_OF_TURN_TAG = re.compile(r"</s>|<end_of_turn>|<eos>")
# The answer region is read up to this many characters. Extraction has parts that grow with the
# square of the text (a JSON decode attempt at each '{"', a prose check per statement start); a
# SQL answer is a few hundred characters, and 20,000 keep a 1 MB output's extraction under a
# second. Everything past it is not read.
MAX_ANSWER_CHARS = 20_000

# gpt-oss "harmony" output: messages "<|channel|>NAME[ <|constrain|>...]<|message|>TEXT" that end at
# <|end|>, <|return|>, <|call|> or the next <|start|>. The analysis channel is a draft; the answer
# is the last message of the final channel. Decoded without special tokens the same output reads
# "analysis...assistantfinalTEXT".
_HARMONY_CHANNEL = re.compile(r"<\|channel\|>\s*(\w+)[^<]*(?:<\|constrain\|>[^<]*)?<\|message\|>")
_HARMONY_MESSAGE_END = re.compile(r"<\|(?:end|return|call|start)\|>")
_HARMONY_PLAIN_FINAL = re.compile(r"assistantfinal")

# A fenced code block, ``` or ~~~ (three or more), closed by the same run of characters. The
# info string ("sql", "sqlite", ...) is optional and only read as such when a newline follows
# it, so "```SELECT 1```" keeps SELECT.
_FENCE = re.compile(r"(`{3,}|~{3,})(?:[ \t]*[A-Za-z0-9_+-]*[ \t]*\n)?(.*?)(?:\1|\Z)", re.DOTALL)
_FENCE_MARK = re.compile(r"`{3,}|~{3,}")

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
# markdown heading, a fence, or a printed result table (a line that starts with one '|', as
# "| name |", or with "+--": no SQL line does; "||" is SQL's concatenation).
_SECTION_END = re.compile(r"\n[ \t]*\n|\n[ \t]*(?:[A-Za-z][A-Za-z0-9 _]{0,40}:|#|\|(?!\|)|\+--)|`{3,}|~{3,}")

# Markup around the SQL. Any XML or HTML tag (<answer>, </sql>, <solution>, <code>, <pre
# class="sql">, <br/>) is a boundary, never SQL; once a tag is seen, HTML character references
# (&lt;, &gt;, &amp;) are read as the characters they stand for. Bold ("**") is dropped wherever
# it stands (SQLite has no "**"; "/**" opens a comment and is kept). Underscore emphasis
# ("__SELECT 1__") is dropped when it opens after a non-word character and closes before one,
# so identifiers such as first__name keep theirs.
_MARKUP_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9_:-]{0,40}(?:\s[^<>\n]{0,200})?/?>")
_BOLD = re.compile(r"(?<!/)\*\*(?!/)")
_UNDERSCORE_EMPHASIS = re.compile(r"(?<!\w)__(?=[^\s_])(.*?)(?<=[^\s_])__(?!\w)")

# Which SQL block an answer holds when it holds several (a draft and a final query): "first"
# (generation stops at the first statement end) or "last" (generation runs to the end of the
# turn and the last block is read, as OmniSQL's own evaluator does). config generation.sql_block.
SqlBlock = Literal["first", "last"]
SQL_BLOCKS: tuple[SqlBlock, ...] = ("first", "last")

# A statement keyword written as a sentence starts ("Select", "With", "Update"; not "SELECT" or
# "select"). Such a candidate is read as SQL only when SQLite's parser accepts it (`_parses`).
_SENTENCE_CASE_START = re.compile(r"[A-Z][a-z]+\b")
# SQLite errors that say the text is not SQL, or names a column with no table in scope
# ("Select all singers": SELECT ALL singers), which no SQL answer does.
_NOT_SQL_ERRORS = ("syntax error", "incomplete input", "unrecognized token", "no such column")
_parser_local = threading.local()
_READ_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)


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


def _harmony_span(text: str) -> tuple[int, int] | None:
    """(begin, end) of the last final-channel message of gpt-oss harmony output; (len, len) when
    the output has channels but no final one yet; None when `text` is not harmony output."""
    channels = list(_HARMONY_CHANNEL.finditer(text))
    if not channels:
        plain = list(_HARMONY_PLAIN_FINAL.finditer(text))
        if plain and text.lstrip().startswith("analysis"):
            return plain[-1].end(), len(text)
        return None
    finals = [channel for channel in channels if channel.group(1).lower() == "final"]
    if not finals:
        return len(text), len(text)
    begin = finals[-1].end()
    closing = _HARMONY_MESSAGE_END.search(text, begin)
    return begin, closing.start() if closing else len(text)


def _is_end_of_turn(match: re.Match[str]) -> bool:
    name = match.group(1)
    return name is None or name.replace("\u2581", "_").lower() in _END_OF_TURN_NAMES


_END_OF_TURN = re.compile(f"{_SPECIAL_TOKEN.pattern}|{_END_OF_TURN_TAG.pattern}")


def answer_span(text: str) -> tuple[int, int]:
    """(begin, end) character offsets of the answer in `text`; begin == end when the answer has not begun.

    In order: gpt-oss harmony output is read in its last final-channel message (the analysis
    channel is a draft; channels without a final one hold no answer yet); the answer ends at
    the first end-of-turn token that follows some text (<|im_end|>, <|eot_id|>, DeepSeek's
    <\uff5cend\u2581of\u2581sentence\uff5c>, </s>, ...); it starts after the last closing reasoning tag (</think>,
    </thinking>, </reasoning>) and ends before a reasoning block that is still open.
    """
    begin, end = _harmony_span(text) or (0, len(text))
    for match in _END_OF_TURN.finditer(text, begin, end):
        if _is_end_of_turn(match) and text[begin : match.start()].strip():
            end = match.start()
            break
    for close in _REASONING_CLOSE.finditer(text, begin, end):
        begin = close.end()
    opening = _REASONING_OPEN.search(text, begin, end)
    return begin, opening.start() if opening else end


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


def _after_terminator(line: list[str]) -> int | None:
    """Index in `line` just after a ';' that the rest of the line does not continue as SQL: the
    rest is neither empty, a comment, nor a new statement ("...; this returns the count")."""
    for i, token in enumerate(line):
        if token == ";":
            rest = _significant(line[i + 1 :])
            if rest and rest[0] != ";" and not re.match(_STATEMENT_START, rest[0], re.IGNORECASE):
                return i + 1
    return None


def _parses(sql: str) -> bool:
    """Whether SQLite's parser reads `sql` (its first statement) as SQL that names no column out of
    scope: prepared as EXPLAIN (compiled, never run) on an empty in-memory database whose
    authorizer allows only reads, so that a missing table is the only error SQL may give."""
    parser = getattr(_parser_local, "connection", None)
    if parser is None:
        parser = _parser_local.connection = sqlite3.connect(":memory:", check_same_thread=False)
        parser.set_authorizer(lambda action, *_: sqlite3.SQLITE_OK if action in _READ_ACTIONS else sqlite3.SQLITE_DENY)
    statements = split_statements(sql)
    if not statements:
        return False
    try:
        parser.execute(f"EXPLAIN {statements[0]}").close()
    except sqlite3.Error as exc:
        return not any(error in str(exc) for error in _NOT_SQL_ERRORS)
    except (ValueError, OverflowError):  # a NUL character or a huge text: not for this check to decide
        return True
    return True


def _sql_prefix(region: str) -> str | None:
    """The part of `region` (text from a statement keyword on) that is SQL, or None
    when its first line is prose ("Select every singer older than 30.").

    It ends before the first line that is prose (`_is_prose_line`), at a sentence end
    (`_sentence_end`: "... FROM singer. It counts them.") and at a ';' that the rest of its
    line does not continue as SQL (`_after_terminator`: "...; this returns the count"). A
    region that starts with a keyword in sentence case ("Select every row of the singer
    table") is prose unless SQLite parses it (`_parses`).
    """
    kept: list[str] = []
    for number, line in enumerate(_lines(sql_tokens(region))):
        if number and _is_prose_line(line):
            break
        cut = _after_terminator(line)
        if cut is not None:
            line = line[:cut]
        sentence = _sentence_end(line, kept[-1] if kept else "")
        if sentence is not None:
            line, cut = line[:sentence], sentence
        if number == 0 and _has_prose_run(line):
            return None
        kept.extend(line)
        if cut is not None:
            break
    sql = "".join(kept)
    if _SENTENCE_CASE_START.match(region) and not _parses(sql):
        return None
    return sql


def _statement_starts(text: str) -> list[list[tuple[int, int]]]:
    """(begin, end) of each candidate SQL region in `text`, in two groups by preference.

    First the lines that start with a statement keyword (after an optional
    label) and inline code spans that hold a statement, by position; each line
    region runs to the end of its section, each span to its closing backtick.
    Then inline upper-case SELECTs, to the end of their section.
    """
    candidates: list[tuple[int, int | None]] = [(m.start(1), None) for m in _STATEMENT_LINE.finditer(text)]
    for span in _CODE_SPAN.finditer(text):
        body = span.group(1)
        if re.match(r"\s*" + _STATEMENT_START, body, re.IGNORECASE):
            candidates.append((span.start(1) + len(body) - len(body.lstrip()), span.end(1)))
    candidates.sort(key=lambda c: c[0])
    inline: list[tuple[int, int | None]] = [(m.start(), None) for m in _INLINE_SELECT.finditer(text)]
    groups = []
    for group in (candidates, inline):
        regions = []
        for begin, end in group:
            if end is None:
                section = _SECTION_END.search(text, begin)
                end = section.start() if section else len(text)
            regions.append((begin, end))
        groups.append(regions)
    return groups


def _sql_in(text: str, block: SqlBlock = "first") -> str | None:
    """The SQL of the first candidate region in `text` that is not prose, or None.

    With `block` "last": the last of the SQL regions that do not overlap (a statement line inside
    an earlier region's SQL, such as a subquery's, is part of it); statement lines and code spans
    still come before inline SELECTs.
    """
    for group in _statement_starts(text):
        found: str | None = None
        covered = 0
        for begin, end in group:
            if begin < covered:
                continue
            sql = _sql_prefix(text[begin:end])
            if sql is None:
                continue
            if block == "first":
                return sql
            found, covered = sql, begin + len(sql)
        if found is not None:
            return found
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


def _json_answer(text: str, block: SqlBlock = "first") -> str | None:
    """SQL given as a JSON object ({"query": "SELECT ..."}), fenced or not; None if there is none.
    With `block` "last", the last such object's."""
    decoder = json.JSONDecoder()
    found = None
    for match in _JSON_OBJECT.finditer(text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python's parser recurses
            continue
        sql = _json_sql(value)
        if sql is not None:
            if block == "first":
                return sql
            found = sql
    return found


def _strip_markup(text: str) -> str:
    """`text` with markup around the SQL taken out: tags become blank lines (section ends), bold
    and underscore emphasis go, and after a tag HTML character references are decoded."""
    untagged = _MARKUP_TAG.sub("\n\n", text)
    if untagged != text:
        untagged = html.unescape(untagged)
    return _UNDERSCORE_EMPHASIS.sub(r"\1", _BOLD.sub("", untagged))


def _candidate_text(text: str, block: SqlBlock = "first") -> str:
    """The region of `text` that holds the SQL, or "" if there is none.

    A JSON object with a "query"/"sql" key wins; then the first (`block` "last": the last)
    fenced block that contains a statement, from its statement keyword to the closing fence;
    then the first (last) statement line or code span outside fences (`_sql_in`).
    Prose before and after the SQL is left out (`_sql_prefix`).
    """
    from_json = _json_answer(text, block)
    if from_json is not None:
        return from_json
    fenced = None
    for match in _FENCE.finditer(text):
        sql = _sql_in(match.group(2), block)
        if sql is not None:
            if block == "first":
                return sql
            fenced = sql
    if fenced is not None:
        return fenced
    return _sql_in(text, block) or ""


def answer_text(raw_output: str) -> str:
    """The answer part of `raw_output` (`answer_span`), at most MAX_ANSWER_CHARS, with chat special
    tokens and markup (`_strip_markup`) taken out: the text extraction searches for SQL."""
    begin, end = answer_span(raw_output)
    text = _CHAT_TOKEN.sub("\n", raw_output[begin:end])
    return _strip_markup(text[:MAX_ANSWER_CHARS])


def check_sql_block(block: object) -> SqlBlock:
    """`block` if it is one of SQL_BLOCKS; else ValueError naming the setting."""
    if block not in SQL_BLOCKS:
        raise ValueError(f"generation.sql_block must be one of {SQL_BLOCKS}, not {block!r}")
    return block  # type: ignore[return-value]


def extract_statements(raw_output: str, block: SqlBlock = "first") -> list[str]:
    """All statements of the SQL found in `raw_output` (see `extract_sql`), first first; [] if none."""
    return split_statements(_candidate_text(answer_text(raw_output), check_sql_block(block)))


def extract_sql(raw_output: str, block: SqlBlock = "first") -> str:
    """Return the first SQL statement of the first (`block` "last": last) SQL block in
    `raw_output`, or "" when there is none.

    Rules, in order:
    - gpt-oss harmony output is read in its last final-channel message; the analysis channel
      is a draft, and output with channels but no final message holds no answer;
    - the answer ends at the first end-of-turn token (<|im_end|>, <|endoftext|>, <|eot_id|>,
      <|end|>, DeepSeek's full-width <\uff5cend\u2581of\u2581sentence\uff5c>, </s>, <end_of_turn>, <eos>) after
      some text, as generation would have stopped there; other chat special tokens (either
      bar) are removed;
    - reasoning blocks (<think>...</think>, also <thinking>, <reasoning>) are
      drafts: the answer is the text after the last closing tag, and an
      unclosed block (reasoning cut short) holds no answer;
    - markup is taken out: XML/HTML tags (<answer>, <sql>, <solution>, <code>, <pre>) end a
      section, HTML character references after a tag are decoded, "**" and "__" emphasis go;
    - a JSON object with a "query" or "sql" key (any case, nested up to 3
      deep) gives its string;
    - inside a ``` or ~~~ fence (with or without a language tag) the first fence that
      contains a statement wins; its text before the statement keyword is dropped;
    - without a fence, SQL starts at the first line that begins with a statement
      keyword, possibly after a label ("SQL:", "Answer:"), or in an inline code
      span (`SELECT ...`), whichever comes first, else at an inline upper-case
      SELECT; it ends at a blank line, a new labelled section, a printed result table, a
      line of prose, a sentence end ('.' plus space) or a ';' followed on its line by
      anything but a statement; a candidate whose first line is
      prose ("Explanation: Select every singer older than 30.") is not SQL, nor is one in
      sentence case ("Select every row of the singer table") that SQLite does not parse;
    - with `block` "last", the last fence, statement line or JSON object that holds SQL
      wins instead of the first (a reasoning model's draft, then its final query);
    - of several statements only the first is kept, and the ';' that ends it is
      dropped; ';' inside string literals, quoted identifiers and comments does
      not split;
    - only the first MAX_ANSWER_CHARS (20,000) characters of the answer are read.
    Never raises for any string.
    """
    statements = extract_statements(raw_output, block)
    return statements[0] if statements else ""


def statement_terminator(text: str) -> int | None:
    """Offset just after the ';' that ends the answer's first statement, once a newline follows it; else None.

    The answer is read as `extract_sql` reads it: harmony analysis messages and reasoning
    blocks are skipped, the SQL starts at the first statement line (or inline upper-case
    SELECT), and a ';' inside a string literal, quoted identifier or comment ends
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


def sql_fence_end(text: str) -> int | None:
    """Offset just after the closing fence (``` or ~~~) of the answer's first fenced block that
    holds a statement; None while there is none. A fence without SQL (a schema excerpt, a plan)
    ends nothing: the SQL may still follow in the next one."""
    begin, end = answer_span(text)
    for match in _FENCE.finditer(text, begin, end):
        closed = match.end() > match.end(2)  # else the block runs to the end of the text
        if closed and _sql_in(match.group(2)) is not None:
            return match.end()
    return None
