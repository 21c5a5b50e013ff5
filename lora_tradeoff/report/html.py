"""The report's tables as HTML pages, for Snakemake's HTML report.

``snakemake --report`` shows an HTML result inside the report (in a frame); a Markdown or JSON
result is only a download link, and one that Chromium does not follow (a data: URL opened in a
new tab). So the report rule writes each Markdown file of the report (``summary.md``, its headline
section, ``failure_examples.md``) also as a standalone HTML page: the same text, rendered by
markdown-it-py (CommonMark with tables), with a small inline stylesheet and no external resource.
The Markdown stays the one place where the tables are laid out.
"""

from __future__ import annotations

import html

from markdown_it import MarkdownIt

# Readable tables: borders, a shaded header, numbers in aligned digits. Every rule is scoped to the page's
# own container, so the report's landing page can embed a page (workflow.rst embeds headline.html) without
# restyling the rest of the report.
STYLE = """
.lt-report { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  font-size: 14px; line-height: 1.45; color: #1f2937; margin: 1.5rem; }
.lt-report h1 { font-size: 1.6rem; margin: 0 0 0.5rem; }
.lt-report h2 { font-size: 1.3rem; margin-top: 2rem; border-bottom: 1px solid #d1d5db; }
.lt-report h3 { font-size: 1.1rem; }
.lt-report table { border-collapse: collapse; margin: 0.75rem 0 1.25rem; font-size: 13px; }
.lt-report th, .lt-report td { border: 1px solid #d1d5db; padding: 0.3rem 0.55rem; text-align: left;
  vertical-align: top; }
.lt-report th { background: #f3f4f6; }
.lt-report tbody tr:nth-child(even) { background: #f9fafb; }
.lt-report td { font-variant-numeric: tabular-nums; }
.lt-report code { background: #f3f4f6; padding: 0 0.2rem; border-radius: 3px; font-size: 12.5px; }
.lt-report pre { background: #f3f4f6; padding: 0.6rem 0.8rem; white-space: pre-wrap; }
.lt-report pre code { background: none; padding: 0; }
"""

# CommonMark with GitHub's pipe tables; raw HTML in the text is escaped (questions and model output
# are data, never markup).
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown_to_html(text: str) -> str:
    """The HTML body of a Markdown text (CommonMark and pipe tables; raw HTML escaped)."""
    return _MARKDOWN.render(text)


def html_page(title: str, markdown: str) -> str:
    """A standalone HTML page (UTF-8, inline style, no script or external resource) showing ``markdown``."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f'<body>\n<div class="lt-report">\n{markdown_to_html(markdown)}</div>\n</body>\n</html>\n'
    )
