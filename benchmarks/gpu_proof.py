"""Issue 22's "prove it on a GPU" list as one script: each part runs in a process of its own (fresh CUDA state,
its own time limit, a failure recorded and the next part run), then ``OUT/gpu_proof.json`` and
``OUT/gpu_proof.md`` gather them. Parts, in order (throughput first, should the time run out):

- ``loop``: ``bench_gpu`` trial-loop rows: Trial vs the GPU-resident ceiling, resnet50 and mobilenet_v2, 224 px,
  bf16, ``flip`` and ``basic``, split resident and streamed; the linear-probe feature-cache hit vs uncached.
- ``syncs``: one epoch under ``torch.cuda.set_sync_debug_mode("warn")``: syncs per step.
- ``memory``: peak reserved GPU memory (+ the CUDA context) of a few training steps vs ``tlsweep.trial.gpus``'
  estimate, for mobilenet_v2, resnet50, swin_t and vit_b_16 (224 px, batch 64, bf16, Adam).
- ``resume``: 2 epochs straight vs 1 + checkpoint + restore in a new Trial + 1, deterministic algorithms on and
  ``cuda_tuning: false``: losses equal to 1e-4 relative.
- ``sweep``: ``bench_gpu`` sweep rows (whole vs quarter GPU) while ``nvidia-smi`` is sampled: every process on
  the GPU must be a Ray worker (the driver holds no CUDA context), none left after the sweep.
- ``e2e``: ``tlsweep run`` → ``report`` → ``predict`` → ``export`` with the CLI, each timed.

``--quick``: a tiny CPU smoke run of every part (32 px, a fake Ray GPU), figures not GPU figures; it must pass
on a CPU machine before a GPU is used. Full mode is sized to about 8 minutes on one H100/H200.

Running it on the GPU machine (see ``/work/shared/gpu/README.md``; that image has Python 3.12, torch, pandas,
pyarrow, requests, click, msgpack, protobuf, fsspec):

1. Here, download the wheels it lacks into an ignored folder of the repo (``echo /.gpuwheels/ >>
   .git/info/exclude``): ``pip download --no-deps --only-binary=:all: --python-version 3.12 --platform
   manylinux2014_x86_64 -d .gpuwheels ray==2.60.0 optuna==5.0.0 alembic mako sqlalchemy greenlet colorlog pydantic
   pydantic-core annotated-types typing-inspection jsonschema jsonschema-specifications referencing rpds-py
   tensorboardX typer rich shellingham filelock pyyaml grad-cam ttach scikit-learn threadpoolctl joblib
   opencv-python-headless`` (pins from ``constraints.txt``; strip ``ray/jars``, ``ray/rllib``, ``ray/serve``,
   ``ray/llm`` from the ray wheel and its RECORD to stay under the 64 MiB that travels).
2. Two ``run`` calls on one warm machine (one command may take 10 minutes; expected about 3 + 4 minutes on an
   H100), each with ``carry: [".gpuwheels"]`` and ``timeout_s: 480``: ``pip install --no-index --no-deps --target
   /tmp/site .gpuwheels/*.whl -q; PYTHONPATH=/tmp/site:$PWD python3 -m benchmarks.gpu_proof $OUT/a --parts
   loop,syncs,memory,resume``, then the same with ``$OUT/b --parts sweep,e2e`` (the install is repeated only if
   the machine was given back in between: it is quick). Measure main's baseline first the same way if the fixes
   are not merged yet (``git stash``/another worktree copy: the ``loop`` part runs there unchanged).
3. Read ``gpu_proof.md`` (and ``gpu_proof.json``: every figure, the log tail of a failed part) from the two
   files that come back per call; copy its rows into ``benchmarks/RESULTS.md`` with the GPU name and date of its
   first line. A missed target: say which and why. Data, caches and each part's full log stay in
   ``$GPU_PROOF_WORK`` (default ``/tmp/gpu_proof_work``), outside ``OUT``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PARTS = ("loop", "syncs", "memory", "resume", "sweep", "e2e")
LIMITS_S = {"loop": 200, "syncs": 60, "memory": 90, "resume": 60, "sweep": 200, "e2e": 150}  # caps, not estimates
QUICK_LIMIT_S = 900  # a busy 2-core CPU
MEMORY_MODELS = ("mobilenet_v2", "resnet50", "swin_t", "vit_b_16")
WORK = Path(os.environ.get("GPU_PROOF_WORK", "/tmp/gpu_proof_work"))  # data, caches, each part's JSON and log


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _size(quick: bool) -> dict:
    return {"size": 32, "batch": 8, "images": 16, "steps": 2} if quick else \
        {"size": 224, "batch": 64, "images": 1000, "steps": 6}


def _trial(root: Path, cache: Path, s: dict, device, **perf_and_fields):
    from tlsweep.trial.loop import Trial

    perf = {"precision": "bf16", "input": "device", **perf_and_fields.pop("performance", {})}
    config = {"model": {"name": perf_and_fields.pop("model", "mobilenet_v2"), "weights": "none"},
              "data": {"root": str(root), "image_size": s["size"], "augment": perf_and_fields.pop("augment", "flip"),
                       "num_workers": 0, "cache": {"images": "on", "features": "off"}, "cache_dir": str(cache)},
              "epochs": 2, "seed": 0, "lr": 1e-3, "batch_size": s["batch"], "optimizer": "adam",
              "lr_scheduler": "none", "performance": perf, **perf_and_fields}
    return Trial(config, device=device)


def _data(quick: bool, out: Path) -> Path:
    from tlsweep.data.synthetic import make_shapes_dataset

    s = _size(quick)
    root = WORK / f"shapes_{s['size']}"
    if not (root / "val").is_dir():
        per = max(2, s["images"] // 4)
        make_shapes_dataset(root, num_classes=4, per_class={"train": per, "val": max(2, per // 4), "test": 2},
                            size=s["size"] + 8, seed=0, fmt="jpg")
    return root


def part_loop(quick: bool, out: Path) -> dict:
    from . import bench_gpu

    gpu = _device().type == "cuda"
    models = bench_gpu.MODELS if gpu else bench_gpu.MODELS[1:]  # the CPU smoke run: mobilenet_v2 only
    return {"rows": bench_gpu.loop_rows(quick, gpu, models) + bench_gpu.feature_rows(quick, gpu)}


def part_syncs(quick: bool, out: Path) -> dict:
    """Syncs per step on the device path (CUDA's sync debug mode; on the CPU only a smoke run)."""
    import warnings

    import torch

    device, s = _device(), _size(quick)
    root = _data(quick, out)
    rows = {}
    for augment in ("flip", "basic"):
        trial = _trial(root, WORK / "cache", s, device, augment=augment)
        trial.train_epoch()  # warm-up: uploads, cudnn autotuning
        steps = len(trial.train_loader) + len(trial.val_loader)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
            try:
                trial.train_epoch()
                trial.evaluate()
            finally:
                if device.type == "cuda":
                    torch.cuda.set_sync_debug_mode(0)
        syncs = [str(w.message)[:120] for w in caught if "synchroniz" in str(w.message).lower()]
        rows[augment] = {"steps": steps, "syncs": len(syncs), "syncs_per_step": len(syncs) / steps,
                         "examples": sorted(set(syncs))[:5], "measured": device.type == "cuda"}
    return {"device": str(device), "policies": rows}


def part_memory(quick: bool, out: Path) -> dict:
    """Peak reserved memory of a few steps + the CUDA context vs the estimate (same batch and size); the split
    kept resident is left out of both."""
    import torch

    from tlsweep.config.plan import ModelConfig
    from tlsweep.trial import gpus

    device, s = _device(), _size(quick)
    root = _data(quick, out)
    rows = {}
    for name in MEMORY_MODELS[:1] if quick else MEMORY_MODELS:
        size = s["size"] if name != "vit_b_16" or not quick else 224
        parts = gpus.estimate_parts(ModelConfig(name=name), s["batch"], size, "bf16", "adam", 0.0)
        row = {"estimate_gb": sum(parts.values()) / gpus.GiB, "parts_gb": {k: v / gpus.GiB for k, v in parts.items()}}
        if device.type == "cuda":
            torch.cuda.init()
            free0, total = torch.cuda.mem_get_info()
            context = total - free0 - torch.cuda.memory_reserved()  # this process is alone on the GPU
            trial = _trial(root, WORK / "cache", {**s, "size": size}, device, model=name, augment="none")
            torch.cuda.reset_peak_memory_stats()
            loader = iter(trial.train_loader)
            for _ in range(s["steps"]):
                images, labels = next(loader)
                with trial.fast.autocast():
                    loss = trial.loss_fn(trial.forward(trial.fast.inputs(images)), labels)
                trial.optimizer.zero_grad(set_to_none=True)
                trial.fast.backward_step(loss, trial.optimizer)
            torch.cuda.synchronize()
            resident = sum(getattr(x, "nbytes", 0) for x in (trial.train_loader, trial.val_loader)
                           if getattr(x, "resident", False))
            reserved = torch.cuda.max_memory_reserved()
            measured = reserved - resident + context
            row.update(peak_reserved_gb=(reserved - resident) / gpus.GiB, context_gb=context / gpus.GiB,
                       peak_allocated_gb=(torch.cuda.max_memory_allocated() - resident) / gpus.GiB,
                       measured_gb=measured / gpus.GiB, estimate_over_measured=sum(parts.values()) / measured,
                       met=sum(parts.values()) >= measured)
            del trial, loader
            torch.cuda.empty_cache()
        rows[name] = row
    return {"device": str(device), "batch": s["batch"], "models": rows}


def part_resume(quick: bool, out: Path) -> dict:
    """2 epochs straight vs 1 + save + restore in a new Trial + 1, deterministic."""
    import tempfile

    import torch

    device, s = _device(), _size(quick)
    torch.use_deterministic_algorithms(True)
    root = _data(quick, out)
    cache = WORK / "cache"
    perf = {"performance": {"cuda_tuning": False}, "augment": "basic"}
    straight = [m["train_loss"] for m in _trial(root, cache, s, device, **perf).run()]
    first = _trial(root, cache, s, device, **perf)
    losses = [first.step()["train_loss"]]
    with tempfile.TemporaryDirectory() as folder:
        first.save(folder)
        del first
        resumed = _trial(root, cache, s, device, **perf)
        resumed.restore(folder)
        losses.append(resumed.step()["train_loss"])
    rel = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(straight, losses))
    return {"device": str(device), "straight": straight, "resumed": losses, "max_rel_diff": rel,
            "met": rel <= 1e-4}


