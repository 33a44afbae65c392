"""A trial's GPU memory: the estimate of what training needs, the cap on its allocator, and the memory it may
keep resident data in (decoded images of a split, cached features), decided once per
trial: its share of the GPU, less the training estimate (``tlsweep.trial.gpus.estimate_bytes``, CUDA context and
caching allocator's reserve included). The trial's allocator is capped at its share
(``torch.cuda.set_per_process_memory_fraction``), so an overflow fails in the trial that caused it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field


@dataclass
class ResidentBudget:
    """Bytes left for resident data; splits take from it in the order they are built."""

    left: int = 0

    def take(self, nbytes: int) -> bool:
        if nbytes > self.left:
            return False
        self.left -= nbytes
        return True

    def give(self, nbytes: int) -> None:
        self.left += nbytes


def resident_bytes(share: float, total_bytes: int, estimate_bytes: int) -> int:
    """share × GPU memory − the estimate (which holds the CUDA context and the allocator's reserve), at least 0."""
    return max(0, int(share * total_bytes) - int(estimate_bytes))


def cap_allocator(device, share: float) -> None:
    """Cap this process's caching allocator at ``share`` of the GPU (a no-op for a whole GPU or the CPU)."""
    import torch

    if torch.device(device).type == "cuda" and 0 < share < 1:
        torch.cuda.set_per_process_memory_fraction(float(share), torch.device(device))


@dataclass
class TrialMemory:
    """What a trial knows about its GPU memory (all None/empty on the CPU), decided once when it starts."""

    share: float = 0.0
    estimate: int | None = None
    total: int | None = None
    budget: ResidentBudget | None = None
    what: dict = field(default_factory=dict)

    @classmethod
    def for_trial(cls, config, device, share: float) -> TrialMemory:
        """Estimate at the least-frozen depth and largest size the trial reaches, cap the allocator at its share
        and set the resident budget."""
        import torch

        device = torch.device(device)
        if device.type != "cuda":
            return cls()
        from .gpus import trial_estimate

        share = float(share or 1.0)
        estimate, what = trial_estimate(config)
        total = torch.cuda.get_device_properties(device).total_memory
        cap_allocator(device, share)
        return cls(share, estimate, total, ResidentBudget(resident_bytes(share, total, estimate)), what)

    @contextlib.contextmanager
    def explained(self, config):
        """Re-raise a CUDA out-of-memory error naming the model, batch size, share and the estimate."""
        import torch

        try:
            yield
        except torch.OutOfMemoryError as err:
            raise torch.OutOfMemoryError(self.message(config) + f"\n{err}") from err

    def message(self, config) -> str:
        gib = 2**30
        est = f"{self.estimate / gib:.1f} GiB" if self.estimate else "unknown"
        total = f" of a {self.total / gib:.1f} GiB GPU" if self.total else ""
        return (f"CUDA out of memory training {config.model_label} at batch size {int(config.batch_size)} "
                f"({self.what or 'precision ' + str(config.performance.precision)}): GPU share {self.share:g}"
                f"{total}, estimate {est}; lower the batch size, use precision bf16, or raise resources.gpu")
