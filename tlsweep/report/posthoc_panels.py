"""The report's "Soups and ensembles" and "Calibration" sections (``tlsweep.posthoc`` builds what they show)."""

from __future__ import annotations

import html as html_lib

import numpy as np
import pandas as pd

from ..posthoc import calibration
from . import plots
from .html import Section, table


def reliability_png(name: str, probs: np.ndarray, labels: np.ndarray, path, temperature: float | None = None):
    """Accuracy against confidence per bin (15 bins), the diagonal, and the scaled curve when a temperature is
    given."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.4, 3.2))
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--")
    curves = [("raw", probs)]
    if temperature is not None:
        logits = np.log(np.clip(probs, 1e-12, None))
        curves.append((f"T={temperature:.2f}", calibration.softmax(logits, temperature)))
    for label, p in curves:
        rel = calibration.reliability(p, labels)
        seen = rel.counts > 0
        ax.plot(rel.confidence[seen], rel.accuracy[seen], marker="o", ms=3, label=f"{label}: ECE {rel.ece:.3f}")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
    ax.set_title(f"{name} (test)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return plots.save(fig, path)


def _display(frame: pd.DataFrame) -> pd.DataFrame:
    from .leaderboard import human_count

    out = pd.DataFrame({"model": frame["model"], "kind": frame["kind"]})
    out["val acc"] = frame["val_acc"].map("{:.3f}".format)
    out["test acc (95% CI)"] = [f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in
                                zip(frame["test_acc"], frame["test_acc_ci_low"], frame["test_acc_ci_high"])]
    out["p vs best single (McNemar, Holm)"] = frame["p_vs_best"].map(lambda p: "-" if p != p else f"{p:.3g}")
    out["ingredients (accepted/tried)"] = [
        "-" if t != t or t is None else f"{int(a)}/{int(t)}"
        for a, t in zip(frame["ingredients_accepted"], frame["ingredients_tried"])]
    out["members:weights"] = frame["members"].fillna("").map(lambda s: s.replace(";", "; ") or "-")
    out["params"] = frame["total_params"].map(human_count)
    out["latency ms"] = frame["latency_ms"].map("{:.1f}".format)
    out["build s"] = frame["build_s"].map("{:.1f}".format)
    out["verdict"] = frame["verdict"]
    return out


def posthoc_sections(ctx) -> list[Section]:
    posthoc, note = ctx.extra.get("posthoc"), ctx.extra.get("posthoc_note")
    out = []
    if posthoc is not None and len(posthoc.frame):
        frame = posthoc.frame
        info = posthoc.info
        notes = "".join(f"<li>{html_lib.escape(n)}</li>" for n in posthoc.notes)
        timing = (f"<p class='note'>Built in {info['soup_seconds']:.1f}s (soups) + {info['ensemble_seconds']:.1f}s "
                  f"(ensemble: selection, its members' test passes); all of it, candidates' validation passes "
                  f"included: {info['total_seconds']:.1f}s. Checkpoints in {html_lib.escape(str(posthoc.out))}.</p>")
        out.append(Section("Soups and ensembles", html=table(_display(frame), "posthoc") + timing +
                           (f"<ul>{notes}</ul>" if notes else ""), intro=(
            "Built from every trial's best kept checkpoint (stopped trials included) and chosen on validation only; "
            "each row is scored once on test. Greedy soup: ingredients of one model (same pretrained weights, head "
            "and image size) added in order of validation accuracy, each kept only if validation accuracy does not "
            "drop; uniform soup: all of them averaged. BatchNorm statistics are re-estimated on training images "
            "after averaging. Post-hoc ensemble: greedy selection with replacement over the sweep's top-K "
            "checkpoints (not the trained two-backbone ensembles). 'p vs best single' is McNemar's exact test "
            "against the val-picked best single model, Holm-corrected over these rows. A soup costs one model at "
            "inference; an ensemble costs all its members.")))
    elif note:
        out.append(Section("Soups and ensembles", html=f"<p class='note'>{html_lib.escape(note)}</p>"))
    out += calibration_sections(ctx, posthoc)
    return out


def calibration_sections(ctx, posthoc) -> list[Section]:
    temps = {}
    if posthoc is not None and len(posthoc.frame):
        temps = dict(zip(posthoc.frame["model"], posthoc.frame["temperature"]))
    images, rows = [], []
    for name, ev in ctx.evals.items():
        if not len(ev.labels):
            continue
        t = temps.get(name)
        images.append((f"reliability {name}", reliability_png(name, ev.probs, ev.labels,
                                                              ctx.figs / f"reliability_{plots.slug(name)}.png", t)))
        scaled = calibration.ece(calibration.softmax(np.log(np.clip(ev.probs, 1e-12, None)), t), ev.labels) \
            if t is not None else float("nan")
        rows.append({"model": name, "ECE test (raw)": f"{calibration.ece(ev.probs, ev.labels):.4f}",
                     "temperature (fit on val)": "-" if t is None else f"{t:.3f}",
                     "ECE test (calibrated)": "-" if t is None else f"{scaled:.4f}"})
    if posthoc is not None and len(posthoc.frame):
        for r in posthoc.frame[posthoc.frame["kind"] != "single"].itertuples():
            rows.append({"model": r.model, "ECE test (raw)": f"{r.ece_test:.4f}",
                         "temperature (fit on val)": f"{r.temperature:.3f}",
                         "ECE test (calibrated)": f"{r.ece_test_calibrated:.4f}"})
    if not rows:
        return []
    return [Section("Calibration", images, table(pd.DataFrame(rows), "calibration"), intro=(
        "Expected calibration error on test (15 equal-width confidence bins) before and after temperature "
        "scaling; the temperature is fitted on validation by NLL and kept in the soup, ensemble and calibrated "
        "checkpoints, where `tlsweep predict` applies it (--raw shows uncalibrated probabilities)."))]
