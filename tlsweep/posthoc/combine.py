"""``build_posthoc``: a finished (or stopped) sweep's own checkpoints → greedy and uniform soups per model,
a post-hoc ensemble over the sweep's top-K checkpoints, and temperatures; selection on val, each result scored
once on test against the val-picked best single model. Writes checkpoints, ``posthoc.csv`` and ``posthoc.json``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config.plan import TrialConfig
from ..config.sections import PosthocConfig
from ..models import preprocessing
from ..results.layout import USABLE
from ..trial.loop import load_checkpoint, save_checkpoint
from . import calibration
from .ensemble_checkpoint import build_ensemble_model, ensemble_checkpoint
from .inputs import Inputs, logits_of
from .selection import combine, greedy_selection
from .soup import Soup, greedy_soup, recompute_batchnorm, uniform_soup

SINGLE, GREEDY, UNIFORM, ENSEMBLE = "single", "soup (greedy)", "soup (uniform)", "ensemble (post-hoc)"
SOUPS = {GREEDY: "greedy", UNIFORM: "uniform"}  # kind → file/row name part
SLIM_KEYS = ("model", "config", "classes")


class PosthocSkipped(RuntimeError):
    """The estimated time exceeds the budget given (the report's); ``tlsweep soup`` has none."""


@dataclass
class Candidate:
    """One trial's best kept checkpoint (finished or stopped by the scheduler)."""

    label: str
    trial_id: str
    checkpoint: Path
    metric: float  # the sweep's metric at that epoch
    state: dict  # slim checkpoint: model, config, classes
    size: int = 0
    pre: object = None
    val_logits: np.ndarray | None = None
    test_logits: np.ndarray | None = None

    @property
    def name(self) -> str:
        return f"{self.label}/{self.trial_id}"


def candidates(sweep) -> list[Candidate]:
    """Every usable trial's best kept checkpoint by the sweep's metric, best first."""
    found = []
    for trial in sweep.trials:
        if trial.status not in USABLE:
            continue
        row = trial.best_row(sweep.metric, sweep.mode)
        if row is None:
            continue
        path = trial.checkpoints[int(row["training_iteration"])]
        state = load_checkpoint(path)
        slim = {k: state[k] for k in SLIM_KEYS}
        config = TrialConfig.from_dict(slim["config"])
        found.append(Candidate(trial.model, trial.trial_id, path, float(row[sweep.metric]), slim,
                               config.data.image_size, preprocessing(config.model, config.preprocess)))
    sign = -1 if sweep.mode == "max" else 1
    return sorted(found, key=lambda c: sign * c.metric)


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean()) if len(labels) else float("nan")


@dataclass
class Result:
    """One soup or ensemble (or a single model's calibration), scored on test."""

    name: str
    kind: str
    val_acc: float
    test_logits: np.ndarray
    labels: np.ndarray
    total_params: int
    latency_ms: float
    build_s: float
    temperature: float
    checkpoint: Path | None
    info: dict = field(default_factory=dict)


@dataclass
class Posthoc:
    results: list[Result]
    frame: pd.DataFrame  # posthoc.csv
    info: dict  # posthoc.json
    out: Path
    notes: list[str] = field(default_factory=list)


