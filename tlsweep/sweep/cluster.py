"""What a sweep needs from the Ray cluster: per-model trial resources, nodes able to host them, and storage
that every node can reach. The checks are plain functions of node lists so they are testable without Ray."""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ..config.plan import SweepPlan, model_label
from ..errors import TLSweepError
from ..results.layout import is_uri
from .hooks import TrialHooks

# File systems every node of a cluster can mount at the same path (see /proc/mounts).
SHARED_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "lustre", "glusterfs", "fuse.glusterfs", "gpfs", "beegfs",
                      "ceph", "fuse.ceph", "cephfs", "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.juicefs",
                      "fuse.mountpoint-s3", "efs", "9p", "virtiofs"}


class ResourceError(TLSweepError, RuntimeError):
    """The cluster cannot host one trial of the sweep."""


class StorageError(TLSweepError, RuntimeError):
    """Trials on other machines could not write to the sweep's storage."""


class ClusterError(TLSweepError, RuntimeError):
    """No Ray cluster answers at the given address, or it refused this driver."""


@contextlib.contextmanager
def _quiet_stderr():
    """Ray's C++ GCS client logs each failed attempt to fd 2; the caller reports the failure in one line."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def probe_cluster(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds where ``ray.init(address=...)`` would retry for a minute or more: nothing listens at
    ``HOST:PORT``, or the cluster refuses this driver's auth token. ``auto`` and ``ray://`` are left to Ray."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379), 'auto' or 'local'")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise ClusterError(
            f"no Ray cluster answers at {address} ({err.strerror or err}); check that the head node is up "
            f"(`ray status` on it) and that {port} is its GCS port (`ray start --head --port`, default 6379)") from None
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    try:
        with _quiet_stderr():
            GcsClient(address=address)
    except AuthenticationError:
        raise ClusterError(
            f"the Ray cluster at {address} refused this driver's auth token; set RAY_AUTH_MODE=token and "
            f"RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token (`ray get-auth-token` on the head)"
        ) from None
    except Exception:  # noqa: BLE001 - anything else is ray.init's to report
        pass


@dataclass(frozen=True)
class TrialResources:
    """Picklable ``config → PlacementGroupFactory`` for ``tune.with_resources``: one bundle per trial, sized by
    the trial's model (``SweepPlan.model_resources``)."""

    plan: SweepPlan
    hooks: TrialHooks | None = None

    def demand(self, model: str | None) -> dict:
        return {**self.plan.resources_of(model).demand(), **(self.hooks.resources(model) if self.hooks else {})}

    def __call__(self, config: dict):
        from ray.tune import PlacementGroupFactory

        return PlacementGroupFactory([self.demand(model_label(config))])


def trial_resources(plan: SweepPlan, hooks: TrialHooks | None = None) -> TrialResources:
    return TrialResources(plan, hooks)


def alive_nodes() -> list[dict]:
    """Ray's node table, alive nodes only: ``NodeID``, ``NodeManagerAddress`` (IP), ``Resources``."""
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def cluster_gpus(nodes: list[dict]) -> float:
    """GPUs in all of the cluster's alive nodes (``resources.gpu: auto`` gives trials none when 0)."""
    return float(sum(n.get("Resources", {}).get("GPU", 0) for n in nodes))


