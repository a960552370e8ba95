"""The drift statistics on their own and in the live drift service.

Every score is compared with an independent computation on the same rows: alibi-detect's
`KSDrift`/`TabularDrift` (p-values to 1e-6), `scipy.stats.ks_2samp` and
`chi2_contingency`, `scipy.spatial.distance.jensenshannon`, `scipy.stats.wasserstein_distance`
and the PSI/Hellinger formulas on bins counted here with `np.histogram`. Also: the
registry contract, corrections that count only p-value-tested features, default
thresholds that leave stationary windows of the default size unflagged and flag shifted
ones, features inferred categorical, reference files loaded bit for bit as JSON numbers,
and the service's per-feature reply, status and metrics.
"""

from __future__ import annotations

import io
import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

from tests.servers import metric_value
from tests.test_drift import drift_service, feed
from vigil.data import load_table
from vigil_detectors.drift import statistics
from vigil_detectors.drift.settings import DriftSettings
from vigil_detectors.drift.statistics import base, fit_statistic, inferred_categorical
from vigil_detectors.drift.statistics.bins import N_BINS, reference_bins

RNG = np.random.default_rng(7)
N_REF = 3000


def mixed(n: int, rng, shift: float = 0.0) -> np.ndarray:
    """Numeric (normal, skewed, integer-valued) and categorical (3 and 2 values) columns."""
    return np.column_stack([rng.normal(size=n) + shift, rng.exponential(size=n), rng.integers(0, 50, n),
                            rng.choice(3, n, p=[0.5, 0.3, 0.2]), rng.choice(2, n)]).astype(np.float64)


REF = mixed(N_REF, RNG)
CATS = {3: None, 4: None}


# -- the registry ---------------------------------------------------------------------------------

def test_the_registry_names_types_and_thresholds():
    assert sorted(statistics.names()) == ["chi2", "hellinger", "jensenshannon", "ks", "psi", "wasserstein"]
    for name in statistics.names():
        cls = statistics.get(name)
        assert cls.name == name and cls.accepts <= {"numeric", "categorical"}
        assert cls.p_value_test == (cls.default_threshold is None)
    assert statistics.get("psi").default_threshold == 0.2
    assert base.choose("categorical", "ks") == "chi2" and base.choose("numeric", "chi2") == "ks"
    assert base.choose("categorical", "psi") == "psi" and base.choose("numeric", "wasserstein") == "wasserstein"
    assert base.choose("categorical", "ks", "wasserstein") == "wasserstein"  # only inferred: numbers after all
    with pytest.raises(ValueError, match="does not test categorical"):
        base.choose("categorical", "ks", "ks", declared=True)
    with pytest.raises(ValueError, match="unknown drift statistic 'holm'"):
        statistics.get("holm")


def test_the_crd_offers_exactly_the_registered_statistics():
    names = sorted(statistics.names())
    for path in ("crds/modelmonitors.vigil.dev.yaml", "charts/vigil/crds/modelmonitors.vigil.dev.yaml"):
        crd = yaml.safe_load(open(path))
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        drift = spec["properties"]["detectors"]["properties"]["drift"]["properties"]
        assert sorted(drift["type"]["enum"]) == names
        assert sorted(drift["statistics"]["additionalProperties"]["enum"]) == names


def test_settings_reject_unknown_statistics_and_features():
    ok = DriftSettings(feature_names=["a", "b"], statistic="psi", statistics={"b": "ks"}, categorical={"0": 2})
    assert ok.statistics_indices == {1: "ks"}
    for kw, message in [({"statistic": "holm"}, "unknown drift statistic"),
                        ({"statistics": {"zz": "ks"}}, "not in the feature names"),
                        ({"statistics": {"a": "psi2"}}, "unknown drift statistic"),
                        ({"statistics": {"a": "ks"}, "categorical": {"0": 2}}, "does not test categorical")]:
        with pytest.raises(ValueError, match=message):
            DriftSettings(feature_names=["a", "b"], **kw)


