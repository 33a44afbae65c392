"""report.html: one self-contained page (inline style and scripts, no CDN: it works offline), images linked
relatively from the same folder. The summary comes first, then one ``Section`` after another."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

STYLE = """body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}img{max-width:100%;margin:4px}
table.sortable th{cursor:pointer}table.sortable th[aria-sort=ascending]:after{content:" ▲"}
table.sortable th[aria-sort=descending]:after{content:" ▼"}
pre{background:#f6f6f6;padding:6px;font-size:12px}.row{display:flex;flex-wrap:wrap;gap:12px}
#summary{background:#f3f7ff;border:1px solid #bcd;padding:0.6em 1.2em;font-size:15px}#summary li{margin:3px 0}
nav a{margin-right:1em;font-size:13px}.note{color:#555;font-size:13px}"""

# Marks the page once loaded: images that failed to decode and script errors / console.error calls (read by the
# tests in headless Chromium). It runs first so that it sees every later error.
CHECK_SCRIPT = """<script>(function(){var errors=0;window.addEventListener('error',function(){errors++},true);
var log=console.error;console.error=function(){errors++;return log.apply(console,arguments)};
window.addEventListener('load',function(){var imgs=[].slice.call(document.images);
document.body.setAttribute('data-images',imgs.length);
document.body.setAttribute('data-broken-images',imgs.filter(function(i){return !(i.complete&&i.naturalWidth>0)}).length);
setTimeout(function(){document.body.setAttribute('data-console-errors',errors)},0);});})();</script>"""

# Click a column head of a table.sortable to sort by it (again: reverse). Numbers (with K/M/B) sort as numbers.
SORT_SCRIPT = """<script>(function(){var mult={K:1e3,M:1e6,B:1e9};
function key(text){var m=/^\\s*(-?\\d+(?:\\.\\d+)?(?:e[-+]?\\d+)?)\\s*([KMB])?/i.exec(text);
return m?[0,parseFloat(m[1])*(mult[(m[2]||'').toUpperCase()]||1)]:[text.trim()==='-'||text.trim()===''?2:1,text.toLowerCase()]}
function cmp(a,b){return a[0]-b[0]||(a[1]<b[1]?-1:a[1]>b[1]?1:0)}
[].forEach.call(document.querySelectorAll('table.sortable'),function(table){
[].forEach.call(table.tHead.rows[0].cells,function(th,col){th.addEventListener('click',function(){
var dir=th.getAttribute('aria-sort')==='ascending'?-1:1,body=table.tBodies[0];
[].forEach.call(table.tHead.rows[0].cells,function(h){h.removeAttribute('aria-sort')});
th.setAttribute('aria-sort',dir>0?'ascending':'descending');
var rows=[].slice.call(body.rows).map(function(r,i){return [key(r.cells[col].textContent),i,r]});
rows.sort(function(a,b){var ka=a[0],kb=b[0];if(ka[0]!==kb[0])return ka[0]-kb[0];return dir*cmp(ka,kb)||a[1]-b[1]});
rows.forEach(function(r){body.appendChild(r[2])});});});});})();</script>"""


@dataclass
class Section:
    """One part of the page: a heading, an optional intro, figures, then any HTML (tables, text)."""

    title: str
    images: list[tuple[str, Path]] = field(default_factory=list)  # (alt text, image path under the out folder)
    html: str = ""
    intro: str = ""

    @property
    def anchor(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")


def table(frame: pd.DataFrame, table_id: str, **kw) -> str:
    """A sortable HTML table of ``frame``."""
    return frame.to_html(index=False, table_id=table_id, border=0, classes="sortable", escape=True, **kw)


def _img(path: str | Path, alt: str, out_dir: Path) -> str:
    rel = Path(path).relative_to(out_dir).as_posix()
    return f'<img src="{html.escape(rel)}" alt="{html.escape(alt)}">'


def render(out_dir: Path, title: str, summary_html: str, sections: list[Section], footer: str = "") -> Path:
    """Write ``out_dir/report.html``: title, summary, a contents line, the sections in order."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'>{CHECK_SCRIPT}<title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<div id='summary'>{summary_html}</div>",
             "<nav>" + "".join(f"<a href='#{s.anchor}'>{html.escape(s.title)}</a>" for s in sections) + "</nav>"]
    for s in sections:
        parts.append(f"<h2 id='{s.anchor}'>{html.escape(s.title)}</h2>")
        if s.intro:
            parts.append(f"<p class='note'>{html.escape(s.intro)}</p>")
        if s.images:
            parts.append("<div class='row'>" + "".join(_img(p, alt, out_dir) for alt, p in s.images) + "</div>")
        parts.append(s.html)
    parts += [f"<p class='note'>{html.escape(footer)}</p>" if footer else "", SORT_SCRIPT, "</body></html>"]
    path = out_dir / "report.html"
    path.write_text("\n".join(parts))
    return path
