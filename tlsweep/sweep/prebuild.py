"""A sweep's node-local caches built before its first trial: the decoded images of the train and val splits at
every training size, the frozen-backbone features of every model whose trials would read them, and (when an
objective or constraint reads ``latency_ms``) each model's batch-1 latency, measured while no trial shares the
device; once per node, all nodes at once (other nodes, and a node whose GPU builds features or measures latency:
one pinned Ray task each, whose worker exits after it so that no CUDA context or cached block outlives it; this
machine's node: in the driver, with no worker to start), so that no trial builds an entry while the others wait
on its lock. A node whose build fails or times out (``TIMEOUT_S``) only logs it: its trials build what they need.
"""

from __future__ import annotations

import logging
import os
import time

from ..config.plan import MODEL_KEY, SweepPlan

log = logging.getLogger(__name__)
TIMEOUT_S = float(os.environ.get("TLSWEEP_PREBUILD_TIMEOUT_S", 3600))  # per node; then its trials build


def feature_jobs(plan: SweepPlan) -> list[tuple[str, object]]:
    """(model label, freeze depth) pairs whose trials read the frozen-feature cache (every backbone frozen)."""
    from ..config.distributions import candidate_values
    from ..models.backbones import get_backbone
    from ..models.transfer import frozen_stage_count

    data = plan.data
    mode = data.cache.features
    if data.image_size_schedule or mode == "off" or (mode == "auto" and data.augment != "none"):
        return []
    freezes = candidate_values(plan.search.freeze_depth)
    if not freezes:
        return []  # a continuous range: fully frozen only at its bound, not worth a build
    jobs = []
    for label, model in plan.models_table.items():
        for freeze in freezes:
            stages = [get_backbone(n).num_stages for n in model.backbones]
            try:
                if all(frozen_stage_count(freeze, s) == s for s in stages):
                    jobs.append((label, freeze))
                    break  # one fully frozen depth builds the entry for all of them
            except ValueError:
                continue
    return jobs


def images_wanted(plan: SweepPlan) -> bool:
    return plan.data.cache.images != "off"


def latency_wanted(plan: SweepPlan) -> bool:
    from ..trial.objectives import needs

    return needs(plan, "latency_ms")


def measure_latencies(plan: SweepPlan, device, num_classes: int) -> dict[str, float]:
    """Each model's batch-1 latency on ``device`` into the node's latency cache (``tlsweep.trial.latency``), with
    the torch threads its trials get; model label → ms."""
    import torch

    from ..models import build_model
    from ..trial.latency import cached_latency

    out, threads = {}, torch.get_num_threads()
    try:
        for label in plan.models_table:
            config = plan.trial_config({"model": label})
            cpus = int(plan.resources_of(label).cpu) if device.type == "cpu" else threads
            torch.set_num_threads(max(1, int(os.environ.get("TLSWEEP_TORCH_THREADS", cpus))))
            model = build_model(config.model, num_classes, config.freeze_depth).to(device)
            out[label] = cached_latency(model, config.model, num_classes, config.data.image_size, device,
                                        config.performance, config.data)
            del model
    finally:
        torch.set_num_threads(threads)
    return out


