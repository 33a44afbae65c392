"""MkDocs hook: fills each ``<!-- tlsweep:NAME -->`` marker of a page with the reference ``refgen.GENERATORS[NAME]``
builds from the code (sweep-file schema, CLI, public API, example sweeps)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "docs")]  # this checkout's tlsweep, then refgen beside this file

import refgen  # noqa: E402

MARKER = re.compile(r"<!-- tlsweep:([a-z-]+) -->")


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name not in refgen.GENERATORS:
            raise KeyError(f"{page.file.src_path}: unknown marker {name!r}; known: {', '.join(refgen.GENERATORS)}")
        return refgen.GENERATORS[name]()

    return MARKER.sub(fill, markdown)
