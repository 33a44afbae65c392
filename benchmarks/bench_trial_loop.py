"""tlsweep's ``Trial.train_epoch`` vs a hand-written PyTorch loop in the seed scripts' style (torchvision
ImageFolder + DataLoader, resnet18, Adam, CrossEntropy, running loss/accuracy): training images/s on the same
images, model, batch size and torch threads. Input pipeline for input pipeline: the Trial decodes its images every
epoch as the loop does (``data.cache: {images: off, features: off}``; the caches have their own benchmarks). Both
warmed up; epochs alternate; medians compared."""

from __future__ import annotations

import time

from ._common import median, shapes


def _plain_setup(root, size: int, batch: int, num_classes: int):
    import torch
    from torch import nn
    from torchvision import datasets, models, transforms

    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                             transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    data = datasets.ImageFolder(str(root / "train"), transform=tf)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, num_workers=0)
    torch.manual_seed(0)
    model = models.resnet18(weights=None)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()

    def epoch() -> int:
        model.train()
        running_loss, correct, seen = 0.0, 0, 0
        for images, labels in loader:
            optimizer.zero_grad()
            outputs = model(images)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item() * images.size(0)
            correct += (outputs.argmax(1) == labels).sum().item()
            seen += images.size(0)
        return seen

    return epoch


def _trial_setup(root, size: int, batch: int):
    from tlsweep.trial.loop import Trial

    trial = Trial({"model": {"name": "resnet18", "weights": "none"}, "model_label": "resnet18",
                   "data": {"root": str(root), "image_size": size, "augment": "none",
                            "cache": {"images": "off", "features": "off"}}, "epochs": 100, "seed": 0,
                   "lr": 1e-3, "batch_size": batch, "optimizer": "adam", "lr_scheduler": "none"}, device="cpu")

    def epoch() -> int:
        trial.train_epoch()
        return len(trial.splits.train)

    from tlsweep.trial.loop import TransformedDataset

    assert isinstance(trial.train_loader.dataset, TransformedDataset)  # decoded per item, not from the cache
    return epoch


def _images_per_s(epoch) -> float:
    start = time.perf_counter()
    n = epoch()
    return n / (time.perf_counter() - start)


def run(quick: bool = False) -> list[dict]:
    import torch

    threads = 1  # one thread: steady on a busy machine, and what each concurrent trial of a sweep gets
    torch.set_num_threads(threads)
    size, batch, classes, per_class = 32, 16, 3, 32
    root = shapes("trial_loop", classes, train=per_class, val=8, size=size)
    plain, trial = _plain_setup(root, size, batch, classes), _trial_setup(root, size, batch)
    plain(), trial()  # warm-up
    rounds = 3 if quick else 5
    speeds = {"plain": [], "trial": []}
    for i in range(rounds):
        order = (("plain", plain), ("trial", trial)) if i % 2 == 0 else (("trial", trial), ("plain", plain))
        for name, epoch in order:
            speeds[name].append(_images_per_s(epoch))
    p, t = median(speeds["plain"]), median(speeds["trial"])
    ratio = t / p
    return [{
        "benchmark": "trial_loop",
        "baseline": f"hand-written loop: {p:.0f} img/s",
        "candidate": f"tlsweep Trial: {t:.0f} img/s",
        "ratio": ratio, "target": "≥ 0.95×", "met": ratio >= 0.95,
        "notes": (f"resnet18 from scratch, {size} px, batch {batch}, {classes * per_class} train images, {threads} thread, "
                  f"images decoded every epoch on both sides (Trial's image cache off), "
                  f"median of {rounds} alternating epochs (img/s plain {min(speeds['plain']):.0f}–"
                  f"{max(speeds['plain']):.0f}, Trial {min(speeds['trial']):.0f}–{max(speeds['trial']):.0f})"),
    }]
