"""The ``tlsweep`` command line: a few lines per command over the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from .errors import TLSweepError

HELP = {"help_option_names": ["-h", "--help"]}
ENVIRONMENT = """Environment variables: RAY_ADDRESS (Ray cluster for `run`, like --address); TORCH_HOME (torchvision's
weights cache, default ~/.cache/torch); TLSWEEP_CACHE (decoded-image and frozen-feature caches, default
$XDG_CACHE_HOME/tlsweep or ~/.cache/tlsweep); TLSWEEP_TORCH_THREADS (torch threads per trial, default its CPUs)."""


class _Commands(TyperGroup):
    """Every ``TLSweepError`` a command raises: its message on stderr, no traceback, its ``exit_code``."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TLSweepError as err:
            err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
            raise typer.Exit(err.exit_code) from None


app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings=HELP, help="Hyperparameter sweeps for transfer learning on image classification.", epilog=ENVIRONMENT)
data_app = typer.Typer(no_args_is_help=True, context_settings=HELP, help="Datasets: make, inspect, export.")
app.add_typer(data_app, name="data")
weights_app = typer.Typer(no_args_is_help=True, context_settings=HELP,
                          help="Pretrained weights in torchvision's cache (offline use).")
app.add_typer(weights_app, name="weights")
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True)


SET_HELP = "Override a sweep-file field: KEY=VALUE, dotted KEY, VALUE read as YAML (repeatable), e.g. " \
           "--set epochs=5 --set search.lr='{loguniform: [1e-4, 1e-2]}'."


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        def v(name):
            try:
                return version(name)
            except PackageNotFoundError:
                return "not installed"

        console.print(f"tlsweep {v('tlsweep')} (torch {v('torch')}, torchvision {v('torchvision')}, "
                      f"ray {v('ray')}, optuna {v('optuna')}; Python {sys.version.split()[0]})", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                       help="Print the versions of tlsweep, torch, Ray and Optuna and exit.")) -> None:
    """Hyperparameter sweeps for transfer learning on image classification."""


def _load(path: Path, sets: list[str] | None = None, as_json: bool = False):
    from .config.spec import SpecError, load_spec, parse_sets

    try:
        return load_spec(path, parse_sets(sets) if sets else None)
    except SpecError as err:
        if as_json:
            _print_json({"file": str(path), "ok": False, "problems": _problems(err)})
        else:
            err_console.print(f"[red]error:[/] {escape(err.format())}", highlight=False)
        raise typer.Exit(2) from None


def _problems(err) -> list[dict]:
    return [{"path": p, "line": line, "message": msg} for p, line, msg in err.problems]


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def _preflight(spec, data: bool, address: str | None = None, local_run: bool = True):
    """Checks against the dataset and machine: warnings printed, problems → exit 2 (see tlsweep.sweep.preflight)."""
    from .sweep.preflight import preflight

    checked = preflight(spec, data=data, address=address, local_run=local_run)
    for warning in checked.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if checked.problems:
        from .config.spec import SpecError

        err_console.print(f"[red]error:[/] {escape(SpecError(str(spec.source), checked.problems).format())}",
                          highlight=False)
        raise typer.Exit(2)
    return checked