def _gpu_processes() -> list[dict]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out.strip().splitlines():
        pid, mem = (x.strip() for x in line.split(","))
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]
        except OSError:
            cmd = "?"
        rows.append({"pid": int(pid), "mib": float(mem), "cmd": cmd})
    return rows


def part_sweep(quick: bool, out: Path) -> dict:
    """bench_gpu's sweep rows with nvidia-smi sampled every 0.5 s (this process never touches CUDA)."""
    import threading

    from . import bench_gpu

    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append({"t": time.time(), "procs": _gpu_processes()})
            stop.wait(0.5)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        rows = bench_gpu.sweep_rows(quick, gpu=_has_nvidia_smi())
    finally:
        stop.set()
        thread.join()
    time.sleep(2)
    left = _gpu_processes()
    seen = {p["cmd"] for s in samples for p in s["procs"]}
    foreign = sorted(c for c in seen if not c.startswith("ray::"))
    return {"rows": rows, "max_processes": max((len(s["procs"]) for s in samples), default=0),
            "commands_seen": sorted(seen), "not_placed_by_ray": foreign, "left_after": left,
            "met": not foreign and not left}


def _has_nvidia_smi() -> bool:
    return bool(subprocess.run(["sh", "-c", "command -v nvidia-smi"], capture_output=True).stdout)