def build_caches(plan: SweepPlan | dict, device: str = "cpu") -> dict:
    """Build (or find) every cache entry the sweep's trials will read, here; returns what it did."""
    import torch

    from ..data import load_splits
    from ..data.cache.pipeline import image_dataset, train_images, trial_data
    from ..models import build_model, preprocessing
    from ..trial.fastpath import FastPath

    plan = plan if isinstance(plan, SweepPlan) else SweepPlan.from_dict(plan)
    start = time.perf_counter()
    data, seed = plan.data, plan.seed
    splits = load_splits(data, seed)
    statuses: dict[str, str] = {}

    def note(key: str, dataset) -> None:  # "built" if any model's entry was built here
        status = getattr(dataset, "cache_status", "off")
        statuses[key] = "built" if statuses.get(key) == "built" else status

    if images_wanted(plan):
        for label in plan.models_table:  # one entry per preprocessing the models want (resize interpolation)
            config = plan.trial_config({MODEL_KEY: label})
            for size in sorted({data.train_size(e) for e in range(plan.epochs)}):
                note(f"train@{size}", train_images(config, splits, size)[0])
            note("val", image_dataset(splits.val, data, False, "none", pre=preprocessing(config.model))[0])
    dev = torch.device(device)
    for label, freeze in feature_jobs(plan):
        config = plan.trial_config({MODEL_KEY: label, "freeze_depth": freeze})
        fast = FastPath(config.performance, dev)
        torch.manual_seed(seed)  # a trial's random init (weights: none) is seeded the same way
        model = fast.prepare_model(build_model(config.model, len(splits.classes), freeze).to(dev))
        statuses[f"features:{label}"] = trial_data(config, splits, model, dev, fast).info["feature_cache"]
        del model
    if latency_wanted(plan):
        for label, ms in measure_latencies(plan, dev, len(splits.classes)).items():
            statuses[f"latency:{label}"] = f"{ms:.3g} ms"
    return {"entries": statuses, "seconds": round(time.perf_counter() - start, 2)}


def _task(plan: dict, threads: int) -> dict:
    import ray
    import torch

    from ..trial.gpus import trial_device

    gpu_ids = [str(i) for i in ray.get_gpu_ids()]
    device = trial_device(gpu_ids, bool(gpu_ids))
    torch.set_num_threads(max(1, threads))
    try:
        out = build_caches(plan, str(device))
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the worker also exits (max_calls=1): nothing stays on the GPU
    return {**out, "node_id": ray.get_runtime_context().get_node_id(), "device": str(device)}


def prebuild_caches(plan: SweepPlan, nodes: list[dict]) -> list[dict]:
    """Build the caches on every node able to host a trial (CPUs > 0), all at once, and wait for them: on this
    machine's node in this process (no worker to start) unless frozen features want its GPU, elsewhere (and
    then) as one Ray task pinned to the node."""
    on_gpu = bool(feature_jobs(plan)) or latency_wanted(plan)  # work a node's GPU does, when it has one
    if not images_wanted(plan) and not on_gpu:
        return []
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    remote = ray.remote(max_calls=1)(_task)  # the worker exits after the task: its CUDA context goes with it
    refs, local = [], None
    for node in nodes:
        res = node.get("Resources", {})
        if res.get("CPU", 0) < 1:
            continue
        gpus = 1 if on_gpu and res.get("GPU", 0) >= 1 else 0
        if node["NodeID"] == here and not gpus:
            local = node
            continue
        refs.append(remote.options(num_cpus=1, num_gpus=gpus, max_retries=0,
                                   scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                    .remote(plan.to_dict(), int(res.get("CPU", 1))))
    done = []
    if local is not None:
        _collect(done, lambda: {**build_caches(plan), "node_id": here, "device": "cpu"})
    for ref in refs:
        _collect(done, lambda: _wait(ref))
    for item in done:
        log.info("caches on node %s (%s): %s in %.1f s", item["node_id"][:8], item["device"], item["entries"],
                 item["seconds"])
    return done


def _wait(ref, timeout: float | None = None) -> dict:
    """The task's result, or a ``TimeoutError`` naming the limit after cancelling it (its GPU is freed)."""
    import ray
    from ray.exceptions import GetTimeoutError

    timeout = TIMEOUT_S if timeout is None else timeout
    try:
        return ray.get(ref, timeout=timeout)
    except GetTimeoutError:
        ray.cancel(ref, force=True)
        raise TimeoutError(f"the cache build did not finish within {timeout:g} s (TLSWEEP_PREBUILD_TIMEOUT_S) "
                           f"and was cancelled") from None


def _collect(done: list, build) -> None:
    try:
        done.append(build())
    except Exception as err:  # noqa: BLE001 - the trials can still build what they need
        log.warning("building the caches before the trials failed on a node (%s: %s); its trials build them",
                    type(err).__name__, str(err)[:300])
