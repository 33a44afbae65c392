"""Multi-objective sweeps: the Pareto front of all trials (``pareto.csv``, a figure, the non-dominated configs).

The front is the ``pareto`` column of the trials' table (``tlsweep.trial.objectives.annotate``): finished or stopped
trials that meet the constraints, with each objective read at the trial's best epoch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..config.plan import SweepPlan
from ..trial.objectives import FEASIBLE, PARETO, objectives
from . import plots
from .html import Section
from .html import table as html_table

CSV = "pareto.csv"


def front_table(trials: pd.DataFrame, plan: SweepPlan) -> pd.DataFrame:
    """The non-dominated trials: id, model, objectives, then the searched config values, by first objective."""
    objs = objectives(plan)
    names = [m.name for m, _ in objs]
    searched = [k for k in plan.search.params() if k in trials and trials[k].astype(str).nunique() > 1]
    front = trials[trials[PARETO].astype(bool)] if PARETO in trials else trials.iloc[:0]
    front = front.sort_values(names[0], ascending=objs[0][1] == "min")
    return front[["trial_id", "model", *names, *searched]].reset_index(drop=True)


def pareto_png(trials: pd.DataFrame, plan: SweepPlan, path: Path) -> Path:
    """The first two objectives of every trial; the front (over all objectives) in red, infeasible trials as x."""
    (mx, _), (my, _) = objectives(plan)[:2]
    fig, ax = plots.plt.subplots(figsize=(6, 4))
    x = pd.to_numeric(trials.get(mx.name), errors="coerce").to_numpy(float)
    y = pd.to_numeric(trials.get(my.name), errors="coerce").to_numpy(float)
    front = trials[PARETO].astype(bool).to_numpy() if PARETO in trials else np.zeros(len(trials), bool)
    feasible = trials[FEASIBLE].astype(bool).to_numpy() if FEASIBLE in trials else np.ones(len(trials), bool)
    ax.scatter(x[feasible & ~front], y[feasible & ~front], color="0.6", label="trial")
    if (~feasible).any():
        ax.scatter(x[~feasible], y[~feasible], marker="x", color="0.4", label="breaks a constraint")
    order = np.argsort(x[front], kind="stable")
    ax.plot(x[front][order], y[front][order], "ro--", label="Pareto front")
    for xi, yi, name in zip(x[front], y[front], trials.loc[front, "model"]):
        ax.annotate(str(name), (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"{mx.name} ({mx.help})", fontsize=8)
    ax.set_ylabel(f"{my.name}", fontsize=8)
    ax.legend(fontsize=7)
    return plots.save(fig, path)


def section(trials: pd.DataFrame, plan: SweepPlan, out: Path, figs: Path) -> list[Section]:
    """The report section and ``pareto.csv``; none for a single-objective sweep."""
    objs = objectives(plan)
    if len(objs) < 2:
        return []
    front = front_table(trials, plan)
    front.to_csv(out / CSV, index=False)
    goals = ", ".join(f"{m.name} ({mode})" for m, mode in objs)
    intro = (f"Objectives: {goals}. {len(front)} of {len(trials)} trials are non-dominated (no other trial is at "
             "least as good on every objective and better on one); values at each trial's best epoch; trials that "
             "break a constraint or did not finish are left out.")
    return [Section("Pareto front (all trials)", [("Pareto front", pareto_png(trials, plan, figs / "pareto.png"))],
                    html_table(front, "pareto", float_format=lambda v: f"{v:.4g}"), intro=intro)]


def pareto_section(ctx) -> list[Section]:
    """``SECTIONS`` entry (``tlsweep.report.panels``): the front of a multi-objective sweep."""
    return section(ctx.trials, ctx.sweep.plan, ctx.out, ctx.figs)
