"""HTML pieces the reports are built from: a table, a self-contained page, and plotly
figures drawn by the vendored plotly.js bundle."""

from __future__ import annotations

import functools
import html
import json
import re
from importlib import resources
from typing import Any

#: The plotly.js bundle pages inline: plotly.js's partial "basic" bundle, of the version
#: the pinned plotly Python package ships (see ``_vendor/README.md``). 1.2 MB against
#: the full bundle's 4.8 MB, for the price of drawing with its trace types only.
PLOTLY_BUNDLE = "plotly-basic-4.1.1.min.js"


@functools.cache
def plotly_js() -> str:
    """The vendored plotly.js bundle's source (read once per process)."""
    return (resources.files("rectune") / "_vendor" / PLOTLY_BUNDLE).read_text(encoding="utf-8")


@functools.cache
def bundle_traces() -> frozenset[str]:
    """The trace types the vendored bundle registers (``scatter``, ``bar``, ``pie``)."""
    return frozenset(re.findall(r'moduleType:"trace",name:"(\w+)"', plotly_js()))


def plotly_script() -> str:
    """A ``<script>`` holding plotly.js itself: a page that must work offline."""
    return f'<script type="text/javascript">{plotly_js()}</script>'


def figure_json(figure: dict[str, Any]) -> str:
    """``figure`` as JSON that is also safe inside a ``<script>`` element: every ``<``
    escaped, so a ``</script>`` or ``<!--`` in a name cannot end the script."""
    return json.dumps(figure, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def plot_div(name: str, figure: dict[str, Any]) -> str:
    """An HTML ``<div>`` that draws ``figure`` (a plotly ``{"data", "layout"}`` dict)
    once plotly.js is loaded above it on the page."""
    element = f"plot-{re.sub(r'[^A-Za-z0-9_-]', '_', name)}"
    # The box has its height before plotly.js runs (450 px is plotly's default), so the
    # page around it lays out the same with or without it.
    height = int(figure.get("layout", {}).get("height") or 450)
    style = f' style="height:{height}px"'
    config = {"displaylogo": False, "responsive": True}
    return (
        f'<div id="{element}" class="plot"{style}></div><script type="text/javascript">'
        f'(function(f){{Plotly.newPlot("{element}",f.data,f.layout,{json.dumps(config)});}})'
        f"({figure_json(figure)});</script>"
    )


def html_table(
    rows: list[list[Any]], header: list[str] | None, row_classes: list[str] | None = None
) -> str:
    """An HTML table of ``rows`` under ``header`` (``None``: no header row), every cell
    escaped; ``row_classes`` gives each row a CSS class (``""`` for none)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header or [])
    head = f"<thead><tr>{head}</tr></thead>" if header else ""
    classes = row_classes or [""] * len(rows)
    body = "".join(
        (f'<tr class="{html.escape(css)}">' if css else "<tr>")
        + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row)
        + "</tr>"
        for row, css in zip(rows, classes, strict=True)
    )
    return f"<table>{head}<tbody>{body}</tbody></table>"


def html_page(title: str, body: str, style: str = "") -> str:
    """A standalone HTML page with rectune's table style (and ``style``, more CSS)."""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; font-size: 14px; }}
th {{ background: #f3f3f3; }}
{style}</style></head><body>
{body}
</body></html>
"""
