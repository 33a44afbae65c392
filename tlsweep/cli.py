"""The ``tlsweep`` command line: a few lines per command over the Python API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Hyperparameter sweeps for transfer learning on image classification.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: make, inspect, export.")
app.add_typer(data_app, name="data")
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True)


def _load(path: Path, **overrides):
    from .spec import SpecError, load_spec

    try:
        return load_spec(path, {k: v for k, v in overrides.items() if v is not None} or None)
    except SpecError as err:
        err_console.print(f"[red]error:[/] {err.format()}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def validate(files: list[Path] = typer.Argument(..., help="Sweep files to check.")) -> None:
    """Check sweep files without running anything."""
    from .sweep.space import total_trials

    for path in files:
        spec = _load(path)
        plain = spec.to_plain()
        console.print(f"[green]ok[/] {path}: {len(spec.models)} model(s), {total_trials(plain)} trials, "
                      f"{spec.epochs} epochs max, results → {spec.storage_dir}")


@app.command()
def models(pattern: str = typer.Argument("*", help="Glob over backbone names, e.g. 'resnet*'.")) -> None:
    """List the registered backbones."""
    from .models.registry import get_backbone, list_backbones

    table = Table("backbone", "family", "stages", "input", "Grad-CAM layer", "weights")
    for name in list_backbones(pattern):
        b = get_backbone(name)
        table.add_row(name, b.family, str(b.num_stages), f"{b.input_size}{' (fixed)' if b.fixed_input_size else ''}",
                      b.cam_layer, b.weights_enum)
    console.print(table)


@app.command()
def run(
    file: Path = typer.Argument(..., help="Sweep file (YAML)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster to attach to (HOST:PORT or 'auto'); "
                                                     "default RAY_ADDRESS, else a local Ray."),
    num_samples: Optional[int] = typer.Option(None, min=1, help="Override num_samples (trials per model)."),
    resume: bool = typer.Option(False, help="Continue an interrupted sweep in the same storage."),
) -> None:
    """Run a sweep on Ray Tune (Optuna proposes, ASHA stops weak trials)."""
    spec = _load(file)
    from .data.sources import DataError
    from .sweep.progress import ProgressPrinter
    from .sweep.runner import ResourceError, run_sweep
    from .sweep.space import total_trials

    plain = spec.to_plain()
    if num_samples:
        plain["num_samples"] = num_samples
    console.print(f"[bold]{spec.name}[/]: {total_trials(plain)} trials over {len(spec.models)} model(s), "
                  f"results → {spec.storage_dir}")
    try:
        result = run_sweep(spec, address=address, num_samples=num_samples, resume=resume,
                           callbacks=[ProgressPrinter(spec.scheduler.metric, total_trials(plain))])
    except (DataError, ResourceError) as err:
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err_console.print(f"interrupted; continue with: tlsweep run {file} --resume")
        raise typer.Exit(130) from None
    print_summary(result, spec.scheduler.metric, spec.scheduler.resolved_mode)
    if result.all_failed:
        raise typer.Exit(1)


def print_summary(result, metric: str, mode: str) -> None:
    counts = result.trials["status"].value_counts().to_dict()
    console.print("trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) +
                  f" in {result.seconds:.0f}s")
    best = result.best_per_model(metric, mode)
    table = Table("model", metric, "epochs", "lr", "batch", "freeze", "optimizer", "lr scheduler",
                  title="best trial per model")
    for model, row in best.iterrows():
        table.add_row(escape(str(model)), f"{row[metric]:.4f}", f"{row['best_epoch']}/{row['epochs']}",
                      f"{row.get('config/lr', float('nan')):.2e}", str(row.get("config/batch_size")),
                      str(row.get("config/freeze_depth")), str(row.get("config/optimizer")),
                      str(row.get("config/lr_scheduler")))
    console.print(table)
    console.print(f"results: {result.storage}  (tensorboard --logdir {result.storage})")


@app.command()
def demo(
    data: Path = typer.Option(Path("data/shapes"), help="Where the generated demo images go."),
    sweep: Path = typer.Option(Path("sweeps/shapes.yaml"), help="The demo sweep file."),
) -> None:
    """The offline demo: generate a small image dataset, then run the demo sweep on it."""
    if not data.exists():
        from .data.synthetic import make_shapes_dataset

        make_shapes_dataset(data)
        console.print(f"wrote demo images to {data}")
    run(sweep, address=None, num_samples=None, resume=False)


@app.command()
def report(
    results_dir: Path = typer.Argument(..., help="The sweep's storage folder (finished, running, or copied)."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default RESULTS_DIR/report)."),
    cam_images: int = typer.Option(8, min=0, help="Test images in the Grad-CAM grid and galleries."),
) -> None:
    """Leaderboard (picked on val, evaluated once on test), plots, Grad-CAM and report.html."""
    from .data.sources import DataError
    from .report import ReportError, make_report

    try:
        page = make_report(results_dir, out, cam_images=cam_images)
    except (ReportError, DataError) as err:
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        raise typer.Exit(2) from None
    import pandas as pd

    from .report.leaderboard import display_frame

    shown = display_frame(pd.read_csv(page.parent / "leaderboard.csv"))[
        ["model", "test acc (95% CI)", "val acc", "macro F1", "lr", "epochs", "trials (stopped)",
         "params (trainable)", "latency ms"]]
    table = Table(*shown.columns, title="leaderboard (picked on val, scored on test)")
    for row in shown.itertuples(index=False):
        table.add_row(*(escape(str(v)) for v in row))
    console.print(table)
    console.print(f"report: {page}")


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
