"""goalport's HTML pages (report.html, a GDPR bundle's README.html) from Jinja2 templates.

The templates live in `page_templates/` beside this module and load through a
`PackageLoader`, so they work from an installed package as from the source tree. Both pages
extend `page.html.j2` (the self-contained frame and its Content-Security-Policy) and import
the chart macros of `charts.html.j2`.

Autoescaping is on: every `{{ value }}` is escaped unless it is markup a template made (a
macro's output). User text is data, never template source: `{{ 7*7 }}` in a goal title is
shown as it is. The escaper is markupsafe's (in C: a bulk GDPR run renders thousands of
pages, each with a few thousand values); its two numeric references are then spelt as
`html.escape` spells them (`&quot;`, `&#x27;`), as the pages always had them. That rewrite
cannot touch anything else: every `&` of user text leaves the escaper as `&amp;`, and the
templates hold no character references. Values are passed as text or numbers: a None
would print as "None", so callers give "" instead.
"""

from __future__ import annotations

import functools
from typing import Any

import jinja2


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
    page = page_environment().get_template(template).render(**context)
    return page.replace("&#34;", "&quot;").replace("&#39;", "&#x27;").encode("utf-8")
