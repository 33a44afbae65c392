"""The offline demo's parts: torchvision dataset sources (Fashion-MNIST from idx files), export, weights import."""

from __future__ import annotations

import gzip
import hashlib
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models._api import Weights, WeightsEnum
from typer.testing import CliRunner

from tlsweep.cli import app
from tlsweep.config.sections import DataConfig
from tlsweep.config.spec import SpecError, parse_spec
from tlsweep.data import load_splits
from tlsweep.data.export_folders import export_imagefolder
from tlsweep.data.sources import DataError
from tlsweep.data.torchvision_sources import prepare_fashionmnist
from tlsweep.models.weights import KnownWeights, WeightsError, import_weights, prefetch

N_TRAIN, N_TEST = 80, 30  # 8 and 3 per class


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.uint8) % 10
    images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for i, y in enumerate(labels):
        images[i, 2 * y: 2 * y + 6, 4:24] = 250  # a class-specific bar
    return images, labels


def _write_idx(path, array: np.ndarray) -> None:
    magic = bytes([0, 0, 8, array.ndim])
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(magic + dims + array.tobytes())


@pytest.fixture(scope="module")
def debian_dir(tmp_path_factory):
    """Made-up Fashion-MNIST idx files laid out like Debian's /usr/share/datasets/fashion-mnist."""
    folder = tmp_path_factory.mktemp("fashion-mnist")
    for prefix, n, seed in (("train", N_TRAIN, 0), ("t10k", N_TEST, 1)):
        images, labels = _images(n, seed)
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture(scope="module")
def fmnist_root(debian_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    raw = prepare_fashionmnist(root, debian_dir)
    assert raw == root / "FashionMNIST" / "raw"
    return root


def _data(root, **extra):
    return DataConfig.model_validate({"source": "fashionmnist", "root": str(root), **extra})


def test_prepare_uncompresses_into_torchvision_layout(fmnist_root, debian_dir):
    raw = fmnist_root / "FashionMNIST" / "raw"
    with gzip.open(debian_dir / "train-images-idx3-ubyte.gz") as f:
        assert (raw / "train-images-idx3-ubyte").read_bytes() == f.read()
    assert sorted(p.name for p in raw.iterdir()) == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                                                     "train-images-idx3-ubyte", "train-labels-idx1-ubyte"]


def test_fashionmnist_source_subset_stratified_rgb(fmnist_root):
    splits = load_splits(_data(fmnist_root, val_fraction=0.25, subset={"train": 30, "val": 10, "test": 20}), seed=3)
    assert splits.sizes() == {"train": 30, "val": 10, "test": 20}
    assert splits.classes[0] == "T-shirt/top" and len(splits.classes) == 10
    assert Counter(splits.test.targets) == {c: 2 for c in range(10)}  # stratified
    assert max(Counter(splits.train.targets).values()) - min(Counter(splits.train.targets).values()) <= 1
    image, label = splits.test[0]
    assert image.mode == "RGB" and image.size == (28, 28)
    images, labels = _images(N_TEST, 1)
    first = splits.test.indices[0]
    assert label == labels[first]
    assert np.array_equal(np.asarray(image)[..., 1], images[first])  # grey copied into each channel
    train_ids = set(splits.train.indices)
    assert not train_ids & set(splits.val.indices)  # val carved from train, disjoint
    again = load_splits(_data(fmnist_root, val_fraction=0.25, subset={"train": 30, "val": 10, "test": 20}), seed=3)
    assert again.train.indices == splits.train.indices


def test_missing_files_name_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*tlsweep data prepare fashionmnist"):
        load_splits(_data(tmp_path), 0)
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        prepare_fashionmnist(tmp_path / "out", tmp_path / "nowhere")


def test_spec_subset_fields():
    base = {"name": "x", "models": ["resnet18"], "weights": "none"}
    spec = parse_spec({**base, "data": {"root": "d", "source": "fashionmnist", "subset": {"train": 5}}})
    assert spec.plan().data.to_dict()["subset"] == {"train": 5, "val": None, "test": None}
    with pytest.raises(SpecError, match="data.subset.trian"):
        parse_spec({**base, "data": {"root": "d", "subset": {"trian": 5}}})


def test_export_writes_an_imagefolder_that_reads_back(fmnist_root, tmp_path):
    data = _data(fmnist_root, subset={"train": 20, "val": 10, "test": 10})
    counts = export_imagefolder(data, tmp_path / "out", seed=0)
    assert counts == {"train": 20, "val": 10, "test": 10}
    assert (tmp_path / "out" / "train" / "T-shirt_top").is_dir()
    back = load_splits(DataConfig.model_validate({"root": str(tmp_path / "out")}), 0)
    assert back.sizes() == counts
    original = load_splits(data, 0)
    assert Counter(back.test.targets).total() == 10 and len(back.classes) == 10
    img = Image.open(next((tmp_path / "out" / "test").rglob("*.png")))
    assert img.size == (28, 28) and img.mode == "RGB"
    assert sorted(Counter(original.train.targets).values()) == sorted(Counter(back.train.targets).values())


# --- weights ---------------------------------------------------------------------------------------------


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_wrong_weights_file_is_refused(tmp_path, torch_home):
    fake = tmp_path / "mobilenet_v2-b0353104.pth"
    fake.write_bytes(b"not the real weights")
    with pytest.raises(WeightsError, match=r"not MobileNet_V2_Weights.IMAGENET1K_V1.*expects b0353104"):
        import_weights(fake)
    result = CliRunner().invoke(app, ["weights", "import", str(fake)])
    assert result.exit_code == 2 and "expects b0353104" in result.output
    assert not (torch_home / "hub" / "checkpoints" / fake.name).exists()


def test_right_weights_file_lands_where_torch_hub_finds_it(tmp_path, torch_home):
    state = {"w": torch.arange(6.0).view(2, 3)}
    path = tmp_path / "mine.pth"
    torch.save(state, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    url = f"https://example.invalid/models/tiny-{digest[:8]}.pth"  # unreachable: found in the cache or fails
    entry, target = import_weights(path, catalog=[KnownWeights("Tiny_Weights.V1", url)])
    assert entry.label == "Tiny_Weights.V1"
    assert target == torch_home / "hub" / "checkpoints" / f"tiny-{digest[:8]}.pth"
    tiny = WeightsEnum("Tiny_Weights", {"V1": Weights(url=url, transforms=None, meta={})})
    loaded = tiny.V1.get_state_dict(progress=False, check_hash=True)  # torchvision's own loading path
    assert torch.equal(loaded["w"], state["w"])
    with pytest.raises(WeightsError, match="matches none"):
        import_weights(path)  # not one of torchvision's files


def test_prefetch_names_missing_weights_offline(torch_home):
    plain = parse_spec({"name": "x", "data": {"root": "d"}, "models": [
        {"name": "mobilenet_v2", "weights": "IMAGENET1K_V1"}, {"name": "resnet18", "weights": "none"}]}).plan()
    [status] = prefetch(plain, download=False)
    assert status.state == "missing" and "tlsweep weights import mobilenet_v2-b0353104.pth" in status.detail
    status.path.parent.mkdir(parents=True)
    status.path.write_bytes(b"x")
    assert [s.state for s in prefetch(plain, download=False)] == ["ok"]
