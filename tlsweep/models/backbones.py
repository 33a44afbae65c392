"""Backbone registry: one entry per torchvision backbone, and nothing else knows their quirks.

An entry names the torchvision constructor and weights enum, where the classifier head sits, the ordered
stages used for freeze depth, the Grad-CAM target layer, the input size (``fixed_input_size``: the spec rejects
other sizes) and its quirks (constructor keyword arguments, a fix-up after loading pretrained weights).
``Backbone.preprocessing(weights)`` gives the normalization the weights were trained with. Entries hold strings
and plain functions only, so listing and validating names never imports torch.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """What the backbone's weights expect: per-channel mean/std of 0–1 RGB pixels and the resize interpolation
    (a ``torchvision.transforms.InterpolationMode`` value: bilinear, bicubic, ...)."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    resize_ratio: float | None = None  # shorter side / centre crop (``data.preprocess: weights``); None: squash

    def describe(self, size: int) -> str:
        """The resize in words (export sidecars)."""
        if self.resize_ratio is None:
            return f"{size}x{size} ({self.interpolation}, antialias), no crop"
        return (f"shorter side to {round(size * self.resize_ratio)} ({self.interpolation}, antialias), "
                f"centre crop {size}x{size}")


IMAGENET = Preprocessing()  # for ``weights: none`` and weights files: ImageNet statistics


@dataclass(frozen=True)
class WeightsRef:
    """A parsed ``weights`` string: ``none``, a state-dict ``file`` or a torchvision enum member ``tag``."""

    kind: str  # "none", "file" or "torchvision"
    value: str | None = None  # the file path or the enum member name (DEFAULT for ``imagenet``)


def parse_weights(weights: str | None) -> WeightsRef:
    """``imagenet`` (torchvision's DEFAULT), ``none``, an enum member name such as ``IMAGENET1K_V2``, or a path
    to a ``.pt``/``.pth`` state dict."""
    weights = weights or "none"
    if weights.lower() == "none":
        return WeightsRef("none")
    if Path(weights).suffix in {".pt", ".pth"} or "/" in weights:
        return WeightsRef("file", weights)
    return WeightsRef("torchvision", "DEFAULT" if weights.lower() == "imagenet" else weights)


@dataclass(frozen=True)
class Backbone:
    """One backbone: how to build it, where its head and stages are, and its quirks.

    ``stages`` are ordered input→output; a stage is a dotted path, ``a-b`` for the siblings from a to b,
    or several of those joined with ``+`` (paths may name parameters, e.g. ViT's class token). ``freeze_depth``
    counts these stages, and discriminative learning rates decay along them.
    """

    name: str
    weights_enum: str
    head: str
    stages: tuple[str, ...]
    cam_layer: str
    family: str
    input_size: int = 224
    fixed_input_size: bool = False
    reshape: str | None = None  # token layout for Grad-CAM: "vit" or "swin"
    builder_kwargs: dict = field(default_factory=dict)  # constructor arguments without pretrained weights
    pretrained_kwargs: dict = field(default_factory=dict)  # ... and with them
    after_pretrained: Callable | None = None  # fix-up of a model built with pretrained weights
    source: str = "torchvision"  # or "timm" (entries made on first use, see tlsweep.models.timm_models)
    gpu_share: float = 1.0  # the GPU share a trial gets under ``resources.gpu: auto`` (small models share one)
    # torchvision's BatchNorm momentum: below 0.1 eval-mode statistics lag the weights for the first epochs
    # (``precise_bn: auto`` recomputes them before each evaluation, see tlsweep.trial.loop)
    bn_momentum: float | None = 0.1

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def weights(self, tag: str = "DEFAULT"):
        """torchvision's weights enum member.

        Args:
            tag: ``DEFAULT`` or a member name such as ``IMAGENET1K_V1``.

        Returns:
            The ``torchvision.models.WeightsEnum`` member.
        """
        import torchvision.models as tvm

        enum = getattr(tvm, self.weights_enum)
        return getattr(enum, tag)

    def preprocessing(self, weights: str | None = "none") -> Preprocessing:
        """Mean, std and interpolation of the weights' own transforms (``weights.transforms()``).

        Args:
            weights: ``imagenet``, ``none``, a weights name or a weights file, as in the sweep file.

        Returns:
            The weights' preprocessing; ImageNet statistics with bilinear resizing for ``none`` and files.
        """
        ref = parse_weights(weights)
        if ref.kind != "torchvision":
            return IMAGENET
        preset = self.weights(ref.value).transforms()
        interpolation = getattr(preset, "interpolation", None)
        return Preprocessing(tuple(float(x) for x in preset.mean), tuple(float(x) for x in preset.std),
                             getattr(interpolation, "value", IMAGENET.interpolation))

    def resize_ratio(self, weights: str | None = "none") -> float:
        """Resize over crop size of the weights' evaluation transform (256/224, 232/224, ...).

        Args:
            weights: As in ``preprocessing``; ``none`` and files take the architecture's default weights' ratio.

        Returns:
            The ratio, e.g. 1.143 for 256/224.
        """
        ref = parse_weights(weights)
        preset = self.weights(ref.value if ref.kind == "torchvision" else "DEFAULT").transforms()
        return preset.resize_size[0] / preset.crop_size[0]

    def constructor(self):
        import torchvision.models as tvm

        return getattr(tvm, self.name)


