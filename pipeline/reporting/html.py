"""A static, self-contained HTML page: inline CSS, PNG images as data URIs, no script and no external link.

Reads and writes nothing itself; `pipeline.report` writes the page this module renders.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d232a; background: #fafbfc; }
header { background: #1f3b57; color: #fff; padding: 18px 32px; }
header h1 { margin: 0; font-size: 1.6em; }
header p { margin: 4px 0 0 0; opacity: .85; }
nav { background: #e8eef4; padding: 8px 32px; font-size: .92em; }
nav a { margin-right: 14px; color: #1f3b57; text-decoration: none; }
main { padding: 8px 32px 48px 32px; max-width: 1280px; }
.scroll { overflow-x: auto; max-width: 100%; }
section { margin-top: 28px; border-top: 1px solid #d5dde5; }
h2 { color: #1f3b57; }
h3 { margin-bottom: 6px; }
h4 { margin: 12px 0 4px 0; color: #34495e; }
details { margin: 8px 0; }
summary { cursor: pointer; color: #1f3b57; }
table.tbl { border-collapse: collapse; font-size: .88em; margin: 8px 0 16px 0; background: #fff; }
table.tbl th, table.tbl td { border: 1px solid #d5dde5; padding: 3px 8px; text-align: right; vertical-align: top; }
table.tbl td { max-width: 36em; overflow-wrap: break-word; }
table.tbl.left td, table.tbl.left th { text-align: left; }
table.tbl tr.small td { color: #9aa4ad; }
table.tbl th { background: #eef2f6; }
table.tbl td:first-child, table.tbl th:first-child { text-align: left; }
.na { color: #7a8691; font-style: italic; }
.warn { color: #b00020; font-weight: 600; }
.ok { color: #1b7a3a; font-weight: 600; }
.note { color: #4a5560; font-size: .92em; }
figure { margin: 8px 0 18px 0; display: inline-block; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #d5dde5; background: #fff; }
figcaption { font-size: .85em; color: #4a5560; }
pre { background: #f0f3f6; padding: 8px; font-size: .85em; overflow-x: auto; }
p.headline { font-size: 1.08em; font-weight: 600; }
"""

_URL = re.compile(r"(?i)\b(https?|ftp)://")


def esc(text: object) -> str:
    """HTML-escape any value's str()."""
    return html.escape(str(text), quote=True)


def defang_urls(text: str) -> str:
    """Make URL-like text inert (`https[:]//`), so that the page holds no external address at all."""
    return _URL.sub(lambda m: f"{m.group(1)}[:]//", text)


def p(text: str, cls: str = "") -> str:
    """A paragraph of escaped text."""
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{esc(text)}</p>"


def not_available(what: str) -> str:
    """The paragraph a section shows when its inputs are missing."""
    return f'<p class="na">{esc(what)}: not available.</p>'


def table(df: pd.DataFrame | None, index: bool = False, max_rows: int = 200, float_digits: int = 4,
          row_classes: list[str | None] | None = None, left: bool = False) -> str:
    """A pandas table as HTML (escaped, floats rounded) in a box that scrolls sideways when the table is wider than
    the page; long tables are cut with a note. `row_classes`: a CSS class per row (None: none); `left`: every cell
    aligned left (tables of text), else numbers right and the first column left."""
    if df is None or df.empty:
        return '<p class="na">(empty table)</p>'
    cut = len(df) > max_rows
    shown = df.head(max_rows).copy()
    shown.columns.name = None  # a crosstab's column-axis name would add a stray header cell
    out = shown.to_html(index=index, border=0, classes="tbl left" if left else "tbl", escape=True, na_rep="",
                        float_format=lambda v: _fmt_float(v, float_digits))
    if row_classes is not None:
        head, _, body = out.partition("<tbody>")
        rows = body.split("<tr>")
        body = rows[0] + "".join((f'<tr class="{esc(c)}">' if c else "<tr>") + r
                                 for c, r in zip(list(row_classes) + [None] * len(rows), rows[1:]))
        out = f"{head}<tbody>{body}"
    out = f'<div class="scroll">{out}</div>'
    if cut:
        out += f'<p class="note">first {max_rows} of {len(df)} rows shown</p>'
    return out


def count(n: int, noun: str, plural: str | None = None) -> str:
    """'1 corpus', '3 corpora', '2 clips': a count with its noun in the right number."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def _fmt_float(value: float, digits: int) -> str:
    if not np.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 10 ** (-digits)):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}"


def image(data_uri: str, alt: str, caption: str = "") -> str:
    """A figure with an inline PNG (data URI) and an optional caption."""
    if not data_uri.startswith("data:image/"):
        raise ValueError("images must be inline data URIs (the page is offline)")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{data_uri}" alt="{esc(alt)}">{cap}</figure>'


@dataclass
class Section:
    """One report section: an anchor id, a title and its HTML body parts."""

    anchor: str
    title: str
    parts: list[str] = field(default_factory=list)

    def add(self, *parts: str) -> Section:
        """Append HTML parts; returns self for chaining."""
        self.parts.extend(parts)
        return self


def page(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole HTML document (no script, no external resource; URL-like text defanged)."""
    nav = "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections)
    body = "\n".join(
        f'<section id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>\n' + "\n".join(s.parts) + "\n</section>"
        for s in sections)
    doc = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>
<nav>{nav}</nav>
<main>
{body}
</main>
</body>
</html>
"""
    return defang_urls(doc)