def part_e2e(quick: bool, out: Path) -> dict:
    """The user path through the CLI: run → report → predict → export."""
    work = WORK / "e2e"
    work.mkdir(parents=True, exist_ok=True)
    size, per = (32, 6) if quick else (96, 100)
    gpu = "0.5" if _has_nvidia_smi() else "0"
    (work / "e2e.yaml").write_text(f"""name: e2e
data: {{root: {work}/shapes, image_size: {size}, num_workers: 2}}
weights: none
models: [resnet18, mobilenet_v3_small]
search: {{lr: {{loguniform: [3.0e-4, 3.0e-3]}}, batch_size: 16, freeze_depth: {{choice: [0, 0.5]}}}}
epochs: {1 if quick else 3}
num_samples: {1 if quick else 2}
resources: {{cpu: {1 if quick else 2}, gpu: {gpu}}}
performance: {{precision: bf16}}
storage: {work}/results/e2e
""")
    cli = [sys.executable, "-m", "tlsweep.cli"]
    steps = [("synth", [*cli, "data", "synth", f"{work}/shapes", "--classes", "4", "--per-class", str(per),
                        "--size", str(size)]),
             ("run", [*cli, "run", f"{work}/e2e.yaml", "--progress", "plain"]),
             ("report", [*cli, "report", f"{work}/results/e2e"]),
             ("predict", [*cli, "predict", f"{work}/results/e2e", f"{work}/shapes/test", "--out", f"{work}/preds.csv"]),
             ("export", [*cli, "export", f"{work}/results/e2e", "--out", f"{work}/exported", "--format", "both"])]
    results = {}
    for name, cmd in steps:
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        results[name] = {"rc": done.returncode, "seconds": round(time.perf_counter() - start, 1),
                         "tail": (done.stdout + done.stderr).strip().splitlines()[-3:]}
        if done.returncode:
            break
    return {"steps": results, "met": all(r["rc"] == 0 for r in results.values()) and len(results) == len(steps)}