class Builder:
    def __init__(self, sweep, out: Path, config: PosthocConfig, splits=None, single_test: dict | None = None,
                 budget_s: float | None = None):
        from ..data import load_splits

        self.sweep, self.out, self.config, self.budget_s = sweep, Path(out), config, budget_s
        self.splits = splits or load_splits(sweep.plan.data, sweep.plan.seed)
        self.inputs = Inputs(self.splits, config.bn_images, sweep.plan.seed)
        self.single_test = single_test or {}  # label → test probabilities the report already has
        self.start = time.perf_counter()
        self.notes: list[str] = []
        self.picked = {label: pick.checkpoint for label, pick in self.sweep_picks().items()}

    # -- helpers ------------------------------------------------------------------------------------------------
    def model(self, state: dict):
        from ..report.evaluate import rebuild_model

        return rebuild_model(state)

    def val_logits(self, c: Candidate) -> np.ndarray:
        if c.val_logits is None:
            c.val_logits = logits_of(self.model(c.state), self.inputs.get("val", c.size, c.pre)[0])
        return c.val_logits

    def test_of(self, c: Candidate) -> np.ndarray:
        """A candidate's test logits (the report's probabilities when it has them), computed once."""
        if c.test_logits is None:
            probs = self.single_test.get(c.label) if c.checkpoint == self.picked.get(c.label) else None
            c.test_logits = np.log(np.clip(probs, 1e-12, None)) if probs is not None else \
                self.test_logits(self.model(c.state), c.size, c.pre)
        return c.test_logits

    def labels(self, split: str, c: Candidate) -> np.ndarray:
        return self.inputs.get(split, c.size, c.pre)[1]

    def cook(self, ref: Candidate, sink: dict):
        """Averaged state → BatchNorm recomputed on training images → (state, val accuracy); keeps val logits."""
        def run(state: dict):
            model = self.model({**ref.state, "model": state})
            recompute_batchnorm(model, self.inputs.batches("train", ref.size, ref.pre))
            logits = logits_of(model, self.inputs.get("val", ref.size, ref.pre)[0])
            new = {k: v.detach().clone() for k, v in model.state_dict().items()}
            sink[id(new)] = logits
            return new, _accuracy(logits, self.labels("val", ref))
        return run

    def check_budget(self, cands: list[Candidate], groups: dict[str, list[Candidate]]) -> None:
        """Estimate the remaining work from one timed validation pass; raise ``PosthocSkipped`` over budget."""
        if self.budget_s is None or not cands:
            return
        first = cands[0]
        images = self.inputs.get("val", first.size, first.pre)[0]
        clock = time.perf_counter()
        self.val_logits(first)
        per_image = (time.perf_counter() - clock) / max(len(images), 1)
        n_val, n_test = len(images), len(self.splits.test)
        n_bn = min(len(self.splits.train), self.config.bn_images)
        top = cands[: self.config.top_k]
        soup_steps = sum(len(g) for g in groups.values() if len(g) > 1)  # greedy tries + one uniform per group
        tested = {id(c) for c in top} | {id(c) for c in cands if c.checkpoint in self.picked.values()}
        soups = sum(2 for g in groups.values() if len(g) > 1)
        work = (len(cands) - 1) * n_val + soup_steps * (n_val + n_bn) + (soups + len(tested)) * n_test
        estimate = time.perf_counter() - self.start + per_image * work
        if estimate > self.budget_s:
            raise PosthocSkipped(f"soups and ensemble selection skipped: about {estimate:.0f}s estimated, over the "
                                 f"report's budget of {self.budget_s:.0f}s (posthoc.report_budget_s); run "
                                 f"`tlsweep soup {self.sweep.storage}`")

    def sweep_picks(self) -> dict:
        """The report's picks: each model's best checkpoint by the val metric (constraints applied)."""
        from ..report.leaderboard import pick_best

        return pick_best(self.sweep)

    def test_logits(self, model, size: int, pre) -> np.ndarray:
        return logits_of(model, self.inputs.get("test", size, pre)[0])

    # -- the three parts ----------------------------------------------------------------------------------------
    def soups(self, groups: dict[str, list[Candidate]]) -> list[Result]:
        from ..models.transfer import count_parameters
        from ..report.evaluate import latency_ms

        results = []
        for label, group in groups.items():
            if len(group) < 2:
                self.notes.append(f"{label}: one candidate checkpoint, no soup")
                continue
            group = sorted(group, key=lambda c: -_accuracy(self.val_logits(c), self.labels("val", c)))
            ref, states = group[0], [c.state for c in group]
            accs = [_accuracy(self.val_logits(c), self.labels("val", c)) for c in group]
            for kind, make in ((GREEDY, lambda cook: greedy_soup(states, accs, cook)),
                               (UNIFORM, lambda cook: uniform_soup(states, cook))):
                clock, sink = time.perf_counter(), {}
                soup: Soup = make(self.cook(ref, sink))
                build_s = time.perf_counter() - clock
                val = sink.get(id(soup.state), ref.val_logits)  # a greedy soup of one is its first ingredient
                temperature = calibration.fit_temperature(val, self.labels("val", ref))
                name = f"{label} {SOUPS[kind]} soup"
                path = self.out / f"soup-{_slug(label)}-{SOUPS[kind]}" / "checkpoint.pt"
                used = [group[i] for i in soup.ingredients]
                info = {"ingredients_tried": soup.tried, "ingredients_accepted": soup.accepted,
                        "ingredients": [c.name for c in used],
                        "refused": {group[i].name: why for i, why in soup.refused.items()},
                        "trace": [[group[i].name, acc, kept] for i, acc, kept in soup.trace]}
                save_checkpoint({**ref.state, "model": soup.state, "temperature": temperature,
                                 "soup": {"kind": kind, **info, "val_acc": soup.val_acc}}, path)
                model = self.model({**ref.state, "model": soup.state})
                test = self.test_of(ref) if soup.state is ref.state["model"] else \
                    self.test_logits(model, ref.size, ref.pre)  # a greedy soup of one is its first ingredient
                results.append(Result(name, kind, soup.val_acc, test,
                                      self.labels("test", ref), count_parameters(model)[0],
                                      latency_ms(model, ref.size), build_s, temperature, path, info))
        return results

    def ensemble(self, cands: list[Candidate]) -> Result | None:
        from ..models.transfer import count_parameters
        from ..report.evaluate import latency_ms

        top = cands[: self.config.top_k]
        if len(top) < 2:
            self.notes.append("fewer than two candidate checkpoints: no post-hoc ensemble")
            return None
        clock = time.perf_counter()
        labels = self.labels("val", top[0])
        probs = [calibration.softmax(self.val_logits(c)) for c in top]
        sel = greedy_selection(probs, labels, self.config.max_steps)
        members = [top[i] for i in sel.members]
        val = np.log(np.clip(combine([probs[i] for i in sel.members], sel.weights), 1e-12, None))
        temperature = calibration.fit_temperature(val, labels)
        build_s = time.perf_counter() - clock
        info = {"members": [c.name for c in members], "weights": list(sel.weights), "steps": sel.steps,
                "candidates": [c.name for c in top], "trace": list(sel.trace)}
        state = ensemble_checkpoint([c.state for c in members], sel.weights, temperature, info)
        path = self.out / "ensemble" / "checkpoint.pt"
        save_checkpoint(state, path)
        test = [calibration.softmax(self.test_of(c)) for c in members]
        module, _ = build_ensemble_model(state)
        return Result("post-hoc ensemble", ENSEMBLE, sel.val_acc,
                      np.log(np.clip(combine(test, sel.weights), 1e-12, None)), self.labels("test", members[0]),
                      sum(count_parameters(m)[0] for m in module.members), latency_ms(module, module.input_size),
                      build_s, temperature, path, info)

    def singles(self, cands: list[Candidate]) -> list[Result]:
        """Each model's val-picked checkpoint with its fitted temperature (a slim calibrated copy is written)."""
        from ..models.transfer import count_parameters
        from ..report.evaluate import latency_ms

        by_path = {c.checkpoint: c for c in cands}
        results = []
        for label, checkpoint in self.picked.items():
            c = by_path.get(checkpoint)
            if c is None:
                continue
            labels = self.labels("val", c)
            temperature = calibration.fit_temperature(self.val_logits(c), labels)
            model = self.model(c.state)
            test = self.test_of(c)
            path = self.out / "calibrated" / _slug(label) / "checkpoint.pt"
            save_checkpoint({**c.state, "temperature": temperature}, path)
            results.append(Result(label, SINGLE, _accuracy(self.val_logits(c), labels), test,
                                  self.labels("test", c), count_parameters(model)[0], latency_ms(model, c.size),
                                  0.0, temperature, path, {"trial": c.name, "source": str(c.checkpoint)}))
        return results

    def run(self) -> Posthoc:
        self.out.mkdir(parents=True, exist_ok=True)
        cands = candidates(self.sweep)
        groups: dict[str, list[Candidate]] = {}
        for c in cands:
            groups.setdefault(c.label, []).append(c)
        self.check_budget(cands, groups)
        singles = self.singles(cands)
        clock = time.perf_counter()
        soups = self.soups(groups)
        soup_s = time.perf_counter() - clock
        clock = time.perf_counter()
        ens = self.ensemble(cands)
        ensemble_s = time.perf_counter() - clock
        results = singles + soups + ([ens] if ens is not None else [])
        frame = score(results)
        info = {"candidates": [{"name": c.name, "checkpoint": str(c.checkpoint), self.sweep.metric: c.metric}
                               for c in cands],
                "soup_seconds": soup_s, "ensemble_seconds": ensemble_s,
                "total_seconds": time.perf_counter() - self.start, "notes": self.notes,
                "results": {r.name: {"kind": r.kind, "temperature": r.temperature, **r.info} for r in results}}
        frame.to_csv(self.out / "posthoc.csv", index=False)
        (self.out / "posthoc.json").write_text(json.dumps(info, indent=1, default=str))
        return Posthoc(results, frame, info, self.out, self.notes)