@app.command()
def validate(
    files: list[Path] = typer.Argument(..., help="Sweep files to check."),
    data: bool = typer.Option(False, help="Also read the dataset: splits, unreadable images, duplicates, "
                                          "imbalance, batch size vs the train split."),
    address: Optional[str] = typer.Option(None, help="Also check the resources against this Ray cluster "
                                                     "(HOST:PORT or 'auto'); without it, GPUs this machine lacks "
                                                     "are a warning (the file may be meant for a cluster)."),
    sets: list[str] = typer.Option([], "--set", help=SET_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file on stdout (ok, counts, problems)."),
) -> None:
    """Check sweep files without running anything."""
    from .config.space import total_trials
    from .config.spec import SpecError

    for path in files:
        spec = _load(path, sets, as_json)
        if as_json:
            from .sweep.preflight import preflight

            checked = preflight(spec, data=data, address=address, local_run=address is not None)
            problems = _problems(SpecError(str(path), checked.problems)) if checked.problems else []
            _print_json({"file": str(path), "ok": not problems, "problems": problems, "warnings": checked.warnings,
                         "models": spec.model_labels(), "trials": total_trials(spec.plan()), "epochs": spec.epochs,
                         "storage": spec.storage_dir, "data": checked.counts or None})
            if problems:
                raise typer.Exit(2)
            continue
        checked = _preflight(spec, data, address=address, local_run=address is not None)
        if address:
            _check_cluster_resources(spec, address)
        if checked.counts:
            console.print("data: " + ", ".join(f"{n} {k}" for k, n in checked.counts.items()))
        console.print(f"[green]ok[/] {path}: {len(spec.models)} model(s), {total_trials(spec.plan())} trials, "
                      f"{spec.epochs} epochs max, results → {spec.storage_dir}")


def _check_cluster_resources(spec, address: str) -> None:
    """``validate --address``: can the cluster host one trial of every model? Problems → exit 2."""
    from .sweep.cluster import alive_nodes, check_resources, cluster_gpus
    from .sweep.runner import init_ray
    from .trial.gpus import resolve_resources

    init_ray(address)
    nodes = alive_nodes()
    check_resources(resolve_resources(spec.plan(), cluster_gpus(nodes)), nodes)


@app.command()
def models(pattern: str = typer.Argument("*", help="Glob over backbone names, e.g. 'resnet*'; "
                                                   "'timm/*convnext*' lists timm's models.")) -> None:
    """List the registered backbones."""
    from .models.backbones import get_backbone, list_backbones

    table = Table("backbone", "family", "stages", "input", "Grad-CAM layer", "weights")
    if pattern.startswith("timm/"):  # timm's models are listed, not built (stages appear on first use)
        from .models.timm_models import describe

        for row in describe(list_backbones(pattern)):
            table.add_row(*row)
        console.print(table)
        return
    for name in list_backbones(pattern):
        b = get_backbone(name)
        table.add_row(name, b.family, str(b.num_stages), f"{b.input_size}{' (fixed)' if b.fixed_input_size else ''}",
                      b.cam_layer, b.weights_enum)
    console.print(table)


@app.command()
def run(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="Sweep file (YAML)."),
    address: Optional[str] = typer.Option(None, envvar="RAY_ADDRESS", show_envvar=True,
                                          help="Ray cluster to attach to (HOST:PORT or 'auto'); else a local Ray."),
    num_samples: Optional[int] = typer.Option(None, min=1, help="Override num_samples (trials per model)."),
    resume: bool = typer.Option(False, help="Continue an interrupted sweep in the same storage."),
    sets: list[str] = typer.Option([], "--set", help=SET_HELP),
    progress: Literal["auto", "live", "plain", "none"] = typer.Option(
        "auto", help="live: a view redrawn in place; plain: a line per trial event (logs); auto: live in a terminal."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output (same as --progress none)."),
) -> None:
    """Run a sweep on Ray Tune (Optuna proposes, ASHA stops weak trials)."""
    spec = _load(file, sets)
    hooks = (ctx.obj or {}).get("trial_hooks")  # a Python caller's seam: app(args, obj={"trial_hooks": ...})
    from .config.space import total_trials
    from .sweep.resume import sweep_state
    from .sweep.runner import SweepInterrupted, run_sweep

    plan = (spec.model_copy(update={"num_samples": num_samples}) if num_samples else spec).plan()
    console.print(f"[bold]{spec.name}[/]: {total_trials(plan)} trials over {len(spec.models)} model(s), "
                  f"results → {spec.storage_dir}")
    if not resume and sweep_state(spec.storage_dir, total_trials(plan)) == "unfinished":
        console.print(f"{spec.storage_dir} holds an unfinished sweep: resuming it (finished trials are kept)")
        resume = True
    try:
        if address:  # a dead address fails at once, before the dataset and GPU memory checks
            from .sweep.cluster import probe_cluster

            probe_cluster(address)
        checked = _preflight(spec, data=True, address=address)
        result = run_sweep(spec, address=address, num_samples=num_samples, resume=resume, checked=checked,
                           progress=_view(progress, quiet), hooks=hooks)
    except KeyboardInterrupt as err:
        if isinstance(err, SweepInterrupted):
            print_summary(err.result, spec.scheduler.metric, spec.scheduler.mode)
        err_console.print(f"interrupted; what finished is kept. Continue with: tlsweep run {file} --resume",
                          highlight=False)
        raise typer.Exit(130) from None
    print_summary(result, spec.scheduler.metric, spec.scheduler.mode)
    if result.all_failed:
        raise typer.Exit(1)


def _localize(path: str) -> Path:
    """A local path for a checkpoint, trial or results folder given as a path or a URI (mirrored)."""
    from .results.storage import localize

    try:
        return localize(path)
    except (FileNotFoundError, OSError, ValueError) as err:
        err_console.print(f"[red]error:[/] cannot read {escape(path)}: {escape(str(err))}", highlight=False)
        raise typer.Exit(2) from None


def _view(progress: str, quiet: bool) -> str:
    return "none" if quiet else progress


def print_summary(result, metric: str, mode: str) -> None:
    counts = result.trials["status"].value_counts().to_dict()
    console.print("trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) +
                  f" in {result.seconds:.0f}s")
    best = result.best_per_model(metric, mode)
    table = Table("model", metric, "epochs", "lr", "batch", "freeze", "optimizer", "lr scheduler",
                  title="best trial per model")
    for model, row in best.iterrows():
        table.add_row(escape(str(model)), f"{row[metric]:.4f}", f"{row['best_epoch']}/{row['epochs']}",
                      f"{row['lr']:.2e}", str(row["batch_size"]), str(row["freeze_depth"]), str(row["optimizer"]),
                      str(row["lr_scheduler"]))
    console.print(table)
    trials = result.trials
    if "feasible" in trials:
        console.print(f"{int((~trials['feasible'].astype(bool)).sum())} trial(s) break the constraints "
                      "(never counted as best)")
    if "pareto" in trials:
        front = trials[trials["pareto"].astype(bool)]
        console.print(f"Pareto front: {len(front)} of {len(trials)} trials ({', '.join(map(str, front['trial_id']))}; "
                      "column `pareto` of summary.csv)", highlight=False)
    console.print(f"results: {result.storage}  (tensorboard --logdir {result.storage})")


@app.command()
def demo(
    ctx: typer.Context,
    sweep: Path = typer.Option(Path("sweeps/demo.yaml"), help="The demo sweep file."),
    report: bool = typer.Option(True, help="Write the report after the sweep."),
) -> None:
    """The offline demo: Fashion-MNIST (Debian files) + mobilenet_v2 ImageNet weights (pip package) → sweep →
    report. Nothing is downloaded at run time."""
    from .data.torchvision_sources import PREPARERS
    from .models.weights import bundled_files, ensure_weights, import_weights

    spec = _load(sweep)
    try:
        if spec.data.source in PREPARERS:
            raw = PREPARERS[spec.data.source](spec.data.root)
            console.print(f"data: {spec.data.source} ready in {raw}")
        for path in bundled_files():
            entry, target = import_weights(path)
            console.print(f"weights: {entry.label} ready in {target}")
        ensure_weights(spec.plan(), download=False)
    except TLSweepError as err:
        err_console.print(f"[red]error:[/] {escape(str(err))}\n(set up with: bash scripts/setup.sh demo)",
                          highlight=False)
        raise typer.Exit(2) from None
    run(ctx, sweep, address=None, num_samples=None, resume=False, sets=[], progress="auto", quiet=False)
    if report:
        _report(spec.storage_dir)


def _report(storage: str) -> None:
    try:
        from .report import make_report
    except ImportError:
        console.print("note: tlsweep.report is not available in this build; no report written")
        return
    console.print(f"report: {make_report(storage)}")


@weights_app.command("import")
def weights_import(
    files: list[Path] = typer.Argument(..., help="Weight files as published by torchvision, "
                                                 "e.g. mobilenet_v2-b0353104.pth, or one timm file."),
    timm_name: Optional[str] = typer.Option(None, "--timm", help="The file is these timm weights, NAME.TAG "
                                            "(e.g. convnext_atto.d2_in1k): checked by loading it into the model."),
) -> None:
    """Check files against torchvision's weights (sha256 prefix in their URLs), or load a file into a timm model,
    and put them where trials look."""
    from .models.weights import import_weights

    for path in files:
        if timm_name:
            from .models.timm_models import import_timm_weights

            console.print(f"[green]ok[/] timm/{timm_name} → {import_timm_weights(path, timm_name)}")
            continue
        entry, target = import_weights(path)
        console.print(f"[green]ok[/] {entry.label} → {target}")


@weights_app.command("prefetch")
def weights_prefetch(
    file: Path = typer.Argument(..., help="Sweep file (YAML)."),
    download: bool = typer.Option(True, help="Try to download missing files (needs internet)."),
) -> None:
    """Fill torchvision's cache with every pretrained backbone of a sweep; exit 1 when something is missing."""
    from .models.weights import prefetch

    statuses = prefetch(_load(file).plan(), download)
    for s in statuses:
        colour = "red" if s.state == "missing" else "green"
        console.print(f"[{colour}]{s.state}[/] {s.backbone} {s.label} {s.path}" +
                      (f"\n  {escape(s.detail)}" if s.detail else ""), highlight=False)
    if not statuses:
        console.print("no pretrained weights needed")
    if any(s.state == "missing" for s in statuses):
        raise typer.Exit(1)


@data_app.command("prepare")
def data_prepare(
    name: str = typer.Argument(..., help="Dataset: fashionmnist."),
    root: Path = typer.Option(Path("data"), help="The sweep's data.root."),
) -> None:
    """Prepare a torchvision dataset from files on this machine (Fashion-MNIST: Debian's dataset-fashion-mnist)."""
    from .data.torchvision_sources import PREPARERS

    if name not in PREPARERS:
        err_console.print(f"[red]error:[/] no preparer for {name!r}; allowed: {', '.join(sorted(PREPARERS))}")
        raise typer.Exit(2)
    console.print(f"[green]ok[/] {name} ready in {PREPARERS[name](root)}")


@data_app.command("export")
def data_export(
    file: Path = typer.Argument(..., help="Sweep file whose data section to export."),
    out: Path = typer.Argument(..., help="Folder to write OUT/{train,val,test}/<class>/*.png into."),
    limit: Optional[int] = typer.Option(None, min=1, help="At most this many images per split."),
) -> None:
    """Write a sweep's data (any source, with its subset and split) as an ImageFolder of PNGs."""
    from .data.export_folders import export_imagefolder

    spec = _load(file)
    counts = export_imagefolder(spec.plan().data, out, spec.seed, limit)
    console.print(f"[green]ok[/] wrote {out}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))


@app.command()
def report(
    results_dir: str = typer.Argument(..., help="The sweep's storage folder or URI (finished, running, or copied)."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default RESULTS_DIR/report; for a URI, the "
                                                  "local mirror's report/, also uploaded to RESULTS_DIR/report)."),
    cam_images: int = typer.Option(8, min=0, help="Test images in the Grad-CAM grid and galleries."),
    threads: Optional[int] = typer.Option(None, min=1, help="Torch threads (default $TLSWEEP_TORCH_THREADS, else "
                                                            "torch's); 1 is fastest on cores other work shares."),
    as_json: bool = typer.Option(False, "--json", help="Print the leaderboard and report path as JSON."),
    soups: Optional[bool] = typer.Option(None, "--soups/--no-soups", help="Build model soups, the post-hoc "
                                         "ensemble and temperatures (default: the sweep file's posthoc.enabled)."),
) -> None:
    """Leaderboard (picked on val, evaluated once on test), plots, Grad-CAM and report.html."""
    from .report import make_report
    from .results.storage import is_uri, localize, upload

    try:
        page = make_report(localize(results_dir), out, cam_images=cam_images, threads=threads, soups=soups)
        if is_uri(results_dir) and out is None:
            err_console.print(f"uploaded → {upload(page.parent, results_dir, 'report')}", highlight=False)
    except FileNotFoundError as err:
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        raise typer.Exit(2) from None
    import pandas as pd

    from .report.leaderboard import display_frame

    board = pd.read_csv(page.parent / "leaderboard.csv", dtype={"trial_id": str})  # ids like 1234e567
    if as_json:
        rows = {k: json.loads(board[(board["kind"] == "single") == (k == "leaderboard")].to_json(orient="records"))
                for k in ("leaderboard", "posthoc")}
        _print_json({"report": str(page), **rows})
        return
    shown = display_frame(board[board["kind"] == "single"])
    shown = shown[["model", "test acc (95% CI)", *[c for c in shown if c.startswith("vs best")], "val acc",
                   "macro F1 (95% CI)", "lr", "epochs", "trials (stopped)", "train s", "params (trainable)",
                   "latency ms"]]
    table = Table(*shown.columns, title="leaderboard (picked on val, scored on test)")
    for row in shown.itertuples(index=False):
        table.add_row(*(escape(str(v)) for v in row))
    console.print(table)
    _print_posthoc(board[board["kind"] != "single"])
    console.print(f"report: {page}")


def _print_posthoc(frame) -> None:
    if not len(frame):
        return
    table = Table("model", "kind", "val acc", "test acc (95% CI)", "p vs best single", "latency ms", "verdict",
                  title="soups and post-hoc ensemble (picked on val, scored on test)")
    for r in frame.itertuples(index=False):
        p = "-" if r.p_vs_best != r.p_vs_best else f"{r.p_vs_best:.3g}"
        table.add_row(escape(r.model), r.kind, f"{r.val_acc:.3f}",
                      f"{r.test_acc:.3f} [{r.test_acc_ci_low:.3f}, {r.test_acc_ci_high:.3f}]", p,
                      f"{r.latency_ms:.1f}", escape(str(r.verdict)))
    console.print(table)


@app.command()
def soup(
    results_dir: str = typer.Argument(..., help="The sweep's storage folder or URI."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default RESULTS_DIR/posthoc)."),
    threads: Optional[int] = typer.Option(None, min=1, help="Torch threads (default $TLSWEEP_TORCH_THREADS, else "
                                                            "torch's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows and output folder as JSON."),
) -> None:
    """Model soups (greedy and uniform, per model), a post-hoc ensemble over the sweep's top-K checkpoints and
    temperatures, all chosen on val and scored once on test; writes their checkpoints, posthoc.csv/json."""
    import os

    import torch

    from .data.sources import DataError
    from .posthoc.combine import build_posthoc
    from .report import ReportError
    from .results.storage import localize

    threads = threads or int(os.environ.get("TLSWEEP_TORCH_THREADS", 0)) or None
    if threads:
        torch.set_num_threads(threads)
    try:
        result = build_posthoc(localize(results_dir), out)
    except (FileNotFoundError, ReportError, DataError) as err:
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        _print_json({"out": str(result.out), "rows": json.loads(result.frame.to_json(orient="records")),
                     "notes": result.notes})
        return
    _print_posthoc(result.frame)
    for note in result.notes:
        console.print(f"note: {escape(note)}")
    console.print(f"posthoc: {result.out} (soups {result.info['soup_seconds']:.1f}s, ensemble "
                  f"{result.info['ensemble_seconds']:.1f}s)")


@app.command()
def status(
    results_dir: str = typer.Argument(..., help="The sweep's storage (local folder or URI), running or finished."),
    as_json: bool = typer.Option(False, "--json", help="Print the progress as JSON."),
    watch: Optional[float] = typer.Option(None, min=1, help="Redraw every WATCH seconds until the sweep ends."),
) -> None:
    """Progress of a sweep from its storage alone: trials by status, best per model, epochs, ETA, failures."""
    import time

    from .results.layout import ResultsError
    from .results.progress import Progress
    from .results.storage import mirror, without_checkpoints

    def load() -> Progress:
        try:
            return Progress.from_storage(results_dir, str(mirror(results_dir, without_checkpoints)))
        except (FileNotFoundError, ResultsError):
            err_console.print(f"[red]error:[/] {escape(results_dir)} holds no tlsweep sweep (no tlsweep_spec.json)",
                              highlight=False)
            raise typer.Exit(2) from None

    state = load()
    if as_json:
        _print_json(state.to_dict())
        return
    if watch is None or state.done():
        console.print(state.render())
        return
    from rich.live import Live

    with Live(state.render(), console=console, refresh_per_second=1) as live:
        while not state.done():
            time.sleep(watch)
            state = load()
            live.update(state.render())


@app.command()
def dashboard(
    target: str = typer.Argument(..., metavar="RESULTS_DIR|STORAGE_URL",
                                 help="A sweep's storage (local folder or URI), a study journal file, or a "
                                      "database URL (postgresql://…, sqlite:///…)."),
    port: int = typer.Option(8080, min=0, max=65535, help="Port to listen on (0: a free one)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind. Keep the loopback default and forward the port "
                                               "on a cluster (ssh -L 8080:127.0.0.1:8080 HEAD)."),
) -> None:
    """optuna-dashboard over a sweep's Optuna studies, live during a run and after it; Ctrl-C stops it."""
    from .results.studies import StudyStorageError, redacted

    try:
        from .results.dashboard import dashboard as serve

        board = serve(target, port, host)
    except ImportError:
        err_console.print("[red]error:[/] optuna-dashboard is not installed: pip install 'tlsweep[dashboard]'",
                          highlight=False)
        raise typer.Exit(2) from None
    except (StudyStorageError, OSError) as err:
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"optuna-dashboard on {board.url} (studies in {redacted(board.storage_url)}); Ctrl-C stops it",
                  highlight=False)
    board.serve_forever()
    console.print("dashboard stopped", highlight=False)


@app.command()
def predict(
    checkpoint: str = typer.Argument(..., help="checkpoint.pt, a checkpoint or trial folder, or a sweep's "
                                               "results folder (its best trial by val metric); local or a URI."),
    images: list[Path] = typer.Argument(..., help="Image files and folders (searched recursively)."),
    top_k: int = typer.Option(1, "--top-k", min=1, help="Also list the K most probable classes."),
    out: Optional[Path] = typer.Option(None, help="Write a CSV (path, predicted, probability, top_k) here."),
    model: Optional[str] = typer.Option(None, help="With a results folder: that model's best checkpoint."),
    device: Literal["cpu", "cuda", "auto"] = typer.Option("cpu", help="auto: cuda when available."),
    raw: bool = typer.Option(False, "--raw", help="Uncalibrated probabilities (ignore the checkpoint's "
                                                  "temperature)."),
) -> None:
    """Predict the class (and top-k probabilities) of images with a trained, soup or post-hoc ensemble
    checkpoint; probabilities are calibrated where the checkpoint has a temperature (tlsweep soup/report)."""
    from .deploy.predict import image_files, load_predictor, write_csv

    predictor = load_predictor(_localize(checkpoint), model, device, raw=raw)
    predictions = predictor.predict(image_files(images), top_k)
    err_console.print(f"checkpoint: {predictor.checkpoint.path} ({predictor.checkpoint.how}; "
                      f"{predictor.model_label}, {predictor.image_size} px)", highlight=False)
    if out is not None:
        console.print(f"[green]ok[/] {len(predictions)} predictions → {write_csv(predictions, out)}")
        return
    table = Table("image", "predicted", "probability", *(["top-k"] if top_k > 1 else []))
    for p in predictions:
        extra = ["  ".join(f"{label} {prob:.3f}" for label, prob in p.top_k)] if top_k > 1 else []
        table.add_row(escape(p.path), escape(p.label), f"{p.probability:.3f}", *map(escape, extra))
    console.print(table)


@app.command("export")
def export_cmd(
    checkpoint: str = typer.Argument(..., help="checkpoint.pt, a checkpoint or trial folder, or a sweep's "
                                               "results folder (its best trial by val metric); local or a URI."),
    out: Path = typer.Option(..., help="Folder for model.pt / model.onnx and model.json."),
    format: Literal["torchscript", "onnx", "both"] = typer.Option("both", "--format"),
    model: Optional[str] = typer.Option(None, help="With a results folder: that model's best checkpoint."),
    include_normalization: bool = typer.Option(False, help="Exported model takes 0-1 pixels and normalizes "
                                                            "inside (default: it takes normalized tensors)."),
    onnx_exporter: Literal["dynamo", "legacy"] = typer.Option("dynamo", help="dynamo (torch.export) or legacy "
                                                                              "(TorchScript-based)."),
    tolerance: float = typer.Option(1e-3, help="Largest max abs logit difference to PyTorch accepted."),
) -> None:
    """Export a checkpoint to TorchScript and/or ONNX (fixed image size, dynamic batch) with a JSON sidecar;
    each export is checked against PyTorch on a random batch (exit 1 if it differs)."""
    from .deploy.export import FORMAT_FILES, export_checkpoint

    formats = list(FORMAT_FILES) if format == "both" else [format]  # choices checked by typer (see --help)
    done = export_checkpoint(_localize(checkpoint), out, formats, model, include_normalization=include_normalization,
                             onnx_exporter=onnx_exporter, tolerance=tolerance)
    for e in done:
        console.print(f"[green]ok[/] {e.format} → {e.path} (max abs diff to PyTorch {e.max_abs_diff:.2e})")
    console.print(f"sidecar → {out / 'model.json'}")


@data_app.command("synth")
def data_synth(
    root: Path = typer.Argument(..., help="Folder to write the ImageFolder into."),
    classes: int = typer.Option(3, min=2, max=6),
    per_class: int = typer.Option(30, min=1, help="Training images per class (val/test get a third)."),
    size: int = typer.Option(32, min=8),
    seed: int = 0,
) -> None:
    """Write a small learnable ImageFolder of coloured shapes (train/val/test)."""
    from .data.synthetic import make_shapes_dataset

    make_shapes_dataset(root, classes, per_class, size, seed)
    console.print(f"wrote {root}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
