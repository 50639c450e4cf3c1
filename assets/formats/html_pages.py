"""goalport's HTML pages (report.html, a GDPR bundle's README.html) from Jinja2 templates.

The templates live in `page_templates/` beside this module and load through a
`PackageLoader`, so they work from an installed package as from the source tree. Both pages
extend `page.html.j2` (the self-contained frame and its Content-Security-Policy) and import
the chart macros of `charts.html.j2`.

User text is escaped here, by `escape_texts`, before it reaches a template: the pages'
modules hand the templates `Markup` (`html_texts` for single texts, `html_rows` for a
table's rows) that autoescaping leaves as it is. A page holds hundreds of values (a
README some 700, a heavy user's report thousands); escaped and printed one by one by
Jinja they made the pages 12-40% slower than the f-strings they replaced, which a bulk
GDPR run pays thousands of times. Escaping a batch at once costs less than one call per
value, and spells the references as `html.escape` does (`&quot;`, `&#x27;`), as the pages
always had them. Autoescaping stays on as the safety net: anything a template prints
that is not `Markup` is still escaped (by markupsafe, which spells those two `&#34;` and
`&#39;`: the same text).

User text is data, never template source: `{{ 7*7 }}` in a goal title is shown as it is.
Values are passed as text or numbers: a None would print as "None", so callers give ""
instead.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Iterable, Sequence
from typing import Any, cast

import jinja2
from markupsafe import Markup

# Joins a batch of texts for one pass of the escaper; a batch holding it is escaped text by text.
_SEPARATOR = "\0"
_NoneType = type(None)
_NONE = Markup("None")  # what Jinja prints for a None


@functools.cache
def page_environment() -> jinja2.Environment:
    """The one Jinja2 environment of the pages (built on first use, then kept)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("assets.formats", "page_templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )


def render_page(template: str, **context: Any) -> bytes:
    """The template rendered with `context`, as UTF-8 bytes."""
    return page_environment().get_template(template).render(**context).encode("utf-8")


def escape_texts(values: Sequence[object], *, empty: Markup = _NONE) -> list[str]:
    """Each value as HTML text: `&<>"'` as `&amp; &lt; &gt; &quot; &#x27;` (`html.escape`),
    anything but text through `str` first; `Markup` (a fixed piece of markup, or made
    here) goes in as it is, and None as `empty` (by default "None", as Jinja prints it).

    The texts are joined and escaped in one pass, then split again: a call per value costs
    more than the escaping itself."""
    kinds = set(map(type, values))
    texts: Sequence[str] = (
        cast("Sequence[str]", values)
        if kinds == {str}
        else [v if type(v) is str else str(v) for v in values]
    )
    joined = _SEPARATOR.join(texts)
    if joined.count(_SEPARATOR) == len(texts) - 1:
        escaped = html.escape(joined).split(_SEPARATOR)
    else:  # a text holds the separator (or there are none)
        escaped = [html.escape(text) for text in texts]
    if Markup in kinds or _NoneType in kinds:
        for i in [i for i, v in enumerate(values) if v is None or type(v) is Markup]:
            escaped[i] = empty if values[i] is None else str(values[i])
    return escaped


def html_texts(values: Sequence[object]) -> list[Markup]:
    """Each value as `Markup` of its escaped text (`escape_texts`), for a template to print."""
    return [Markup(text) for text in escape_texts(values)]


def html_rows(row: str, rows: Iterable[Sequence[object]], *, empty: Markup = _NONE) -> Markup:
    """Rows of a table (or any repeated markup) as one piece of markup: `row` is the fixed
    markup of one row with a `{}` for each cell, every cell escaped by `escape_texts`.

    The rows are laid out by one `join` of the row's fixed pieces and the escaped cells
    (a `str.format` of every row costs twice as much)."""
    pieces = row.split("{}")
    width = len(pieces) - 1
    rows = list(rows)
    if not width or any(len(cells) != width for cells in rows):
        raise ValueError(f"each row must have one cell for each {{}} of {row!r}")
    if not rows:
        return Markup()
    cells = escape_texts([cell for cells in rows for cell in cells], empty=empty)
    laid_out = [pieces[0]] * (2 * len(cells) + 1)
    laid_out[1::2] = cells
    laid_out[2::2] = [*pieces[1:-1], pieces[-1] + pieces[0]] * len(rows)
    laid_out[-1] = pieces[-1]
    return Markup("".join(laid_out))
