"""Replaying Ray's ASHA rule on recorded curves (benchmarks/asha_replay.py), without starting Ray."""

from benchmarks.asha_replay import replay, replay_orders


def curve(accs, seconds=1.0):
    return [(a, seconds) for a in accs]


def test_first_trial_goes_on_and_weaker_later_trials_stop():
    curves = [curve([0.5, 0.6, 0.7]), curve([0.9, 0.95, 0.99]), curve([0.1, 0.2, 0.3]), curve([0.2, 0.2, 0.2])]
    epochs = replay(curves, [0, 1, 2, 3], max_t=3, grace=1, rf=3, slots=1)
    assert epochs == {0: 3, 1: 3, 2: 1, 3: 1}  # 0 has no rival at rung 1; 1 beats it; 2 and 3 fall below
    assert replay(curves, [2, 3, 0, 1], max_t=3, grace=1, rf=3, slots=1)[2] == 3  # order decides


def test_min_mode_and_orders_report_share_and_loss():
    losses = [curve([0.1, 0.05, 0.01]), curve([2.0, 1.5, 1.0]), curve([3.0, 2.0, 1.0])]
    assert replay(losses, [0, 1, 2], max_t=3, grace=1, rf=3, slots=1, mode="min") == {0: 3, 1: 1, 2: 1}
    curves = [curve([0.2 + 0.1 * i] * 9) for i in range(6)]
    out = replay_orders(curves, max_t=9, grace=1, rf=3, slots=2, orders=20)
    assert len(out) == 20
    assert all(0 < share <= 1 for share, _ in out) and all(lost >= 0 for _, lost in out)
    assert min(share for share, _ in out) < 1  # some trials stop early
