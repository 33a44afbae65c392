"""Noise-aware ASHA (tlsweep.sweep.noise_asha): near-ties within the noise band go on, small sweeps still prune,
and with the band and re-judging off it decides as Ray's ASHA does. Driven through Tune's scheduler calls with
stand-in trials, without starting Ray."""

import random
from types import SimpleNamespace

import pytest
from ray.tune.schedulers import ASHAScheduler

from benchmarks.asha_replay import noise_bracket, replay, replay_orders
from tlsweep.sweep.noise_asha import NoiseAwareASHA, binomial_band
from tlsweep.sweep.ray_internals import brackets

VAL = 500  # the pilot's val set


def scheduler(cls=NoiseAwareASHA, max_t=3, rf=2, **kw):
    return cls(time_attr="training_iteration", metric="val_acc", mode="max", max_t=max_t, grace_period=1,
               reduction_factor=rf, **kw)


def report(sched, trial_id, epoch, acc, val_images=VAL):
    """Tune's call for one epoch's result; adds the trial on its first epoch."""
    trial = SimpleNamespace(trial_id=trial_id)
    if epoch == 1:
        sched.on_trial_add(None, trial)
    return sched.on_trial_result(None, trial, {"training_iteration": epoch, "val_acc": acc,
                                               "val_images": val_images})


def test_binomial_band_is_two_standard_errors_of_a_difference():
    assert binomial_band(0.85, 500, 2.0) == pytest.approx(2 * (2 * 0.85 * 0.15 / 500) ** 0.5)
    assert binomial_band(0.85, 5000, 2.0) < binomial_band(0.85, 500, 2.0)  # a bigger val set tells apart more
    assert binomial_band(0.85, 0, 2.0) == 0.0


def test_near_tie_at_the_first_rung_survives_where_rays_asha_stops_it():
    """The pilot's loss: a config 1-2 points behind the first at epoch 1 (well within 500 images' noise)."""
    ray_asha, ours = scheduler(ASHAScheduler), scheduler()
    for sched in (ray_asha, ours):
        assert report(sched, "a", 1, 0.86) == "CONTINUE"
    assert report(ray_asha, "b", 1, 0.845) == "STOP"
    assert report(ours, "b", 1, 0.845) == "CONTINUE"
    assert report(ours, "c", 1, 0.60) == "STOP"  # far below: signal, stopped


def test_band_shrinks_with_a_bigger_val_set():
    small, big = scheduler(), scheduler()
    report(small, "a", 1, 0.86, val_images=500)
    report(big, "a", 1, 0.86, val_images=50_000)
    assert report(small, "b", 1, 0.84, val_images=500) == "CONTINUE"
    assert report(big, "b", 1, 0.84, val_images=50_000) == "STOP"


def test_fixed_band_and_loss_metric():
    sched = NoiseAwareASHA(time_attr="training_iteration", metric="val_loss", mode="min", max_t=3, grace_period=1,
                           reduction_factor=2, noise_band=0.1)
    for trial_id, loss, expected in (("a", 0.50, "CONTINUE"), ("b", 0.58, "CONTINUE"), ("c", 0.80, "STOP")):
        trial = SimpleNamespace(trial_id=trial_id)
        sched.on_trial_add(None, trial)
        assert sched.on_trial_result(None, trial, {"training_iteration": 1, "val_loss": loss}) == expected


def test_small_sweep_prunes_an_early_weak_trial_on_later_evidence():
    """Two trials at a time: a weak config that reached the first rung alone is stopped at its next rung once
    better configs have reported there; Ray's ASHA lets it run to the end."""
    ray_asha, ours = scheduler(ASHAScheduler, max_t=4), scheduler(max_t=4)
    for sched in (ray_asha, ours):
        assert report(sched, "weak", 1, 0.30) == "CONTINUE"  # rung 1 empty: nothing to compare
        assert report(sched, "good", 1, 0.80) == "CONTINUE"
        assert report(sched, "good2", 1, 0.82) == "CONTINUE"
    assert report(ray_asha, "weak", 2, 0.35) == "CONTINUE"
    assert report(ours, "weak", 2, 0.35) == "STOP"  # rung 2: judged again at rung 1, far below the cutoff
    assert report(ours, "good", 2, 0.85) == "CONTINUE"