def _node_gpu_memory_gb() -> float | None:
    """The smallest GPU memory on this node in GiB, from ``nvidia-smi`` (no CUDA context), or None."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
        return min(float(line) for line in out.split()) / 1024
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def cluster_gpu_memory_gb(nodes: list[dict], timeout: float = 60.0) -> float | None:
    """The smallest GPU memory (GiB) over the cluster's nodes with GPUs, asked on each node by a task that takes
    no CPU and no GPU; None when no node has a GPU or none could tell."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    with_gpus = [n for n in nodes if n.get("Resources", {}).get("GPU", 0) > 0]
    if not with_gpus:
        return None
    remote = ray.remote(_node_gpu_memory_gb)
    refs = [remote.options(num_cpus=0, num_gpus=0, max_retries=0,
                           scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
            for n in with_gpus]
    try:
        found = [v for v in ray.get(refs, timeout=timeout) if v]
    except Exception:  # noqa: BLE001 - the memory check then uses this machine's GPU, or the assumed size
        return None
    return min(found, default=None)


def unplaceable(demands: dict[str, dict], nodes: list[dict]) -> dict[str, dict]:
    """Models whose per-trial demand no single node can ever satisfy."""
    def fits(need, node):
        return all(node.get("Resources", {}).get(k, 0) >= v for k, v in need.items() if v)

    return {m: need for m, need in demands.items() if not any(fits(need, n) for n in nodes)}


def check_resources(plan: SweepPlan, nodes: list[dict], hooks: TrialHooks | None = None) -> None:
    """Fail early when a model's trials could never start (e.g. GPUs asked on a cluster without any)."""
    res = trial_resources(plan, hooks)
    models = list(plan.models_table) or [None]
    bad = unplaceable({m: res.demand(m) for m in models}, nodes)
    if not bad:
        return
    total = {k: sum(n.get("Resources", {}).get(k, 0) for n in nodes) for k in ("CPU", "GPU")}
    largest = {k: max((n.get("Resources", {}).get(k, 0) for n in nodes), default=0) for k in ("CPU", "GPU")}
    asks = "; ".join(f"{m or 'each trial'}: {need.get('CPU', 0):g} CPU, {need.get('GPU', 0):g} GPU"
                     for m, need in bad.items())
    raise ResourceError(
        f"no node of the Ray cluster can run a trial of {asks} (cluster: {len(nodes)} node(s), "
        f"{total['CPU']:g} CPU and {total['GPU']:g} GPU in all; largest node {largest['CPU']:g} CPU, "
        f"{largest['GPU']:g} GPU). Lower `resources` in the sweep file (or a model's own `resources`), "
        f"or attach to a cluster with GPUs (--address).")


def filesystem_type(path: str | os.PathLike, mounts: str = "/proc/mounts") -> str | None:
    """The type of the file system holding ``path`` (longest mount point prefix in ``mounts``)."""
    path = Path(path).resolve()
    best, kind = "", None
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        if (path == Path(point) or Path(point) in path.parents) and len(point) > len(best):
            best, kind = point, parts[2]
    return kind


def check_storage(storage: str, nodes: list[dict], driver_ip: str, shared: bool = False,
                  fs_type: str | None = None) -> None:
    """Since Ray 2.7 trials write results and checkpoints straight to ``storage_path``: with nodes on other
    machines it must be a URI (s3://, gs://, ...) or a path shared by all of them (NFS, ...)."""
    if is_uri(storage) or shared or (fs_type in SHARED_FILESYSTEMS):
        return
    remote = sorted({n.get("NodeManagerAddress") for n in nodes} - {driver_ip, None})
    if remote:
        raise StorageError(
            f"storage {storage!r} is a local path ({fs_type or 'unknown'} file system) but the Ray cluster has "
            f"nodes on other machines ({', '.join(remote)}); their trials could not write there. Use a URI "
            f"(storage: s3://bucket/sweeps/NAME or gs://...) or a path mounted on every node (NFS) and declare "
            f"it with `storage_shared: true` in the sweep file.")


def check_cluster(plan: SweepPlan, hooks: TrialHooks | None = None) -> list[dict]:
    """Both checks against the attached cluster; returns its alive nodes."""
    import ray.util

    nodes = alive_nodes()
    check_resources(plan, nodes, hooks)
    storage = plan.storage
    check_storage(storage, nodes, ray.util.get_node_ip_address(), plan.storage_shared,
                  None if is_uri(storage) else filesystem_type(storage))
    return nodes