# -- KS and chi-squared against alibi-detect and SciPy ---------------------------------------------

@pytest.mark.tensorflow
@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
def test_p_values_equal_alibi_detect(correction):
    from alibi_detect.cd import KSDrift, TabularDrift

    rng = np.random.default_rng(1)
    tabular = TabularDrift(REF, p_val=0.05, categories_per_feature=dict(CATS), correction=correction)
    ours = fit_statistic(REF, categorical=CATS, correction=correction)
    ks_alibi = KSDrift(REF[:, :3], p_val=0.05, correction=correction)
    ks_ours = fit_statistic(REF[:, :3], correction=correction)
    windows = [mixed(1000, rng), mixed(200, rng, shift=0.2), mixed(37, rng), mixed(1000, rng, shift=1.0)]
    unseen = mixed(300, rng)
    unseen[:40, 3] = 7  # a category the reference never held, and a 2x2 table with Yates' correction
    windows.append(unseen)
    for x in windows:
        want = tabular.predict(x, drift_type="batch", return_p_val=True, return_distance=True)["data"]
        got = ours.check(x)
        np.testing.assert_allclose(got.p_values, want["p_val"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(got.distances, want["distance"], rtol=1e-6)
        assert got.detected == bool(want["is_drift"])
        assert got.threshold == pytest.approx(float(np.min(want["threshold"])))
        want = ks_alibi.predict(x[:, :3], drift_type="batch")["data"]
        got = ks_ours.check(x[:, :3])
        np.testing.assert_allclose(got.p_values, want["p_val"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(got.distances, want["distance"], rtol=1e-6)
        assert got.detected == bool(want["is_drift"])
    assert ours.tests == ["ks", "ks", "ks", "chi2", "chi2"]


def test_ks_and_chi2_equal_scipy_per_feature():
    rng = np.random.default_rng(2)
    suite = fit_statistic(REF, categorical=CATS)
    for x in (mixed(1000, rng), mixed(50, rng, shift=0.5)):
        x[:5, 4] = 9.0  # an unseen category: its own column, as alibi-detect counts it
        r = suite.check(x)
        for j in range(3):
            want = ks_2samp(REF[:, j], x[:, j], method="asymp")
            assert r.distances[j] == want.statistic  # the D statistic, bit for bit
            assert r.p_values[j] == pytest.approx(want.pvalue, rel=1e-12, abs=1e-300)
        for j in (3, 4):
            cats = sorted(set(REF[:, j]) | set(x[:, j]))
            table = [[np.sum(REF[:, j] == c) for c in cats], [np.sum(x[:, j] == c) for c in cats]]
            stat, p, _, _ = chi2_contingency(table)
            assert r.distances[j] == pytest.approx(stat, rel=1e-12) and r.p_values[j] == pytest.approx(p, rel=1e-9)
    one = fit_statistic(np.zeros((10, 1)), categorical={0: None})  # one category: no evidence
    r = one.check(np.zeros((5, 1)))
    assert r.p_values[0] == 1.0 and r.distances[0] == 0.0 and not r.detected


# -- the binned distances and Wasserstein against independent computations -------------------------

def shares(ref_col: np.ndarray, x: np.ndarray, categorical: bool) -> tuple[np.ndarray, np.ndarray]:
    """Reference and window shares of the reference bins, counted independently of `bins`."""
    if categorical:
        values = sorted(set(ref_col))
        ref = Counter(ref_col.tolist())
        win = Counter(v if v in ref else "unseen" for v in x.tolist())
        p = np.array([ref[v] for v in values] + [0], dtype=float)
        q = np.array([win[v] for v in values] + [win["unseen"]], dtype=float)
    else:
        edges = np.r_[-np.inf, np.unique(np.quantile(ref_col, np.arange(1, N_BINS) / N_BINS)), np.inf]
        p = np.histogram(ref_col, edges)[0].astype(float)
        q = np.histogram(x, edges)[0].astype(float)
    return p / p.sum(), q / q.sum()


def test_binned_distances_and_wasserstein_equal_independent_computations():
    rng = np.random.default_rng(3)
    x = mixed(700, rng, shift=0.3)
    x[:20, 3] = 5.0  # unseen category
    x[:3, 0] = 99.0  # beyond the reference's range
    kinds = [False, False, False, True, True]
    for name in ("psi", "hellinger", "jensenshannon"):
        suite = fit_statistic(REF, categorical=CATS, kind=name)
        assert suite.tests == [name] * 5
        got = suite.check(x).distances
        for j, categorical in enumerate(kinds):
            p, q = shares(REF[:, j], x[:, j], categorical)
            if name == "psi":
                pe, qe = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
                want = np.sum((qe - pe) * np.log(qe / pe))
            elif name == "hellinger":
                want = np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2))
            else:
                want = jensenshannon(p, q, base=2)
            assert got[j] == pytest.approx(want, rel=1e-9, abs=1e-12), (name, j)
    suite = fit_statistic(REF, kind="wasserstein", categorical=CATS)
    assert suite.tests == ["wasserstein"] * 3 + ["chi2"] * 2  # categorical features fall back to chi2
    got = suite.check(x).distances
    for j in range(3):  # W1 between the bins' shares, each bin's mass at its midpoint (outer bins: half a bin out)
        p, q = shares(REF[:, j], x[:, j], False)
        e = np.unique(np.quantile(REF[:, j], np.arange(1, N_BINS) / N_BINS))
        at = np.r_[e[0] - (e[1] - e[0]) / 2, (e[1:] + e[:-1]) / 2, e[-1] + (e[-1] - e[-2]) / 2]
        sd = np.sqrt(np.sum(p * (at - np.sum(p * at)) ** 2))
        assert got[j] == pytest.approx(wasserstein_distance(at, at, p, q) / sd, rel=1e-9)
    assert fit_statistic(REF, kind="hellinger").check(1e6 + REF[:500]).distances.max() == pytest.approx(1.0)


def test_reference_bins_are_deciles_and_categories_with_an_unseen_bin():
    b = reference_bins(REF[:, 0], categorical=False)
    assert b.size == N_BINS and abs(b.reference_counts - N_REF / N_BINS).max() <= 1
    c = reference_bins(REF[:, 3], categorical=True)
    assert c.points.tolist() == [0.0, 1.0, 2.0] and c.reference_counts[-1] == 0
    assert c.counts(np.array([0, 2, 2, 5, 6])).tolist() == [1, 0, 2, 2]
    assert c.to_json()["values"] == [0.0, 1.0, 2.0]


# -- corrections and thresholds --------------------------------------------------------------------

def test_corrections_count_only_the_features_tested_by_p_value():
    suite = fit_statistic(REF[:, :3], kind="psi", statistics={0: "ks"})
    r = suite.check(mixed(1000, np.random.default_rng(4))[:, :3])
    assert suite.tests == ["ks", "psi", "psi"]
    assert r.threshold == 0.05 and r.thresholds.tolist() == [0.05, 0.2, 0.2]  # Bonferroni over 1 feature
    assert np.isnan(r.p_values[1:]).all() and r.p_value == pytest.approx(r.p_values[0])
    none = fit_statistic(REF[:, :3], kind="hellinger").check(REF[:1000, :3])
    assert none.threshold is None and none.p_value is None and not none.detected


@pytest.mark.parametrize("name", ["psi", "hellinger", "jensenshannon", "wasserstein"])
def test_default_thresholds_pass_stationary_windows_and_flag_shifted_ones(name):
    """Stationary windows of the default size (1,000) against the 3,000-row reference, and of 500
    against a 500-row one: none of 100 each flagged. Shifted by half a standard deviation
    (numeric) or with the categories' shares moved, every window is."""
    rng = np.random.default_rng(5)
    threshold = statistics.get(name).default_threshold
    size = DriftSettings.model_fields["window_size"].default
    for ref, n in ((REF, size), (mixed(500, rng), 500)):
        suite = fit_statistic(ref, kind=name, categorical=CATS)
        distance = [j for j, t in enumerate(suite.tests) if t == name]
        worst = max(suite.check(mixed(n, rng)).distances[distance].max() for _ in range(100))
        assert worst < threshold, (len(ref), n, worst)
    suite = fit_statistic(REF, kind=name, categorical=CATS)
    flagged = [set(suite.check(mixed(size, rng, shift=0.5)).drifted) for _ in range(10)]
    assert all(0 in f for f in flagged)
    if name != "wasserstein":
        moved = mixed(size, rng)
        moved[:, 3] = rng.choice(3, size, p=[0.2, 0.3, 0.5])
        assert 3 in suite.check(moved).drifted


# -- inferred categorical features -----------------------------------------------------------------

def test_features_with_few_values_are_tested_as_categorical():
    assert inferred_categorical(REF) == [3, 4]
    assert inferred_categorical(REF, CATS) == []
    suite = fit_statistic(REF)  # nothing declared
    assert suite.tests == ["ks", "ks", "ks", "chi2", "chi2"] and suite.describe()["inferredCategorical"] == [3, 4]
    forced = fit_statistic(REF, statistics={3: "ks"})
    assert forced.tests[3] == "ks"


# -- reference data loads as the same numbers JSON carries ----------------------------------------

def test_reference_files_load_bit_for_bit_as_json_numbers(tmp_path):
    from sklearn.datasets import load_diabetes

    rng = np.random.default_rng(6)
    awkward = rng.normal(size=(500, 3)) * np.array([1e-9, 1.0, 1e9])
    for name, x in [("diabetes", load_diabetes().data), ("awkward", awkward)]:
        names = [f"c{i}" for i in range(x.shape[1])]
        as_json = np.array(json.loads(json.dumps(x.tolist())))
        frame = pd.DataFrame(x, columns=names)
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        frame.to_parquet(tmp_path / f"{name}.parquet")
        np.save(tmp_path / f"{name}.npy", x)
        (tmp_path / f"{name}-noheader.csv").write_text(
            "\n".join(",".join(json.dumps(v) for v in row) for row in x.tolist()) + "\n")
        for path, cols in [(f"{name}.csv", names), (f"{name}.parquet", names), (f"{name}.npy", names),
                           (f"{name}-noheader.csv", names)]:
            loaded = load_table(tmp_path / path, cols)
            assert loaded.view(np.int64).tolist() == as_json.view(np.int64).tolist(), path
    # the default float parser is off by an ULP on these very values: the test above can fail
    text = (tmp_path / "diabetes.csv").read_text()
    assert (pd.read_csv(io.StringIO(text)).to_numpy() != load_diabetes().data).any()


# -- the live service ------------------------------------------------------------------------------

def test_the_service_reports_score_threshold_and_verdict_per_feature(tmp_path):
    np.save(tmp_path / "ref.npy", REF)
    names = ["x", "skew", "count", "colour", "flag"]
    rng = np.random.default_rng(8)
    with drift_service(reference=str(tmp_path / "ref.npy"), feature_names=names, categorical={"3": 3},
                       statistic="psi", statistics={"x": "ks", "skew": "wasserstein"}, window_size=500,
                       max_age_seconds=0) as c:
        window = mixed(500, rng, shift=1.0)
        body = feed(c, window, batch=100)[-1].json()
        drift = body["drift"]
        tests = {n: f["test"] for n, f in drift["features"].items()}
        assert tests == {"x": "ks", "skew": "wasserstein", "count": "psi", "colour": "psi", "flag": "psi"}
        x = drift["features"]["x"]
        want = ks_2samp(REF[:, 0], window[:, 0], method="asymp")
        assert x["score"] == x["distance"] == pytest.approx(want.statistic) and x["pValue"] == pytest.approx(want.pvalue)
        assert x["threshold"] == 0.05 and x["drifted"] is True  # one p-value test: no correction
        assert "pValue" not in drift["features"]["colour"] and drift["features"]["colour"]["threshold"] == 0.2
        assert drift["features"]["skew"]["threshold"] == 0.3 and drift["features"]["skew"]["drifted"] is False
        assert drift["featuresDrifted"] == ["x"] and drift["detected"] is True
        assert body["data"]["p_val"][1:] == [None] * 4
        st = c.get("/status").json()["drift"]
        assert st["statistic"] == "psi" and st["features"] == drift["features"]
        assert st["inferredCategorical"] == [4]  # "flag": two values, not declared
        text = c.get("/metrics").text
        for name, f in drift["features"].items():
            assert metric_value(text, "vigil_drift_score", feature=name, statistic=f["test"]) == pytest.approx(f["score"])
            assert metric_value(text, "vigil_drift_threshold", feature=name,
                                statistic=f["test"]) == pytest.approx(f["threshold"])
            assert metric_value(text, "vigil_drift_distance", feature=name) == pytest.approx(f["score"])
        assert metric_value(text, "vigil_drift_p_value", feature="x") == pytest.approx(x["pValue"])
        assert 'vigil_drift_p_value{feature="colour"' not in text


@pytest.mark.parametrize("name", ["psi", "hellinger", "jensenshannon", "wasserstein"])
def test_distance_thresholds_rise_for_small_windows_by_the_simulated_noise(name):
    """The documented rule (`bins.BinnedStatistic.noise_floor`): the default, raised to the score a
    stationary window of that size exceeds with probability FALSE_ALARM_RATE/m. At 50 rows the noise
    is above the default; the threshold falls with the window size and reaches the default for large
    windows; and simulated stationary windows stay under it (checked on fresh seeded draws)."""
    suite = fit_statistic(REF[:, :3], kind=name)
    default = statistics.get(name).default_threshold
    t = {n: suite.score_thresholds(n) for n in (50, 200, 1000, 100_000)}
    assert (t[50] > default).all() and (t[50] >= t[200]).all() and (t[200] >= t[1000]).all()
    assert np.allclose(t[100_000], default)
    stat = suite.groups[0][0]
    rng = np.random.default_rng(99)
    for n in (50, 200):
        scores = np.array([stat.score(mixed(n, rng)[:, :3])[0] for _ in range(1000)])
        assert ((scores >= t[n]).mean(axis=0) <= 0.003).all(), (n, (scores >= t[n]).mean(axis=0), t[n])


def test_ks_equals_scipy_with_ties_and_its_p_value_cache_changes_nothing():
    """The per-feature KS (reference searched once per window value) gives ks_2samp's D bit for
    bit, ties included, for windows of any size; p-values served from the (D, n) cache equal a
    fresh `kstwo.sf` to rounding."""
    from scipy.stats import kstwo

    from vigil_detectors.drift.statistics.ks import KS

    rng = np.random.default_rng(11)
    ref = np.column_stack([rng.normal(size=3000), np.round(rng.exponential(size=3000), 1), rng.integers(0, 5, 3000)])
    ks = KS(ref)
    for t in range(60):
        n = int(rng.integers(30, 1200)) if t % 2 else 500  # repeated sizes: cache hits
        x = np.column_stack([rng.normal(0.1 * (t % 3), 1, n), np.round(rng.exponential(size=n), 1),
                             rng.integers(0, 5, n)])
        d, p = ks.score(x)
        want = [ks_2samp(ref[:, j], x[:, j], method="asymp") for j in range(3)]
        assert d.tolist() == [w.statistic for w in want]
        m, k = sorted((3000.0, float(n)), reverse=True)
        np.testing.assert_allclose(p, np.clip(kstwo.sf(d, np.round(m * k / (m + k))), 0, 1), rtol=1e-12, atol=0)
        np.testing.assert_allclose(p, [w.pvalue for w in want], rtol=1e-9, atol=1e-300)
    assert 0 < len(ks._p_cache) < 60 * 3  # some windows reused a cached p-value
