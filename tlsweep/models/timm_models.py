"""timm backbones: ``timm/<name>`` in ``models:`` is any model ``timm.list_models()`` knows.

Registry entries are made on first use from the model itself (built on the meta device, no weights): stages are
timm's coarse ``group_matcher`` groups as module/parameter paths (a trailing group of head-side layers, e.g.
ConvNeXt's ``head.norm``, joins the last stage), the Grad-CAM layer is the last ``feature_info`` module, the head
comes off with ``reset_classifier(0)``. ViT-like models are built with ``dynamic_img_size`` so any image size works.

Pretrained weights are never downloaded by a trial: ``imagenet`` (timm's default tag), a tag (``d2_in1k``) or
``name.tag`` load from ``$TORCH_HOME/hub/checkpoints/timm/<name>.<tag>.<ext>`` (put there by
``tlsweep weights import FILE --timm NAME.TAG``); a path to a file loads that file.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .backbones import (
    IMAGENET,
    Backbone,
    BackboneSource,
    Preprocessing,
    register_source,
)

PREFIX = "timm/"
EXTENSIONS = (".safetensors", ".pth", ".bin", ".npz")
RESHAPES = {"SwinTransformer": "swin", "SwinTransformerV2": "swin"}  # token layouts Grad-CAM must reshape


def is_timm(name: str) -> bool:
    return name.startswith(PREFIX)


def _timm():
    try:
        import timm
    except ImportError:
        raise ValueError("timm/ backbones need the timm package: pip install 'tlsweep[timm]'") from None
    return timm


def list_timm(pattern: str = "*") -> list[str]:
    return [PREFIX + n for n in _timm().list_models(pattern.removeprefix(PREFIX))]


def known(name: str) -> bool:
    return is_timm(name) and _timm().is_model(name.removeprefix(PREFIX))


def create(name: str, **kwargs):
    """``timm.create_model`` with ``dynamic_img_size`` where the model takes it, classifier removed with
    ``reset_classifier(0)`` (the model then returns pooled features)."""
    import timm

    try:
        model = timm.create_model(name, dynamic_img_size=True, **kwargs)
    except TypeError:
        model = timm.create_model(name, **kwargs)
    model.reset_classifier(0)
    return model


def _collapse(group: list[str], all_names: list[str]) -> list[str]:
    """Parameter names → the shortest dotted paths (modules or parameters) that hold only this group."""
    members, out = set(group), []
    for name in group:
        parts, best = name.split("."), name
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i]) + "."
            if all(n in members for n in all_names if n.startswith(prefix)):
                best = prefix[:-1]
                break
        if best not in out:
            out.append(best)
    return out


def stages_of(model) -> tuple[str, ...]:
    from timm.models import group_parameters

    names = [n for n, _ in model.named_parameters()]
    groups = list(group_parameters(model, model.group_matcher(coarse=True)).values())
    features = [f["module"] for f in getattr(model, "feature_info", [])]
    while len(groups) > 1 and not any(n == f or n.startswith(f + ".") for n in groups[-1] for f in features):
        groups[-2:] = [groups[-2] + groups[-1]]
    return tuple("+".join(_collapse(g, names)) for g in groups)


def unknown_message(name: str) -> str:
    import difflib

    import timm

    arch = name.removeprefix(PREFIX)
    close = difflib.get_close_matches(arch, timm.list_models(), n=1)
    hint = f" (did you mean 'timm/{close[0]}'?)" if close else ""
    return f"unknown timm model {arch!r}{hint}; list them with `tlsweep models 'timm/*pattern*'`"


@lru_cache(maxsize=None)
def timm_entry(name: str) -> Backbone:
    import torch

    arch = name.removeprefix(PREFIX)
    if not known(name):
        raise KeyError(unknown_message(name))
    with torch.device("meta"):
        model = create(arch)
    cfg = model.pretrained_cfg
    info = getattr(model, "feature_info", None)
    stages = stages_of(model)
    cam = info[-1]["module"] if info else stages[-1].split("+")[-1]
    kind = type(model).__name__
    reshape = RESHAPES.get(kind) or ("vit" if hasattr(model, "num_prefix_tokens") else None)
    fixed = getattr(getattr(model, "patch_embed", None), "strict_img_size", False)
    return TimmBackbone(name, "", head="", stages=stages, cam_layer=cam, family=f"timm:{kind}",
                    input_size=int(cfg.get("input_size", (3, 224, 224))[-1]), fixed_input_size=bool(fixed),
                    reshape=reshape, source="timm")


def feature_dim(model) -> int:
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def _tagged(arch: str, weights: str) -> str:
    """``arch.tag`` for ``imagenet`` (timm's default tag), a bare tag or ``arch.tag``."""
    from timm.models import get_pretrained_cfg

    if weights.lower() == "imagenet":
        cfg = get_pretrained_cfg(arch)
        if cfg is None or not cfg.tag or not (cfg.hf_hub_id or cfg.url or cfg.file):
            raise ValueError(f"timm/{arch} has no pretrained weights; use weights: none")
        return f"{arch}.{cfg.tag}"
    return weights if weights.startswith(arch + ".") else f"{arch}.{weights}"


def describe(names: list[str]) -> list[tuple[str, ...]]:
    """Rows for ``tlsweep models``: name, family, stages, input size, Grad-CAM layer, default pretrained tag."""
    from timm.models import get_pretrained_cfg

    rows = []
    for name in names:
        cfg = get_pretrained_cfg(name.removeprefix(PREFIX))
        size = str(cfg.input_size[-1]) if cfg else "-"
        pretrained = cfg is not None and cfg.tag and (cfg.hf_hub_id or cfg.url)
        rows.append((name, "timm", "group_matcher", size, "last feature stage", cfg.tag if pretrained else "-"))
    return rows


def weights_dir() -> Path:
    from .hub_cache import checkpoints_dir

    return checkpoints_dir() / "timm"


def weights_file(arch: str, weights: str) -> tuple[str, Path | None]:
    """(``arch.tag``, the local file holding it, or None)."""
    tagged = _tagged(arch, weights)
    for ext in EXTENSIONS:
        path = weights_dir() / f"{tagged}{ext}"
        if path.is_file():
            return tagged, path
    return tagged, None


def missing_help(tagged: str) -> str:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(tagged)
    source = (f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/model.safetensors" if cfg and cfg.hf_hub_id
              else (cfg.url if cfg else "the timm release"))
    return (f"timm weights {tagged} are not on this machine (looked for {weights_dir()}/{tagged}"
            f"{{{','.join(EXTENSIONS)}}}); get {source} on a machine with internet, then "
            f"`tlsweep weights import FILE --timm {tagged}`")


def is_file_path(weights: str) -> bool:
    return Path(weights).suffix in EXTENSIONS or "/" in weights


def load(entry: Backbone, weights: str | None):
    """The timm model without its classifier: no weights, the local file of a tag, or a given file."""
    from .hub_cache import WeightsError

    arch, weights = entry.name.removeprefix(PREFIX), str(weights or "none")
    if weights.lower() == "none":
        return create(arch, pretrained=False)
    if is_file_path(weights):
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"{path}: no such weights file for {entry.name}")
    else:
        tagged, path = weights_file(arch, weights)
        if path is None:
            raise WeightsError(missing_help(tagged))
        arch = tagged
    return create(arch, pretrained=True, pretrained_cfg_overlay={"file": str(path), "source": ""})


