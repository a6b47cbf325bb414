"""Standing's statistics on fixed, seeded data: interval coverage at the nominal rate, the stopping rule,
the drift tests, the autolabel thresholds' guarantee, and the audit slice's place in the queue."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from suggest.standing.autolabel import class_threshold, first_size, select, thresholds
from suggest.standing.drift import agreement_drift, mix_drift
from suggest.standing.estimates import clopper_pearson_lower, proportion, weighted_proportion, wilson
from suggest.standing.stopping import cohen_kappa, expected_gain, fit_curve, stop_signal
from suggest.strategies.ranking import BATCH_BAND, mix_audit

# intervals cover the truth at their nominal rate --------------------------------------------------------


@pytest.mark.parametrize("p,n", [(0.6, 60), (0.85, 200), (0.95, 400)])
def test_wilson_interval_covers_the_truth_about_95_percent_of_the_time(p, n):
    rng = np.random.default_rng(1)
    hits = 0
    reps = 2000
    for _ in range(reps):
        k = rng.binomial(n, p)
        lo, hi = wilson(k, n)
        hits += lo <= p <= hi
    assert 0.93 <= hits / reps <= 0.975


def test_the_weighted_audit_estimate_covers_the_pool_accuracy_and_the_agreement_would_not():
    """Rounds of a labeling session: the pool shrinks and the model improves; each batch carries a random
    audit slice (2.5 tasks on average) whose tasks weigh pool size / expected draws. The truth is the accuracy
    of the suggestions shown over all pools, each pool counted by its size."""
    rng = np.random.default_rng(7)
    rounds, batch, fraction = 40, 50, 0.05
    sizes = np.linspace(5000, 1000, rounds).astype(int)
    acc = np.linspace(0.65, 0.9, rounds)
    truth = float((sizes * acc).sum() / sizes.sum())
    covered, reps = 0, 600
    hardest = []
    for _ in range(reps):
        correct, weights, agree = [], [], []
        for n, a in zip(sizes, acc, strict=True):
            scores = np.ones(n)
            _, _, audited, w = mix_audit(scores, np.arange(batch), fraction=fraction, batch_size=batch, rng=rng)
            correct += list(rng.random(len(audited)) < a)
            weights += [w] * len(audited)
            agree += list(rng.random(batch) < a - 0.2)  # the batch is the hardest tasks: agreement runs low
        est = weighted_proportion(correct, weights, "audit")
        covered += est["low"] <= truth <= est["high"]
        hardest.append(proportion(agree, "agreement")["high"] < truth)
    assert 0.92 <= covered / reps <= 0.985
    assert np.mean(hardest) > 0.95  # the agreement estimate's interval misses the pool accuracy: biased low


def test_clopper_pearson_lower_bound_holds_at_least_at_its_level():
    rng = np.random.default_rng(3)
    for p, n in ((0.9, 50), (0.97, 300)):
        ok = sum(clopper_pearson_lower(rng.binomial(n, p), n, 0.05) <= p for _ in range(3000))
        assert ok / 3000 >= 0.95
    assert clopper_pearson_lower(0, 10) == 0.0 and clopper_pearson_lower(10, 10, 0.05) == pytest.approx(0.05 ** 0.1)


def test_estimates_are_na_without_data():
    assert proportion([], "x")["estimate"] is None and weighted_proportion([], [], "x")["estimate"] is None
    assert weighted_proportion([True], [0.0], "x")["estimate"] is None


# stopping ---------------------------------------------------------------------------------------------


def test_kappa_matches_scikit_learn_and_handles_constant_sequences():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.choice(list("abc"), 200)
        b = np.where(rng.random(200) < 0.8, a, rng.choice(list("abc"), 200))
        assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    assert cohen_kappa(["x"] * 5, ["x"] * 5) == 1.0
    with pytest.raises(ValueError):
        cohen_kappa([1, 2], [1])


def test_stop_signal_needs_three_consecutive_versions_at_099():
    assert stop_signal([None, 0.5, 0.99, 0.995, 0.991])["stable"]
    assert stop_signal([None, 0.5, 0.99, 0.995, 0.991])["first_fired_at"] == 4
    s = stop_signal([0.99, 0.999, 0.98, 0.99, 0.995])
    assert not s["stable"] and s["consecutive"] == 2 and s["first_fired_at"] is None
    assert not stop_signal([0.99, None, 0.99, 0.99])["stable"]  # a version without a comparison breaks the run
    later = stop_signal([0.99, 0.99, 0.99, 0.5])
    assert not later["stable"] and later["first_fired_at"] == 2  # fired once, then predictions moved again


def test_expected_gain_is_read_off_the_fitted_curve():
    n = np.array([50, 100, 200, 400, 800])
    acc = 0.85 - 0.9 * n ** -0.5
    a, b, c = fit_curve(n, acc)
    assert a == pytest.approx(0.85, abs=0.01) and c == pytest.approx(0.5, abs=0.06)
    gain = expected_gain(n, acc, 100)
    truth = 0.9 * (800 ** -0.5 - 900 ** -0.5)
    assert gain["gain"] == pytest.approx(truth, abs=0.002) and gain["at"] == 800
    assert expected_gain([10, 20], [0.5, 0.6])["gain"] is None  # fewer than 3 versions


# drift ------------------------------------------------------------------------------------------------


def test_agreement_drift_flags_a_real_drop_only_above_the_minimum_count():
    rng = np.random.default_rng(2)
    older, recent = rng.random(200) < 0.8, rng.random(100) < 0.5
    assert agreement_drift(older, recent)["flagged"]
    assert not agreement_drift(older[:20], recent[:20])["flagged"]  # below the minimum: never flagged
    assert "na" in agreement_drift(older[:20], recent[:20])
    assert not agreement_drift(rng.random(200) < 0.5, rng.random(100) < 0.8)["flagged"]  # it rose: no alarm


def test_drift_tests_keep_their_false_alarm_rate_under_no_drift():
    rng = np.random.default_rng(5)
    flags_a = flags_m = 0
    for _ in range(300):
        flags_a += agreement_drift(rng.random(150) < 0.75, rng.random(60) < 0.75)["flagged"]
        flags_m += mix_drift(rng.choice(list("abc"), 80, p=[0.5, 0.3, 0.2]),
                             rng.choice(list("abc"), 200, p=[0.5, 0.3, 0.2]))["flagged"]
    assert flags_a <= 9 and flags_m <= 9  # alpha = 0.01: about 3 of 300 expected


def test_mix_drift_flags_a_shifted_label_mix():
    rng = np.random.default_rng(4)
    got = mix_drift(rng.choice(list("abc"), 100, p=[0.2, 0.2, 0.6]), rng.choice(list("abc"), 300, p=[0.6, 0.3, 0.1]))
    assert got["flagged"] and got["p_value"] < 0.001 and set(got["mix"]["recent"]) == {"a", "b", "c"}


# autolabel --------------------------------------------------------------------------------------------


def _calibrated(rng, n, classes=("a", "b")):
    conf = rng.beta(12, 1, n).clip(0.5, 0.9999)
    pred = rng.choice(classes, n)
    return pred, conf, rng.random(n) < conf


def test_autolabel_thresholds_meet_the_target_in_at_least_95_percent_of_runs():
    rng = np.random.default_rng(11)
    met, covered = 0, []
    runs = 300
    for _ in range(runs):
        pred, conf, ok = _calibrated(rng, 3000)
        found = thresholds(pred, conf, ok, ["a", "b"], target=0.95, confidence=0.95)
        ppred, pconf, pok = _calibrated(rng, 20000)
        picked = select(ppred, pconf, found)
        covered.append(len(picked) / 20000)
        met += len(picked) == 0 or pok[picked].mean() >= 0.95
    assert met / runs >= 0.95
    assert np.mean(covered) > 0.1  # and it does auto-label something


def test_autolabel_threshold_rises_with_the_target_and_refuses_without_enough_evidence():
    rng = np.random.default_rng(12)
    pred, conf, ok = _calibrated(rng, 6000)
    low = thresholds(pred, conf, ok, ["a", "b"], target=0.9)
    high = thresholds(pred, conf, ok, ["a", "b"], target=0.96)
    for c in "ab":
        assert low[c]["threshold"] is not None and high[c]["threshold"] is not None
        assert high[c]["threshold"] > low[c]["threshold"]
        assert high[c]["bound"] >= 0.96 and low[c]["bound"] >= 0.9
    few = class_threshold(conf[:20], ok[:20], 0.95, 0.025)
    assert few["threshold"] is None and "too few" in few["reason"]
    bad = class_threshold(np.full(500, 0.99), np.random.default_rng(0).random(500) < 0.8, 0.95, 0.025)
    assert bad["threshold"] is None  # confident and wrong: no threshold, whatever the confidence says
    assert first_size(0.95, 0.05) == 59  # (0.95)^59 < 0.05 <= (0.95)^58: the textbook zero-failure count
    with pytest.raises(ValueError):
        thresholds(pred, conf, ok, ["a"], target=1.5)


# the audit slice in the queue ------------------------------------------------------------------------


def test_audit_slice_joins_the_batch_and_keeps_the_score_contract():
    rng = np.random.default_rng(0)
    n, batch_size = 1000, 50
    scores = np.concatenate([np.arange(50) * BATCH_BAND / 50, 0.01 + 0.99 * rng.random(950)])
    batch = np.arange(50)
    draws = []
    for seed in range(400):
        new_scores, new_batch, audited, weight = mix_audit(scores, batch, fraction=0.05, batch_size=batch_size,
                                                           rng=np.random.default_rng(seed))
        draws.append(len(audited))
        assert len(new_batch) == batch_size and len(set(new_batch.tolist())) == batch_size
        assert set(audited.tolist()) <= set(new_batch.tolist())
        assert weight == pytest.approx(n / 2.5)
        order = np.argsort(new_scores, kind="stable")
        assert order[:batch_size].tolist() == new_batch.tolist()  # the batch first, in batch order
        assert (new_scores[new_batch] < BATCH_BAND).all() and (np.delete(new_scores, new_batch) >= BATCH_BAND).all()
    assert np.mean(draws) == pytest.approx(2.5, abs=0.15) and set(draws) == {2, 3}
    same = mix_audit(scores, batch, fraction=0.0, batch_size=batch_size, rng=rng)
    assert same[0] is scores and len(same[2]) == 0


def test_simulate_stopping_report_places_the_signal_against_the_curve():
    from suggest.standing.simulation import StopTracker, stopping_report

    class Flips:  # predictions change until step 60, then hold still
        def __init__(self, step):
            self.step = step

        def predict_proba_embedded(self, X):
            p = np.zeros((len(X), 2))
            moving = self.step < 60
            p[np.arange(len(X)), (np.arange(len(X)) + (self.step // 10 if moving else 0)) % 2] = 1.0
            return p

    steps = list(range(10, 160, 10))
    tracker = StopTracker(np.zeros((50, 3)))
    for s in steps:
        tracker.observe(Flips(s), s)
    assert tracker.fired_at == 90  # 60 still differs from 50; 70, 80 and 90 each equal their predecessor
    curve = [0.5 + 0.3 * (1 - np.exp(-s / 40)) for s in steps]
    report = stopping_report({"random": [curve]}, {"random": [tracker.fired_at]}, steps, [0.8],
                             {"random": [tracker.kappas]})
    entry = report["strategies"]["random"]
    assert entry["fires_at_mean"] == 90
    assert entry["labels_to_95"] == next(s for s, a in zip(steps, curve, strict=True) if a >= 0.76)
    assert entry["saved_vs_95"] == entry["labels_to_95"] - 90
    assert entry["accuracy_given_up"] == pytest.approx(0.8 - curve[steps.index(90)], abs=1e-4)
    assert entry["kappa_last_mean"] == 1.0