def score(results: list[Result]) -> pd.DataFrame:
    """One row per result: test accuracy (Clopper–Pearson), McNemar (Holm over these rows) against the first
    single model (the val-picked best), ECE on test before and after temperature scaling, cost."""
    from ..report.stats import accuracy_interval, compare_to_best

    if not results:
        return pd.DataFrame()
    correct = {r.name: r.test_logits.argmax(axis=1) == r.labels for r in results}
    best = next((r.name for r in results if r.kind == SINGLE), results[0].name)
    comparisons = compare_to_best(correct, best)
    best_test = float(correct[best].mean()) if len(correct[best]) else float("nan")
    rows = []
    for r in results:
        k, n = int(correct[r.name].sum()), len(correct[r.name])
        low, high = accuracy_interval(k, n)
        cmp = comparisons[r.name]
        raw = calibration.ece(calibration.softmax(r.test_logits), r.labels) if n else float("nan")
        cal = calibration.ece(calibration.softmax(r.test_logits, r.temperature), r.labels) if n else float("nan")
        acc = k / n if n else float("nan")
        rows.append({
            "model": r.name, "kind": r.kind, "val_acc": r.val_acc, "test_acc": acc, "test_acc_ci_low": low,
            "test_acc_ci_high": high, "p_vs_best": cmp.p_holm, "group": cmp.group, "best_only": cmp.best_only,
            "other_only": cmp.other_only, "total_params": r.total_params, "latency_ms": r.latency_ms,
            "build_s": r.build_s, "temperature": r.temperature, "ece_test": raw, "ece_test_calibrated": cal,
            "ingredients_tried": r.info.get("ingredients_tried"), "ingredients_accepted":
                r.info.get("ingredients_accepted"),
            "members": ";".join(f"{m}:{w:.3f}" for m, w in zip(r.info.get("members", []), r.info.get("weights", []))),
            "verdict": _verdict(r, acc, best_test, cmp),
            "checkpoint": str(r.checkpoint) if r.checkpoint else "",
        })
    return pd.DataFrame(rows)


def _verdict(r: Result, acc: float, best_test: float, cmp) -> str:
    if r.kind == SINGLE:
        return "val-picked best single model" if cmp.group == "best" else "single model"
    if cmp.group == "better":
        return "helps: better than the best single model on test (McNemar, Holm)"
    if acc > best_test:
        return f"higher test accuracy than the best single model, not significant (p={cmp.p_holm:.2g})"
    return "does not help on this data: test accuracy not above the best single model"


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def build_posthoc(results_dir, out=None, splits=None, single_test: dict | None = None,
                  budget_s: float | None = None, config: PosthocConfig | None = None) -> Posthoc:
    """Soups, post-hoc ensemble and temperatures of the sweep in ``results_dir`` (default out:
    ``<results_dir>/posthoc``). ``budget_s``: raise ``PosthocSkipped`` when the estimate exceeds it."""
    from ..report.collect import collect

    sweep = collect(results_dir)
    out = Path(out) if out is not None else sweep.storage / "posthoc"
    return Builder(sweep, out, config or sweep.plan.posthoc, splits, single_test, budget_s).run()