def _pretrained_cfg(entry: Backbone, weights: str | None):
    from timm.models import get_pretrained_cfg

    arch, w = entry.name.removeprefix(PREFIX), str(weights or "none")
    return get_pretrained_cfg(arch if w.lower() in ("none", "imagenet") or is_file_path(w) else _tagged(arch, w))


@dataclass(frozen=True)
class TimmBackbone(Backbone):
    """A timm entry: preprocessing from timm's pretrained config instead of a torchvision weights enum."""

    def preprocessing(self, weights: str | None = "none") -> Preprocessing:
        """The weights' mean/std/interpolation (``pretrained_cfg``); ImageNet's for ``none`` and weight files."""
        cfg = _pretrained_cfg(self, weights)
        if cfg is None or str(weights or "none").lower() == "none" or is_file_path(str(weights)):
            return IMAGENET
        return Preprocessing(tuple(cfg.mean), tuple(cfg.std), cfg.interpolation or "bilinear")

    def resize_ratio(self, weights: str | None = "none") -> float:
        """1 / crop_pct of the weights (of the default weights for ``none`` and files)."""
        cfg = _pretrained_cfg(self, weights)
        return 1 / float(cfg.crop_pct or 1.0) if cfg is not None else 1.0


def import_timm_weights(path: str | Path, tagged: str) -> Path:
    """Check that ``path`` loads into ``tagged``'s model (timm's own conversion and filters) and copy it to
    where trials look for it."""
    import shutil

    from .hub_cache import WeightsError

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    arch = tagged.split(".")[0]
    if not known(PREFIX + arch) or "." not in tagged:
        raise WeightsError(f"--timm takes a timm model name with its tag, e.g. convnext_atto.d2_in1k; got {tagged!r}")
    try:
        create(tagged, pretrained=True, pretrained_cfg_overlay={"file": str(path), "source": ""})
    except Exception as err:  # noqa: BLE001 - wrong keys, shapes or format all mean "not these weights"
        raise WeightsError(f"{path} does not load into timm/{arch} ({type(err).__name__}: {str(err)[:200]})") \
            from None
    ext = next((e for e in EXTENSIONS if path.name.endswith(e)), path.suffix)
    target = weights_dir() / f"{tagged}{ext}"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    shutil.copyfile(path, tmp)
    tmp.replace(target)
    return target


register_source("timm", BackboneSource(timm_entry, list_timm, known))
