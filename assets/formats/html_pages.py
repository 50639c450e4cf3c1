"""goalport's HTML pages (report.html, a GDPR bundle's README.html) from Jinja2 templates.

The templates live in `page_templates/` beside this module and load through a
`PackageLoader`, so they work from an installed package as from the source tree. Both pages
extend `page.html.j2` (the self-contained frame and its Content-Security-Policy) and import
the chart macros of `charts.html.j2`.

Autoescaping is on: every `{{ value }}` is escaped unless it is markup a template made (a
macro's output). The escaping is `html.escape(quote=True)`, the one the pages used when they
were written as f-strings (`&quot;`, `&#x27;`, not markupsafe's `&#34;`, `&#39;`), so the
pages read the same byte for byte where they did not change; and None prints as nothing,
not "None". User text is data, never template source: `{{ 7*7 }}` in a goal title is shown
as it is.
"""

from __future__ import annotations

import functools
import html
from typing import Any

import jinja2
from markupsafe import Markup


def _escaped(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


@functools.cache
def page_environment() -> jinja2.Environment:
    """The one Jinja2 environment of the pages (built on first use, then kept)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("assets.formats", "page_templates"),
        autoescape=True,
        finalize=_escaped,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )


def render_page(template: str, **context: Any) -> bytes:
    """The template rendered with `context`, as UTF-8 bytes."""
    return page_environment().get_template(template).render(**context).encode("utf-8")
