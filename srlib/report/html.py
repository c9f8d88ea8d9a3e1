"""The benchmark's tables as self-contained HTML pages (``tables.html`` and one page per table).

A page holds the benchmark's description and run counts, optionally the figures (PNG files embedded as
data URIs, so the page can be opened anywhere, e.g. in the Snakemake report), and sections
``{"title", "caption", "frame"}`` as ``srlib.report.tables`` builds them. Numeric cells are right-aligned;
differences with a p-value below ``ALPHA`` and the claims' verdicts are marked; backticks become code.
"""

import base64
import re
from html import escape
from pathlib import Path

from srlib.report.stats import ALPHA, significant

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;color:#222}
div.wide{overflow-x:auto}
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ccc}h3{margin-bottom:.3em}
p.caption{color:#444;max-width:75em}code{background:#f2f2f2;padding:0 .25em;border-radius:3px}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #bbb;padding:3px 8px;vertical-align:top}
th{background:#f0f0f0;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#fafafa}td.sig{font-weight:600;background:#fff4c2 !important}
td.supported{color:#17692a;font-weight:600}td.contradicted{color:#a4161a;font-weight:600}
td.bad{color:#a4161a;font-weight:600}figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #ddd}
nav a{margin-right:1em}
"""
NUMBER = re.compile(r"^[-+−–—×]?\s?\d|^[–—]$|^n/a$")
P_VALUE = re.compile(r"\bp=([0-9.]+(?:e-?\d+)?)")


def text_html(text: str) -> str:
    """Escape plain text, turning `code spans` into <code> and blank-line paragraphs into <br>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(str(text))).replace("\n\n", "<br>")


def _cell_class(column: str, text: str) -> str:
    """CSS classes of a table cell: num (right-aligned), sig (p < ALPHA), a verdict, bad (FAILED, MISSING)."""
    classes = ["num"] if NUMBER.match(text) else []
    match = P_VALUE.search(text)
    if match and significant(float(match.group(1))):
        classes.append("sig")
    if column == "verdict" and text.split(" ")[0] in ("supported", "contradicted"):
        classes.append(text.split(" ")[0])
    if "FAILED" in text or "MISSING" in text:
        classes.append("bad")
    return " ".join(classes)


def _cell_html(value) -> str:
    """A numeric cell: its ratio to the baseline, "(×r)", on a line of its own, so wide cost tables fit a page."""
    return text_html(value).replace(" (×", "<br>(×")


def table_html(frame) -> str:
    """A pandas frame of strings as an HTML table (header = columns)."""
    head = "".join(f"<th>{escape(str(column))}</th>" for column in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, values):
            classes = _cell_class(str(column), str(value))
            cells.append(f"<td class='{classes}'>{_cell_html(value)}</td>" if classes
                         else f"<td>{text_html(value)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def figure_html(path: Path, caption: str) -> str:
    """A PNG embedded as a data URI, with its caption."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f"<figure><img src='data:image/png;base64,{data}' alt='{escape(Path(path).name)}'>"
            f"<figcaption>{text_html(caption)}</figcaption></figure>")


def write_page(path: Path, title: str, intro: str, documents: list[tuple[str, list[dict]]],
               figures: list[tuple[Path, str]] = (), empty: dict | None = None) -> Path:
    """One HTML page: title, intro (the benchmark's description and run counts), a legend, the figures
    ``(png path, caption)`` and each document ``(heading, sections)``; a document without sections says
    ``empty[heading]`` (default 'No finished runs.')."""
    headings = [heading for heading, _ in documents] + (["Figures"] if figures else [])
    body = [f"<h1>{escape(title)}</h1>", f"<p>{text_html(intro)}</p>"]
    if len(headings) > 1:
        body.append("<nav>" + "".join(f"<a href='#{_anchor(h)}'>{escape(h)}</a>" for h in headings) + "</nav>")
    tested = any(P_VALUE.search(str(value)) for _, sections in documents for section in sections
                 for value in section["frame"].to_numpy().ravel())
    if tested:
        body.append(f"<p class='caption'>Shaded: a difference to the baseline with paired t-test p &lt; {ALPHA}.</p>")
    for heading, sections in documents:
        body.append(f"<h2 id='{_anchor(heading)}'>{escape(heading)}</h2>")
        for section in sections:
            body += [f"<h3>{escape(section['title'])}</h3>", f"<p class='caption'>{text_html(section['caption'])}</p>",
                     table_html(section["frame"])]
        if not sections:
            body.append(f"<p>{escape((empty or {}).get(heading, 'No finished runs.'))}</p>")
    if figures:
        body.append("<h2 id='figures'>Figures</h2>")
        body += [figure_html(png, caption) for png, caption in figures]
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
                    f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
    return path
