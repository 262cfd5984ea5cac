"""The page a reader lands on: every paper table and figure of a scale, rendered, on one
self-contained HTML file (`reports/<scale>/index.html`, `scratchdet report page`).

Snakemake's `--report` opens on its rule graph and shows each table as a link to a file, so the
workflow writes this page too. It is built from the reports themselves: each table's Markdown
(title, the scale's note and the header lines, the table) and every PNG under `figures/`, embedded
as data URIs, so the one file can be mailed or opened from anywhere. A small script counts the
figures the browser decoded into `<body data-figures-shown>`, which the test reads from the DOM
of a headless Chromium.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from ..errors import DataError
from ..io import write_text

__all__ = ["markdown_to_html", "render_page", "write_page"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; color: #222; }
.note { background: #fff4d6; border-left: 4px solid #e0a800; padding: .6em 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 90%; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; white-space: nowrap; }
td:last-child { white-space: normal; min-width: 16em; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
nav a { margin-right: 1em; }
"""

_COUNT_FIGURES = """
window.addEventListener("load", function () {
  var shown = 0;
  document.querySelectorAll("figure img").forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) { shown += 1; }
  });
  document.body.setAttribute("data-figures-shown", String(shown));
});
"""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text in ("NAN",)
    return True


def _cells(line: str) -> list[str]:
    inner = line.strip()[1:-1]
    parts, cell, i = [], "", 0
    while i < len(inner):
        if inner[i] == "\\" and i + 1 < len(inner) and inner[i + 1] == "|":
            cell, i = cell + "|", i + 2
            continue
        if inner[i] == "|":
            parts.append(cell.strip())
            cell = ""
        else:
            cell += inner[i]
        i += 1
    parts.append(cell.strip())
    return parts


def markdown_to_html(text: str) -> str:
    """The subset of Markdown the reports write (`tables.to_markdown`): a `#` title, a bold
    line, `- ` notes and one pipe table."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("# "):
            out.append(f"<h2>{html.escape(line[2:])}</h2>")
        elif line.startswith("**") and line.endswith("**"):
            out.append(f'<p class="note"><strong>{html.escape(line.strip("*"))}</strong></p>')
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{html.escape(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line.startswith("|"):
            header = _cells(line)
            i += 2  # the |---| line
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            body = "".join(
                "<tr>" + "".join(
                    f'<td class="num">{html.escape(c)}</td>' if _is_number(c)
                    else f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                for row in rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            continue
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
        i += 1
    return "\n".join(out)


def render_page(reports: Path, title: str, note: str) -> str:
    """The page of the reports folder `reports`: its tables (`*.md`, the learning curves last),
    then every figure under `figures/`."""
    tables = sorted(p for p in reports.glob("*.md") if p.name not in ("README.md",))
    tables.sort(key=lambda p: p.name == "learning_curves.md")
    figures = sorted((reports / "figures").rglob("*.png")) if (reports / "figures").is_dir() \
        else []
    if not tables and not figures:
        raise DataError(reports, "no table (*.md) or figure (figures/*.png) to show")
    nav = "".join(f'<a href="#{p.stem}">{html.escape(p.stem)}</a>' for p in tables)
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">{html.escape(note)}</p>' if note else "",
             f"<nav>{nav}<a href=\"#figures\">figures</a></nav>"]
    for path in tables:
        parts.append(f'<section id="{path.stem}">{markdown_to_html(path.read_text())}</section>')
    parts.append('<section id="figures"><h2>Figures</h2>')
    for path in figures:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        caption = html.escape(str(path.relative_to(reports)))
        parts.append(f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{caption}</figcaption></figure>")
    parts.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
            f"<script>{_COUNT_FIGURES}</script></head>\n<body>\n" + "\n".join(parts)
            + "\n</body></html>\n")


def write_page(reports: str | Path, out: str | Path, title: str, note: str = "") -> int:
    """Write the page of `reports` to `out`; returns how many figures it embeds."""
    reports = Path(reports)
    page = render_page(reports, title, note)
    write_text(out, page)
    return page.count("<figure>")
