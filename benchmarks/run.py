"""Run every ``benchmarks/bench_*.py`` and write one Markdown table of ratios to ``benchmarks/RESULTS.md``.

    python -m benchmarks.run [--quick] [--only NAME[,NAME...]]

Each module has ``run(quick: bool = False) -> list[dict]``; a row has ``benchmark``, ``baseline``,
``candidate``, ``ratio`` (candidate / baseline), ``target`` (e.g. "≤ 1.10×"), ``met`` and ``notes``;
``met: None`` marks a row skipped (e.g. a GPU row where there is no GPU): it shows as "skipped" and fails nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import shutil
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as a script: python benchmarks/run.py
    sys.path.insert(0, str(HERE.parent))

COLUMNS = ("benchmark", "baseline", "candidate", "ratio", "target", "met", "notes")


def discover(folder: Path = HERE) -> list[str]:
    """Module names ``bench_*`` in ``folder``, sorted."""
    return sorted(p.stem for p in folder.glob("bench_*.py"))


def select(names: list[str], only: str | None) -> list[str]:
    """``names`` (all), or those ``only`` lists (comma-separated, with or without the ``bench_`` prefix)."""
    if not only:
        return names
    picked = []
    for item in only.split(","):
        wanted = item.strip().removesuffix(".py")
        wanted = wanted if wanted.startswith("bench_") else f"bench_{wanted}"
        if wanted not in names:
            raise SystemExit(f"no benchmark {item!r}; have: {', '.join(n.removeprefix('bench_') for n in names)}")
        picked.append(wanted)
    return picked


def collect(modules: dict, quick: bool = False) -> list[dict]:
    """Rows of every module in order; a module that raises gives one failed row naming the error."""
    rows = []
    for name, module in modules.items():
        start = time.perf_counter()
        try:
            got = list(module.run(quick=quick))
        except Exception as err:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            got = [{"benchmark": name, "baseline": "", "candidate": "", "ratio": float("nan"), "target": "",
                    "met": False, "notes": f"error: {type(err).__name__}: {err}"[:300]}]
        print(f"[{name}] {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        rows += got
    return rows


def _cell(key: str, value) -> str:
    if key == "ratio":
        return "—" if value is None or value != value else f"{value:.2f}×"
    if key == "met":
        return "skipped" if value is None else ("yes" if value else "**no**")
    return str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")


def format_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(k, row.get(k)) for k in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    import ray
    import torch

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
            f"torch {torch.__version__}, ray {ray.__version__}, Python {platform.python_version()}, "
            f"load average at start {load}, {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}")


def render(rows: list[dict], machine: str, quick: bool, seconds: float) -> str:
    mode = "quick" if quick else "full"
    return (f"Machine: {machine}\n\nSuite ({mode}) took {seconds:.0f} s.\n\n{format_table(rows)}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run, noisier ratios)")
    parser.add_argument("--only", help="run these benchmarks only, e.g. tune_overhead or asha,trial_loop")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    names = select(discover(), args.only)
    machine = machine_line()
    start = time.perf_counter()
    modules = {name: importlib.import_module(f"benchmarks.{name}") for name in names}
    rows = collect(modules, args.quick)
    shutil.rmtree(HERE / "_work" / "results", ignore_errors=True)  # the sweeps' checkpoints: GBs of scratch
    text = render(rows, machine, args.quick, time.perf_counter() - start)
    print(text)
    if not args.only:
        kept = args.output.read_text().partition(KEPT)[2] if args.output.is_file() else ""
        args.output.write_text("# Benchmark results\n\n" + text + (f"\n{KEPT}{kept}" if kept else ""))
    _shutdown_ray()
    return 0 if all(passed(r) for r in rows) else 1


KEPT = "<!-- measured by hand below: run.py keeps this part -->"


def passed(row: dict) -> bool:
    """A row met its target, or was skipped (``met: None``, e.g. a GPU row on a machine without one)."""
    met = row.get("met", False)
    return met is None or bool(met)


def _shutdown_ray() -> None:
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