def test_noise_band_and_rejudging_off_is_rays_asha():
    rng = random.Random(0)
    curves = [[(rng.random(), 1.0 + rng.random()) for _ in range(9)] for _ in range(12)]
    plain = noise_bracket(VAL, band=0.0, rejudge=False)
    for k in range(10):
        order = rng.sample(range(12), 12)
        assert replay(curves, order, 9, 1, 3, 2, bracket=plain) == replay(curves, order, 9, 1, 3, 2)


def noisy_curves(seed: int, configs: int = 16, epochs: int = 9, noise: float = 0.03):
    """Configs of true final accuracy spread 0.2-0.9; each epoch's value has ``noise`` (val sampling, seeds)."""
    rng = random.Random(seed)
    out = []
    for i in range(configs):
        final = 0.2 + 0.7 * i / (configs - 1)
        out.append([(min(1.0, max(0.0, final * (1 - 0.5 * 0.6 ** e) + rng.gauss(0, noise))), 1.0 + rng.random())
                    for e in range(epochs)])
    rng.shuffle(out)
    return out


def test_over_many_orders_noise_costs_ray_the_best_but_not_the_band():
    """Noisy curves (epoch noise 0.05, configs 0.047 apart) replayed in 50 orders, two trials at a time, with the
    val set whose binomial noise that is near the top (0.85): Ray's rule loses the best config in some orders;
    with the default band none is lost, and about half the epochs are still saved."""
    noise = 0.05
    curves = noisy_curves(0, noise=noise)
    ray_runs = replay_orders(curves, 9, 1, 3, 2, orders=50)
    ours = replay_orders(curves, 9, 1, 3, 2, orders=50, bracket=noise_bracket(round(0.85 * 0.15 / noise ** 2)))
    assert max(g for _, g in ray_runs) > 1.0
    assert max(g for _, g in ours) == 0.0
    assert sum(s for s, _ in ours) / len(ours) < 0.6


def test_rejudging_alone_saves_epochs_over_rays_rule():
    curves = noisy_curves(1, noise=0.01)
    ray_runs = replay_orders(curves, 9, 1, 3, 2, orders=50)
    ours = replay_orders(curves, 9, 1, 3, 2, orders=50, bracket=noise_bracket(VAL, band=0.0, rejudge=True))
    assert sum(s for s, _ in ours) < sum(s for s, _ in ray_runs)


def test_rungs_round_trip_as_resumable_state():
    sched = scheduler()
    report(sched, "a", 1, 0.8)
    report(sched, "b", 1, 0.7)
    state = sched.get_state()
    fresh = scheduler()
    fresh.set_state(state)
    assert fresh.get_state() == state
    assert type(brackets(fresh)[0]).__name__ == "NoiseBracket"


def test_sweep_file_sets_the_band_and_rejects_bad_ones(spec_dict):
    from tlsweep.config.spec import SpecError, parse_spec
    from tlsweep.sweep.schedulers import build_scheduler

    spec_dict["scheduler"] = {**spec_dict["scheduler"], "noise_band": 0.05, "rejudge": False}
    built = build_scheduler(parse_spec(spec_dict).plan())
    assert isinstance(built, NoiseAwareASHA)
    assert (brackets(built)[0].band, brackets(built)[0].rejudge) == (0.05, False)
    default = dict(spec_dict, scheduler={"type": "asha"})
    assert brackets(build_scheduler(parse_spec(default).plan()))[0].band == "binomial"
    for bad in (-0.1, "wide"):
        with pytest.raises(SpecError, match="noise_band"):
            parse_spec(dict(spec_dict, scheduler={"type": "asha", "noise_band": bad}))


def test_the_sweep_files_default_band_is_the_schedulers():
    from tlsweep.config.sections import SchedulerConfig
    from tlsweep.sweep.noise_asha import NOISE_Z

    assert SchedulerConfig().noise_z == NOISE_Z
