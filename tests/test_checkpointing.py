"""Which epochs save a checkpoint (``checkpoints.frequency``), Ray-free."""

import pytest

from tlsweep.config.spec import SpecError, parse_spec
from tlsweep.sweep.checkpoint_epochs import asha_rung_epochs, checkpoint_epochs


def plain(tmp_path, **fields):
    data = {"name": "ck", "data": {"root": str(tmp_path)}, "models": ["resnet18"], "weights": "none", **fields}
    return parse_spec(data).plan()


def saved(spec, epochs):
    due = checkpoint_epochs(spec, epochs)
    return [e for e in range(1, epochs + 1) if due(e)]


def test_every_epoch_by_default(tmp_path):
    spec = plain(tmp_path, epochs=5)
    assert spec.checkpoints.frequency == 1
    assert saved(spec, 5) == [1, 2, 3, 4, 5]


def test_every_n_epochs_plus_last_and_asha_rungs(tmp_path):
    fifo = plain(tmp_path, epochs=10, scheduler={"type": "fifo"}, checkpoints={"frequency": 4})
    assert saved(fifo, 10) == [4, 8, 10]
    asha = plain(tmp_path, epochs=10, scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3,
                                                 "rejudge": False}, checkpoints={"frequency": 4})
    assert asha_rung_epochs(asha) == {1, 3, 9}
    assert saved(asha, 10) == [1, 3, 4, 8, 9, 10]  # a trial stopped at a rung keeps that epoch
    rejudged = plain(tmp_path, epochs=10, scheduler={"type": "asha", "grace_period": 2, "reduction_factor": 3},
                     checkpoints={"frequency": 4})
    assert saved(rejudged, 10) == list(range(2, 11))  # re-judging may stop a trial at any epoch after grace
    seconds = plain(tmp_path, epochs=10, checkpoints={"frequency": 5},
                    scheduler={"type": "asha", "budget": "seconds", "max_seconds": 60})
    assert asha_rung_epochs(seconds) == set() and saved(seconds, 10) == [5, 10]


def test_frequency_must_be_positive(tmp_path):
    with pytest.raises(SpecError, match="frequency"):
        plain(tmp_path, checkpoints={"frequency": 0})