def run_part(name: str, quick: bool, out: Path) -> None:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    if _device().type == "cpu":
        torch.set_num_threads(1)
    start = time.perf_counter()
    result = globals()[f"part_{name}"](quick, out)
    result["seconds"] = round(time.perf_counter() - start, 1)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1, default=str))


def markdown(results: dict, header: str) -> str:
    lines = [header, "", "| part | result | seconds |", "|---|---|---|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | FAILED: {r['error'][:200]} | {r.get('seconds', '')} |")
            continue
        if "rows" in r:
            for row in r["rows"]:
                met = {True: "met", False: "MISSED", None: "n/a"}[row.get("met")]
                lines.append(f"| {name}: {row['benchmark']} | {row['candidate']} vs {row['baseline']} = "
                             f"{row['ratio']:.2f} (target {row['target']}: {met}) | |")
        summary = {k: v for k, v in r.items() if k not in ("rows", "seconds")}
        lines.append(f"| {name} | {json.dumps(summary, default=str)[:600]} | {r.get('seconds', '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--quick", action="store_true", help="tiny CPU smoke run of every part")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # one part, in this process
    args = parser.parse_args(argv)
    out, parts_dir = args.out.resolve(), WORK / "parts"
    if args.part:
        run_part(args.part, args.quick, parts_dir)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    parts_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")]),
           "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "RAY_DEDUP_LOGS": "0"}
    if args.quick:
        env["TLSWEEP_ALLOW_CPU_FALLBACK"] = "1"  # the fake Ray GPU of the smoke run has no CUDA behind it
    results = {}
    for name in args.parts.split(","):
        limit = QUICK_LIMIT_S if args.quick else LIMITS_S[name]
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "benchmarks.gpu_proof", str(out), "--part", name] + (["--quick"] * args.quick)
        rc, text = _run(cmd, env, limit)
        (parts_dir / f"{name}.log").write_text(text)
        lines = text.strip().splitlines()
        if rc is None:
            results[name] = {"error": f"timed out after {limit} s", "log_tail": lines[-40:]}
        elif rc:
            results[name] = {"error": f"rc {rc}: {(lines[-1:] or [''])[0]}", "log_tail": lines[-40:]}
        else:
            results[name] = json.loads((parts_dir / f"{name}.json").read_text())
        results[name].setdefault("seconds", round(time.perf_counter() - start, 1))
        print(f"{name}: {'FAILED ' + results[name]['error'] if 'error' in results[name] else 'done'} "
              f"in {results[name]['seconds']} s", flush=True)
    header = f"# gpu_proof {'--quick ' if args.quick else ''}on {_device_name()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    (out / "gpu_proof.json").write_text(json.dumps({"header": header, "parts": results}, indent=1, default=str))
    (out / "gpu_proof.md").write_text(markdown(results, header))
    return 1 if any("error" in r for r in results.values()) else 0


def _run(cmd: list[str], env: dict, limit: float) -> tuple[int | None, str]:
    """(exit code or None on a timeout, output) of ``cmd`` in a session of its own: on a timeout the whole
    session (Ray's processes too) is ended."""
    import signal

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        text, _ = proc.communicate(timeout=limit)
        return proc.returncode, text
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            text, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            text, _ = proc.communicate()
        return None, text


def _device_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        return out or "CPU (no GPU)"
    except (OSError, subprocess.SubprocessError):
        return "CPU (no GPU)"


if __name__ == "__main__":
    sys.exit(main())