_REGISTRY: dict[str, Backbone] = {}


@dataclass(frozen=True)
class BackboneSource:
    """Backbones of another library, named ``<prefix>/<name>`` and made on first use (``tlsweep.models.timm_models``
    registers ``timm``)."""

    entry: Callable[[str], Backbone]
    list: Callable[[str], list[str]]
    known: Callable[[str], bool]


_SOURCES: dict[str, BackboneSource] = {}


def register_source(prefix: str, source: BackboneSource) -> BackboneSource:
    _SOURCES[prefix] = source
    return source


def _source(name: str) -> BackboneSource | None:
    prefix, slash, _ = name.partition("/")
    return _SOURCES.get(prefix) if slash else None


def register_backbone(entry: Backbone) -> Backbone:
    """Add a backbone to the registry: sweep files may name it from then on.

    Args:
        entry: The backbone's registry entry.

    Returns:
        ``entry``, so the call can wrap a definition.

    Raises:
        ValueError: A backbone of that name is registered already.
    """
    if entry.name in _REGISTRY:
        raise ValueError(f"backbone {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry
    return entry


def get_backbone(name: str) -> Backbone:
    """The registry entry of a backbone.

    Args:
        name: A registered name (``resnet18``) or ``timm/<name>`` (made on first use).

    Returns:
        The backbone's ``Backbone`` entry.

    Raises:
        KeyError: No backbone of that name, with the available ones.
    """
    if (source := _source(name)) is not None:
        return source.entry(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; available: {', '.join(list_backbones())}") from None


def list_backbones(pattern: str = "*") -> list[str]:
    """Names of the registered backbones.

    Args:
        pattern: A glob over names (``resnet*``); ``timm/<pattern>`` lists timm's models instead.

    Returns:
        The matching names, sorted.
    """
    if (source := _source(pattern)) is not None:
        return source.list(pattern)
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def is_backbone(name: str) -> bool:
    """A registered backbone, or ``timm/<name>`` of a model timm knows (imports timm only for those)."""
    if (source := _source(name)) is not None:
        return source.known(name)
    return name in _REGISTRY


def _resnet(name: str, enum: str, family: str = "resnet", gpu_share: float = 1.0) -> Backbone:
    return Backbone(
        name, enum, head="fc",
        stages=("conv1", "layer1", "layer2", "layer3", "layer4"),
        cam_layer="layer4", family=family, gpu_share=gpu_share,
    )


def _features_net(name, enum, head, family, n_blocks, cam_index=-1, **kw) -> Backbone:
    """Nets whose body is ``features`` (a Sequential); stages are its children."""
    return Backbone(
        name, enum, head=head,
        stages=tuple(f"features.{i}" for i in range(n_blocks)),
        cam_layer=f"features.{n_blocks + cam_index if cam_index < 0 else cam_index}",
        family=family, **kw,
    )


def _googlenet_main_head_only(model):
    """Pretrained GoogLeNet comes with auxiliary heads; training here uses the main one."""
    model.aux_logits, model.aux1, model.aux2 = False, None, None
    return model


for _entry in (
    _resnet("resnet18", "ResNet18_Weights", gpu_share=0.5),
    _resnet("resnet34", "ResNet34_Weights", gpu_share=0.5),
    _resnet("resnet50", "ResNet50_Weights"),
    _resnet("resnet101", "ResNet101_Weights"),
    _resnet("wide_resnet50_2", "Wide_ResNet50_2_Weights", family="wide_resnet"),
    Backbone(
        "vgg16", "VGG16_Weights", head="classifier.6",
        # the conv blocks end at each max-pool; the first two classifier layers form the last stage
        stages=("features.0-4", "features.5-9", "features.10-16", "features.17-23", "features.24-30",
                "classifier.0-5"),
        cam_layer="features.29", family="vgg",
    ),
    Backbone(
        "densenet121", "DenseNet121_Weights", head="classifier",
        stages=("features.conv0-pool0", "features.denseblock1-transition1", "features.denseblock2-transition2",
                "features.denseblock3-transition3", "features.denseblock4-norm5"),
        cam_layer="features.norm5", family="densenet",
    ),
    Backbone(
        "densenet161", "DenseNet161_Weights", head="classifier",
        stages=("features.conv0-pool0", "features.denseblock1-transition1", "features.denseblock2-transition2",
                "features.denseblock3-transition3", "features.denseblock4-norm5"),
        cam_layer="features.norm5", family="densenet",
    ),
    Backbone(
        "googlenet", "GoogLeNet_Weights", head="fc",
        stages=("conv1-maxpool2", "inception3a-maxpool3", "inception4a-inception4e", "maxpool4-inception5b"),
        cam_layer="inception5b", family="googlenet",
        builder_kwargs={"aux_logits": False, "init_weights": True},
        after_pretrained=_googlenet_main_head_only, gpu_share=0.5,
    ),
    _features_net("mobilenet_v2", "MobileNet_V2_Weights", "classifier.1", "mobilenet", 19, gpu_share=0.25),
    _features_net("mobilenet_v3_small", "MobileNet_V3_Small_Weights", "classifier.3", "mobilenet", 13, gpu_share=0.25,
                  bn_momentum=0.01),
    _features_net("mobilenet_v3_large", "MobileNet_V3_Large_Weights", "classifier.3", "mobilenet", 17, gpu_share=0.25,
                  bn_momentum=0.01),
    Backbone(
        "mnasnet0_75", "MNASNet0_75_Weights", head="classifier.1",
        stages=tuple(f"layers.{i}" for i in range(17)), cam_layer="layers.16", family="mnasnet", gpu_share=0.25,
        bn_momentum=0.0003,
    ),
    Backbone(
        "shufflenet_v2_x2_0", "ShuffleNet_V2_X2_0_Weights", head="fc",
        stages=("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5"),
        cam_layer="conv5", family="shufflenet", gpu_share=0.25,
    ),
    _features_net("efficientnet_b0", "EfficientNet_B0_Weights", "classifier.1", "efficientnet", 9, gpu_share=0.25),
    _features_net("convnext_tiny", "ConvNeXt_Tiny_Weights", "classifier.2", "convnext", 8, bn_momentum=None),
    Backbone(
        "swin_t", "Swin_T_Weights", head="head",
        stages=tuple(f"features.{i}" for i in range(8)) + ("norm",),
        cam_layer="norm", family="swin", reshape="swin", bn_momentum=None,
    ),
    Backbone(
        "vit_b_16", "ViT_B_16_Weights", head="heads.head",
        stages=("conv_proj+class_token+encoder.pos_embedding", *(f"encoder.layers.encoder_layer_{i}" for i in range(12)),
                "encoder.ln"),
        cam_layer="encoder.layers.encoder_layer_11.ln_1", family="vit", fixed_input_size=True, reshape="vit",
        bn_momentum=None,
    ),
):
    register_backbone(_entry)
