"""Drift on a baseline's bins (DESIGN §9/§10): the binned statistics score on ``statistics.json``'s histograms.

A baseline is profiled from the reference (`vigil.baseline.compute_baseline`) and one
histogram is hand-edited (coarser edges, as a user may), then a real drift service
(``VIGIL_DRIFT_BASELINE``) on loopback scores a window with PSI, Hellinger,
Jensen–Shannon and Wasserstein: each score equals an independent computation on the bins
read from the JSON file (numpy histograms, scipy's Jensen–Shannon and Wasserstein), and KS
p-values equal `scipy.stats.ks_2samp`. A histogram of the wrong type falls back to the
reference's bins.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp, wasserstein_distance

from tests.conftest import cloud_event, serve_ready
from vigil.baseline import compute_baseline
from vigil.events import REQUEST
from vigil.instances import InputSchema
from vigil_detectors.drift.fitting import fit_check
from vigil_detectors.drift.service import create_app
from vigil_detectors.drift.settings import DriftSettings

NAMES = ["psi_f", "hel_f", "js_f", "w_f", "ks_f"]
STATS = {"psi_f": "psi", "hel_f": "hellinger", "js_f": "jensenshannon", "w_f": "wasserstein", "ks_f": "ks"}


def shares(doc: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    edges = np.r_[-np.inf, doc["edges"], np.inf]
    p = np.asarray(doc["counts"], dtype=float)
    q = np.histogram(x, edges)[0].astype(float)
    return p / p.sum(), q / q.sum()


def expected(name: str, doc: dict, x: np.ndarray) -> float:
    p, q = shares(doc, x)
    if name == "psi":
        pe, qe = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
        return float(np.sum((qe - pe) * np.log(qe / pe)))
    if name == "hellinger":
        return float(np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)))
    if name == "jensenshannon":
        return float(jensenshannon(p, q, base=2))
    e = np.asarray(doc["edges"])
    at = np.r_[e[0] - (e[1] - e[0]) / 2, (e[1:] + e[:-1]) / 2, e[-1] + (e[-1] - e[-2]) / 2]
    sd = np.sqrt(np.sum(p * (at - np.sum(p * at)) ** 2))
    return float(wasserstein_distance(at, at, p, q) / sd)


@pytest.fixture()
def monitor(tmp_path):
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(2000, len(NAMES)))
    pd.DataFrame(ref, columns=NAMES).to_csv(tmp_path / "reference.csv", index=False)
    base = compute_baseline(ref, InputSchema(feature_names=tuple(NAMES), categorical={}))
    base.write(tmp_path / "baseline")
    path = tmp_path / "baseline" / "statistics.json"
    doc = json.loads(path.read_text())
    for f in doc["features"]:  # a user's coarser bins for two features
        if f["name"] in ("psi_f", "w_f"):
            edges = [-1.0, -0.3, 0.0, 0.4, 1.2]
            f["histogram"]["edges"] = edges
            f["histogram"]["counts"] = np.histogram(ref[:, NAMES.index(f["name"])],
                                                    np.r_[-np.inf, edges, np.inf])[0].tolist()
    path.write_text(json.dumps(doc))
    return tmp_path, ref, {f["name"]: f["histogram"] for f in doc["features"]}


def test_the_live_service_scores_on_the_baseline_bins(monitor):
    tmp, ref, hist = monitor
    settings = DriftSettings(monitor="t", namespace="ns", feature_names=NAMES, reference=str(tmp / "reference.csv"),
                             baseline=str(tmp / "baseline"), statistics=STATS, window_size=300, max_age_seconds=0)
    window = np.random.default_rng(5).normal(size=(300, len(NAMES))) + np.array([0.3, 0, 0.2, 0.4, 0.25])
    with serve_ready(create_app(settings)) as client:
        reply = None
        for i in range(0, 300, 50):
            msg = cloud_event({"instances": window[i:i + 50].tolist()}, REQUEST)
            reply = client.post("/", headers=dict(msg.headers), content=msg.body)
            assert reply.status_code in (200, 202), reply.text
        features = reply.json()["drift"]["features"]
        status = client.get("/status").json()["drift"]
    assert status["binsFrom"] == {str(i): "baseline" for i in range(4)}
    for j, name in enumerate(NAMES):
        stat = STATS[name]
        assert features[name]["test"] == stat
        if stat == "ks":
            assert features[name]["pValue"] == pytest.approx(ks_2samp(ref[:, j], window[:, j], method="asymp").pvalue,
                                                             rel=1e-9)
            continue
        assert features[name]["score"] == pytest.approx(expected(stat, hist[name], window[:, j]), rel=1e-9), name
    # the edited bins matter: a coarser histogram gives another PSI than the deciles would
    deciles = fit_check(DriftSettings(feature_names=NAMES, reference=str(tmp / "reference.csv"), statistics=STATS))
    assert abs(deciles.check(window).distances[0] - features["psi_f"]["score"]) > 1e-3


def test_a_histogram_of_the_wrong_type_falls_back_to_the_reference_bins(monitor):
    tmp, ref, _ = monitor
    path = tmp / "baseline" / "statistics.json"
    doc = json.loads(path.read_text())
    doc["features"][0]["histogram"] = {"type": "categorical", "values": [0.0, 1.0], "counts": [3, 4, 0]}
    path.write_text(json.dumps(doc))
    check = fit_check(DriftSettings(feature_names=NAMES, reference=str(tmp / "reference.csv"),
                                    baseline=str(tmp / "baseline"), statistics=STATS))
    assert check.bins_from[0] == "reference" and check.bins_from[1] == "baseline"
