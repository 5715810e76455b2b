"""`nncli report`: one self-contained HTML page of runs, comparisons and sweeps.

This module only renders: api.report gathers what a page shows (configs,
histories, evaluations, figures) into `Section`s of blocks, and `render`
turns them into one HTML document whose images are embedded as base64
`data:` URLs. The page loads nothing (no scripts, fonts, style sheets or
links outside itself), so it works offline and can be mailed as one file;
its CSS narrows tables and figures to a phone's width (tables scroll
sideways) and prints without the navigation, every figure whole.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field


@dataclass
class Text:
    """A paragraph (plain text, escaped)."""

    text: str


@dataclass
class Code:
    """Preformatted text: a resolved config, a best.yaml."""

    text: str
    caption: str = ""


@dataclass
class Table:
    """Columns and rows of values (numbers are formatted, None is an empty cell)."""

    columns: list[str]
    rows: list[list]
    caption: str = ""


@dataclass
class Image:
    """A PNG, embedded in the page."""

    png: bytes
    caption: str = ""


@dataclass
class Section:
    """A heading (level 2 for a run, 3 inside one) and its blocks."""

    title: str
    blocks: list = field(default_factory=list)
    level: int = 2
    anchor: str = ""


def cell(value) -> str:
    """A table cell's text: floats to 4 significant digits (fractions of 1 as given), integers with separators."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "" if math.isnan(value) else str(value)
        return f"{value:.4g}"
    return str(value)


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _table(table: Table) -> str:
    head = "".join(f'<th scope="col">{html.escape(c)}</th>' for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for k, value in enumerate(row):
            tag = "th" if k == 0 else "td"
            kind = ' class="num"' if _numeric(value) else ""
            scope = ' scope="row"' if k == 0 else ""
            cells.append(f"<{tag}{scope}{kind}>{html.escape(cell(value))}</{tag}>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f'<div class="scroll"><table>{caption}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _image(image: Image) -> str:
    data = base64.b64encode(image.png).decode("ascii")
    alt = html.escape(image.caption or "figure")
    caption = f"<figcaption>{html.escape(image.caption)}</figcaption>" if image.caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">{caption}</figure>'


def _block(block) -> str:
    if isinstance(block, Text):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, Code):
        caption = f'<p class="caption">{html.escape(block.caption)}</p>' if block.caption else ""
        return f'{caption}<pre class="code">{html.escape(block.text)}</pre>'
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Image):
        return _image(block)
    if isinstance(block, Section):
        return _section(block)
    raise TypeError(f"not a report block: {block!r}")


def _section(section: Section) -> str:
    level = min(max(section.level, 2), 4)
    anchor = f' id="{html.escape(section.anchor)}"' if section.anchor else ""
    inner = "".join(_block(b) for b in section.blocks)
    return f"<section{anchor}><h{level}>{html.escape(section.title)}</h{level}>{inner}</section>"


STYLE = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); background: #fff; margin: 0 auto; max-width: 1120px; padding: 1rem 1.25rem 3rem; }
header p { color: var(--muted); margin-top: 0; }
h1 { font-size: 1.7rem; margin: .5rem 0; }
h2 { font-size: 1.35rem; border-bottom: 1px solid var(--line); padding-bottom: .25rem; margin-top: 2.2rem; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
h4 { font-size: 1rem; }
nav ol { padding-left: 1.4rem; margin: .25rem 0 1rem; }
nav a { color: var(--accent); text-decoration: none; }
img { display: block; max-width: 100%; height: auto; }
figure { margin: 1rem 0; }
figcaption, caption, .caption { color: var(--muted); font-size: .88rem; text-align: left; margin: .3rem 0; }
.scroll { overflow-x: auto; margin: .75rem 0; }
table { border-collapse: collapse; font-size: .88rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: .25rem .55rem; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; }
thead th { background: var(--soft); }
pre.code { background: var(--soft); border: 1px solid var(--line); border-radius: 4px; padding: .6rem .8rem;
           overflow: auto; max-height: 26rem; font-size: .82rem; line-height: 1.35; }
@media (max-width: 640px) {
  body { font-size: 14px; padding: .5rem .6rem 2rem; }
  h1 { font-size: 1.35rem; }
  h2 { font-size: 1.15rem; }
  table { font-size: .78rem; }
  th, td { padding: .2rem .35rem; }
  pre.code { font-size: .74rem; max-height: 18rem; }
}
@media print {
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  nav { display: none; }
  h2 { break-after: avoid; }
  figure, table, pre.code { break-inside: avoid; }
  pre.code { max-height: none; overflow: visible; white-space: pre-wrap; }
  .scroll { overflow: visible; }
  a { color: inherit; text-decoration: none; }
}
"""


def render(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole page: one HTML document with its style inline and every image embedded."""
    toc = "".join(f'<li><a href="#{html.escape(s.anchor)}">{html.escape(s.title)}</a></li>' for s in sections if s.anchor)
    nav = f"<nav><ol>{toc}</ol></nav>" if len(sections) > 1 else ""
    body = "".join(_section(s) for s in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>{nav}<main>{body}</main></body></html>\n"
    )
