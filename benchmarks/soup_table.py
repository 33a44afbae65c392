"""Markdown rows for benchmarks/RESULTS.md from one or more ``tlsweep soup`` outputs (posthoc.csv/json):
``python -m benchmarks.soup_table results/soup_fashion/posthoc results/soup_fashion_per_trial/posthoc``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd


def rows(folder: Path) -> list[str]:
    frame = pd.read_csv(folder / "posthoc.csv")
    info = json.loads((folder / "posthoc.json").read_text())
    out = []
    for r in frame.itertuples(index=False):
        extra = ""
        if r.kind.startswith("soup"):
            extra = f"{int(r.ingredients_accepted)}/{int(r.ingredients_tried)} ingredients"
        elif r.kind.startswith("ensemble"):
            extra = str(r.members).replace(";", ", ")
        p = "-" if r.p_vs_best != r.p_vs_best else f"{r.p_vs_best:.3g}"
        out.append(f"| {folder.parent.name} | {r.model} | {r.kind} | {r.val_acc:.3f} | {r.test_acc:.3f} "
                   f"[{r.test_acc_ci_low:.3f}, {r.test_acc_ci_high:.3f}] | {p} | {r.latency_ms:.1f} | "
                   f"{r.build_s:.1f} | {r.ece_test:.3f} → {r.ece_test_calibrated:.3f} (T={r.temperature:.2f}) | "
                   f"{r.verdict}{'; ' + extra if extra else ''} |")
    out.append(f"| {folder.parent.name} | all of it | | | | | | {info['total_seconds']:.1f} | | soups "
               f"{info['soup_seconds']:.1f} s, ensemble {info['ensemble_seconds']:.1f} s, rest: candidates' val "
               f"passes and test scoring |")
    return out


def main(folders: list[str]) -> None:
    print("| sweep | model | kind | val acc | test acc (95% CI) | McNemar p vs best single (Holm) | latency ms | "
          "build s | ECE test raw → calibrated | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for folder in folders:
        print("\n".join(rows(Path(folder))))


if __name__ == "__main__":
    main(sys.argv[1:])
