"""The one jinja2 environment: templates from the package, loaded once, strict about names."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import jinja2

from cards import filters

# HTML pages only: form values and chat Markdown are plain text, escaping would garble them.
_HTML = ("html", "htm", "html.j2", "htm.j2")


def plain(value: Decimal | int | None) -> str:
    """A number without trailing zeros or exponent: 1000.000000 -> 1000, 2.50 -> 2.5."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


class Renderer:
    """Renders `cards/templates/...` with the filters of `cards.filters`; never touches disk later.

    `auto_reload=False` and an unbounded cache, with every template compiled up front, keep
    file reads off the event loop once the service runs (DESIGN section 6).
    """

    def __init__(self, loader: jinja2.BaseLoader | None = None) -> None:
        self.env = jinja2.Environment(
            loader=loader or jinja2.PackageLoader("cards", "templates"),
            undefined=jinja2.StrictUndefined,
            auto_reload=False,
            cache_size=-1,
            autoescape=jinja2.select_autoescape(_HTML, default_for_string=False, default=False),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self.env.filters.update(
            money=filters.money,
            percent=filters.percent,
            local_time=filters.local_time,
            duration=filters.duration,
            plain=plain,
        )
        for name in self.env.list_templates(filter_func=lambda n: n.endswith(".j2")):
            self.env.get_template(name)

    def render(self, name: str, /, **context: Any) -> str:
        """One template rendered to text, trailing whitespace trimmed."""
        return self.env.get_template(name).render(**context).strip()
