"""report.html: one page, images linked relatively from the same folder."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

STYLE = """body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}img{max-width:100%;margin:4px}
pre{background:#f6f6f6;padding:6px;font-size:12px}.row{display:flex;flex-wrap:wrap;gap:12px}"""

# Marks the page once loaded: how many images failed to decode (checked by the tests in headless Chromium).
CHECK_SCRIPT = """<script>window.addEventListener('load',function(){var imgs=[].slice.call(document.images);
document.body.setAttribute('data-images',imgs.length);
document.body.setAttribute('data-broken-images',imgs.filter(function(i){return !(i.complete&&i.naturalWidth>0)}).length);
});</script>"""


def _img(path: str | Path, alt: str, out_dir: Path) -> str:
    rel = Path(path).relative_to(out_dir).as_posix()
    return f'<img src="{html.escape(rel)}" alt="{html.escape(alt)}">'


def render(out_dir: Path, title: str, summary: str, board: pd.DataFrame, trials: pd.DataFrame,
           sections: list[tuple[str, list[tuple[str, Path]], str]]) -> Path:
    """``sections``: (heading, [(alt, image path)], extra html)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style>{CHECK_SCRIPT}</head><body>",
             f"<h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>",
             "<h2>Leaderboard</h2><p>Best checkpoint per model picked by the validation metric (rows in that order); "
             "the test split is used once, for the test columns.</p>",
             board.to_html(index=False, table_id="leaderboard", border=0, escape=True)]
    for heading, images, extra in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><div class='row'>")
        parts += [_img(p, alt, out_dir) for alt, p in images]
        parts.append(f"</div>{extra}")
    parts += ["<h2>All trials</h2>", trials.to_html(index=False, table_id="trials", border=0, na_rep="-",
                                                   float_format=lambda v: f"{v:.4g}"),
              "</body></html>"]
    path = out_dir / "report.html"
    path.write_text("\n".join(parts))
    return path
