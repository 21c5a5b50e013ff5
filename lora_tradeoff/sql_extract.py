"""Pull one SQL statement out of raw LLM output, and lex SQL just enough to split it.

`extract_sql` is deliberately forgiving about the wrapping (chat tokens, code
fences, "SQL:" labels, prose) and strict about the payload: it returns exactly
one statement, the first, without trailing semicolons, or "" when the output
holds no SQL. It never repairs the SQL itself; a broken query stays broken and
fails at execution, where the failure gets a reason.
"""

import re

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


def _statement_start(text: str) -> int | None:
    """Offset of the first statement keyword that starts a line (after an optional
    label), else of the first inline upper-case SELECT; None when neither occurs."""
    line = _STATEMENT_LINE.search(text)
    if line:
        return line.start(1)
    inline = _INLINE_SELECT.search(text)
    return inline.start() if inline else None


def _candidate_text(text: str) -> str:
    """The region of `text` that holds the SQL, or "" if there is none.

    The first fenced block that contains a statement wins, from its statement
    keyword to the closing fence. Without one, the SQL runs from the first
    statement keyword to the end of its section.
    """
    for match in _FENCE.finditer(text):
        body = match.group(1)
        begin = _statement_start(body)
        if begin is not None:
            return body[begin:]
    begin = _statement_start(text)
    if begin is None:
        return ""
    rest = text[begin:]
    end = _SECTION_END.search(rest)
    return rest[: end.start()] if end else rest


def extract_sql(raw_output: str) -> str:
    """Return the first SQL statement in `raw_output`, or "" when there is none.

    Rules, in order:
    - chat special tokens (<|im_end|>, </s>, <end_of_turn>, ...) are removed;
    - inside a ``` fence (with or without a language tag) the first fence that
      contains a statement wins; its text before the statement keyword is dropped;
    - without a fence, SQL starts at the first line that begins with a statement
      keyword, possibly after a label ("SQL:", "Answer:"), else at an inline
      upper-case SELECT; it ends at a blank line or a new labelled section;
    - of several statements only the first is kept, and the ';' that ends it is
      dropped; ';' inside string literals, quoted identifiers and comments does
      not split.
    """
    text = _CHAT_TOKEN.sub("\n", raw_output)
    statements = split_statements(_candidate_text(text))
    return statements[0] if statements else ""
