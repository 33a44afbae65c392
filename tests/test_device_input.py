"""The device-fed input path, run on the CPU: uint8 cached images augmented on the batch give what the PIL path
gives for deterministic transforms, in the same order; batched random ops do what their torchvision op does."""

import pytest
import torch
from torchvision.transforms import v2

from tlsweep.config.sections import CacheConfig, DataConfig
from tlsweep.data import load_splits
from tlsweep.data.cache import decoded as I
from tlsweep.data.cache.device import BatchTransform, DeviceBatches, batched
from tlsweep.data.transforms import build_transform, tensor_steps
from tlsweep.trial.loop import Trial, make_loader

from .conftest import trial_config_for, with_data


@pytest.fixture(scope="module")
def splits(shapes_root):
    return load_splits(DataConfig.model_validate({"root": str(shapes_root)}), 0)


@pytest.fixture()
def cached(splits, tmp_path):
    return I.CachedImages(I.build_images(splits.train, 32, tmp_path), 32)


def batch(n=16, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def test_uint8_batch_on_the_device_path_equals_the_pil_path(splits, cached):
    pil = build_transform(32)  # PIL image → resize → float → normalise, one image at a time
    expected = torch.stack([pil(splits.train[i][0]).as_subclass(torch.Tensor) for i in range(len(cached))])
    loader = DeviceBatches(cached, 10, shuffle=False, device=torch.device("cpu"))
    got = torch.cat([x for x, _ in loader])
    assert torch.equal(got, expected)
    assert torch.cat([y for _, y in loader]).tolist() == splits.train.targets


def test_batches_come_in_the_order_a_dataloader_gives(cached):
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    loader = make_loader(cached, 8, True, 0, a, collate_fn=I.passthrough)
    device = DeviceBatches(cached, 8, shuffle=True, device=torch.device("cpu"), generator=b)
    for _ in range(2):
        ref = [y.tolist() for _, y in loader]
        got = [y.tolist() for _, y in device]
        assert got == ref and len(device) == len(loader)
    assert torch.equal(a.get_state(), b.get_state())


@pytest.mark.parametrize("augment", ["none", "flip"])
def test_trial_on_the_device_path_trains_like_the_pil_path(shapes_root, tmp_path, augment):
    torch.set_num_threads(1)
    histories = []
    for images, where in (("off", "cpu"), ("on", "device")):
        config = trial_config_for(shapes_root, epochs=2, model={"name": "resnet18"},
                                  performance={"input": where})
        config = config.replace(data=config.data.replace(
            augment=augment, cache=CacheConfig(images=images, features="off"), cache_dir=str(tmp_path)))
        trial = Trial(config, device="cpu")
        assert trial.cache_info["input"] == where
        histories.append([m[k] for m in trial.run() for k in ("train_loss", "val_loss", "val_acc")])
    assert histories[0] == pytest.approx(histories[1], abs=1e-5)


def test_batched_flip_flips_some_images_and_keeps_the_others():
    x = batch(64).float() / 255
    torch.manual_seed(0)
    y = batched(v2.RandomHorizontalFlip())(x)
    flipped = [torch.equal(y[i], x[i].flip(-1)) for i in range(64)]
    kept = [torch.equal(y[i], x[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_batched_resized_crop_of_the_whole_image_is_the_image():
    x = batch(8).float() / 255
    whole = batched(v2.RandomResizedCrop(32, scale=(1.0, 1.0), ratio=(1.0, 1.0)))(x)
    assert torch.allclose(whole, x, atol=1e-5)
    crops = batched(v2.RandomResizedCrop(24, scale=(0.2, 0.5)))(x)
    assert crops.shape == (8, 3, 24, 24) and crops.min() >= 0 and crops.max() <= 1
    assert not torch.allclose(crops[0], crops[1])


def test_batched_colour_jitter_matches_torchvision_at_fixed_factors():
    x = batch(4).float() / 255
    assert torch.allclose(batched(v2.ColorJitter(brightness=(1, 1), contrast=(1, 1), saturation=(1, 1),
                                                 hue=(0, 0)))(x), x, atol=1e-5)
    for kwargs, fn in (({"brightness": (0.6, 0.6)}, lambda t: v2.functional.adjust_brightness(t, 0.6)),
                       ({"contrast": (1.5, 1.5)}, lambda t: v2.functional.adjust_contrast(t, 1.5)),
                       ({"saturation": (0.0, 0.0)}, lambda t: v2.functional.adjust_saturation(t, 0.0)),
                       ({"hue": (0.2, 0.2)}, lambda t: v2.functional.adjust_hue(t, 0.2))):
        assert torch.allclose(batched(v2.ColorJitter(**kwargs))(x), fn(x), atol=1e-4), kwargs


def test_ops_without_a_batched_form_run_per_image():
    from tlsweep.data.augment import build_policy

    policy = build_policy([{"GaussianBlur": {"kernel_size": 3}}, {"RandomRot90": {}},
                           {"RandomAffine": {"degrees": 10}}], 1.0, 32)
    transform = BatchTransform(v2.Compose(policy + tensor_steps(32)[-2:]))
    out = transform(batch(6))
    assert out.shape == (6, 3, 32, 32) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_a_split_kept_resident_gives_the_same_batches(cached):
    a, b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    streamed = DeviceBatches(cached, 8, shuffle=True, device=torch.device("cpu"), generator=a)
    resident = DeviceBatches(cached, 8, shuffle=True, device=torch.device("cpu"), generator=b, resident=True)
    for (x1, y1), (x2, y2) in zip(streamed, resident, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert resident._on_device.dtype == torch.uint8 and resident._on_device.shape[0] == len(cached)


def test_batches_gathered_ahead_on_a_thread_stop_cleanly_and_pass_errors_on(cached):
    import threading

    loader = DeviceBatches(cached, 8, shuffle=True, device=torch.device("cpu"), generator=torch.Generator())
    it = iter(loader)
    next(it)
    it.close()  # leaving an epoch early stops the gathering thread
    assert not [t for t in threading.enumerate() if t.name == "tlsweep-batches" and t.is_alive()]

    class Broken(Exception):
        pass

    def broken(order):
        yield next(iter(DeviceBatches._host_batches(loader, order)))
        raise Broken("unreadable cache entry")

    loader._host_batches = broken
    with pytest.raises(Broken, match="unreadable"):
        list(loader)


def test_resume_on_the_device_path_repeats_augmentation_and_losses(shapes_root, tmp_path):
    from tlsweep.trial.loop import rng_state

    torch.set_num_threads(1)
    config = trial_config_for(shapes_root, epochs=2, model={"name": "resnet18"},
                              performance={"input": "device"})
    config = with_data(config, augment="basic", cache={"images": "on", "features": "off"},
                      cache_dir=str(tmp_path / "cache"))
    straight = [m["train_loss"] for m in Trial(config, device="cpu").run()]
    first = Trial(config, device="cpu")
    losses = [first.step()["train_loss"]]
    first.save(tmp_path / "ckpt")
    resumed = Trial(config, device="cpu")
    resumed.restore(tmp_path / "ckpt")
    losses.append(resumed.step()["train_loss"])
    assert losses == straight
    assert set(rng_state(torch.device("cpu"), torch.Generator())) == {"torch", "loader"}  # + "cuda" on a GPU
