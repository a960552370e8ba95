"""The outlier service: micro-batching, per-caller answers, casting, bad input, detection.

`MicroBatcher` is tested alone with a plain numpy function (no TensorFlow). The service is
tested over real HTTP (uvicorn on 127.0.0.1, binary-mode CloudEvents) with OutlierVAE
artifacts trained by `train_outlier` on a small synthetic table.

Checking "each caller gets its own score" needs a VAE whose score does not depend on
alibi-detect's latent sampling: `deterministic_artifact` loads a trained artifact with
alibi-detect, sets the encoder's log-variance layer to a constant -30 (sampling noise
std ~3e-7, so z = z_mean), and saves it back with `save_detector`. Then a direct
`od.predict` on each row is the exact expected answer, and distinct rows have distinct
scores, so a mixed-up slice cannot pass.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time

import httpx
import numpy as np
import pytest

from tests.servers import metric_value, serve_app
from vigil.events import REQUEST
from vigil_detectors.outlier.batcher import MicroBatcher

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FEATURES = ["a", "b", "c", "d"]


# -- the batcher alone --------------------------------------------------------------------------

class Recorder:
    """fn for the batcher: row sums and doubled rows; records the rows of every call."""

    def __init__(self, delay: float = 0.0, fail_on: float | None = None):
        self.calls: list[int] = []
        self.delay = delay
        self.fail_on = fail_on

    def __call__(self, x: np.ndarray):
        self.calls.append(len(x))
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on is not None and np.any(x == self.fail_on):
            raise ValueError("poisoned batch")
        return x.sum(axis=1), x * 2


def run(coro):
    return asyncio.run(coro)


def test_batcher_gives_each_caller_its_own_slice_and_batches():
    fn = Recorder(delay=0.002)

    async def main():
        b = MicroBatcher(fn, max_batch_size=16, max_delay=0.01)
        await b.start()
        rng = np.random.default_rng(1)
        inputs = [rng.normal(size=(int(rng.integers(1, 4)), 3)) for _ in range(200)]
        outs = await asyncio.gather(*(b.submit(x) for x in inputs))
        await b.stop()
        return inputs, outs

    inputs, outs = run(main())
    for x, (sums, doubled) in zip(inputs, outs, strict=True):
        np.testing.assert_array_equal(sums, x.sum(axis=1))
        np.testing.assert_array_equal(doubled, x * 2)
    assert sum(fn.calls) == sum(len(x) for x in inputs)
    assert max(fn.calls) <= 16
    assert len(fn.calls) < len(inputs) / 4, fn.calls  # it really batched


def test_batcher_never_delays_a_lone_caller():
    fn = Recorder()

    async def main():
        b = MicroBatcher(fn, max_batch_size=64, max_delay=1.0)
        await b.start()
        started = time.perf_counter()
        for i in range(20):
            await b.submit(np.full((1, 2), float(i)))
        elapsed = time.perf_counter() - started
        await b.stop()
        return elapsed

    assert run(main()) < 1.0  # 20 sequential calls, none waited the 1 s max delay
    assert fn.calls == [1] * 20


def test_batcher_waits_for_company_once_callers_overlap():
    fn = Recorder()

    async def main():
        b = MicroBatcher(fn, max_batch_size=64, max_delay=0.3)
        await b.start()
        await asyncio.gather(b.submit(np.ones((1, 2))), b.submit(np.ones((1, 2))))  # shows concurrency
        first = asyncio.create_task(b.submit(np.ones((1, 2))))
        await asyncio.sleep(0.05)  # a second caller arrives within the max delay
        second = asyncio.create_task(b.submit(np.ones((1, 2))))
        await asyncio.gather(first, second)
        await b.stop()

    run(main())
    assert fn.calls[-1] == 2, fn.calls  # the two late callers shared one call


def test_batcher_does_not_wait_out_the_delay_once_the_usual_callers_are_in():
    fn = Recorder()

    async def main():
        b = MicroBatcher(fn, max_batch_size=64, max_delay=1.0)
        await b.start()
        started = time.perf_counter()
        for _ in range(10):  # steady concurrency 4, far below max_batch_size
            await asyncio.gather(*(b.submit(np.ones((1, 2))) for _ in range(4)))
        elapsed = time.perf_counter() - started
        await b.stop()
        return elapsed

    assert run(main()) < 1.0  # no round waited the 1 s max delay
    assert fn.calls[1:] == [4] * 9, fn.calls  # after the first round, every call carried all 4 callers


def test_batcher_does_not_split_a_request_and_keeps_working_after_a_failure():
    fn = Recorder(fail_on=-1.0)

    async def main():
        b = MicroBatcher(fn, max_batch_size=4, max_delay=0.01)
        await b.start()
        big = np.arange(20.0).reshape(10, 2)
        sums, _ = await b.submit(big)  # 10 rows > max_batch_size 4: scored alone, whole
        np.testing.assert_array_equal(sums, big.sum(axis=1))
        results = await asyncio.gather(b.submit(np.full((1, 2), -1.0)), b.submit(np.ones((1, 2))),
                                       return_exceptions=True)
        after, _ = await b.submit(np.ones((1, 2)))
        await b.stop()
        return results, after

    results, after = run(main())
    assert 10 in fn.calls
    assert any(isinstance(r, ValueError) for r in results)  # the poisoned batch's callers hear why
    np.testing.assert_array_equal(after, [2.0])  # and the worker is still alive


def test_batcher_off_is_one_call_per_request():
    fn = Recorder()

    async def main():
        b = MicroBatcher(fn, max_batch_size=1, max_delay=0.05)
        await b.start()
        await asyncio.gather(*(b.submit(np.ones((1, 2))) for _ in range(30)))
        await b.stop()

    run(main())
    assert fn.calls == [1] * 30


def test_batcher_skips_callers_that_gave_up():
    fn = Recorder(delay=0.05)

    async def main():
        b = MicroBatcher(fn, max_batch_size=8, max_delay=0.0)
        await b.start()
        blocker = asyncio.create_task(b.submit(np.ones((1, 2))))  # occupies the worker for 50 ms
        await asyncio.sleep(0.01)
        gone = asyncio.create_task(b.submit(np.full((1, 2), 7.0)))
        kept = asyncio.create_task(b.submit(np.full((1, 2), 3.0)))
        await asyncio.sleep(0.01)
        gone.cancel()
        sums, _ = await kept
        await blocker
        await b.stop()
        return sums

    np.testing.assert_array_equal(run(main()), [6.0])
    assert fn.calls == [1, 1]  # the cancelled caller's row was never scored


def test_batcher_bounds_its_queue_and_answers_everyone():
    fn = Recorder(delay=0.01)

    async def main():
        b = MicroBatcher(fn, max_batch_size=2, max_delay=0.0, queue_size=3)
        await b.start()
        peak = 0

        async def watch():
            nonlocal peak
            while True:
                peak = max(peak, len(b._pending))
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        inputs = [np.full((1, 2), float(i)) for i in range(40)]
        outs = await asyncio.gather(*(b.submit(x) for x in inputs))
        watcher.cancel()
        await b.stop()
        return inputs, outs, peak

    inputs, outs, peak = run(main())
    for x, (sums, _) in zip(inputs, outs, strict=True):
        np.testing.assert_array_equal(sums, x.sum(axis=1))
    assert peak <= 3, peak  # callers beyond the bound waited in submit instead of queueing
    assert sum(fn.calls) == 40 and max(fn.calls) <= 2


def test_recent_rate_keeps_the_last_instances():
    from vigil_detectors.outlier.detector import RecentRate

    rng = np.random.default_rng(5)
    rate, reference = RecentRate(50), collections.deque(maxlen=50)
    for n in rng.integers(0, 120, 200):  # batches smaller and larger than the window
        flags = rng.integers(0, 2, int(n))
        rate.add(flags)
        reference.extend(flags.tolist())
        assert rate.count == len(reference)
        assert rate.rate == pytest.approx(sum(reference) / len(reference) if reference else 0.0)


def test_observe_many_counts_as_prometheus_observe_does():
    from prometheus_client import CollectorRegistry, Histogram

    from vigil_detectors.outlier.detector import _score_buckets, observe_many

    buckets = _score_buckets(2.0)
    rng = np.random.default_rng(9)
    values = np.concatenate([rng.exponential(2.0, 500), buckets[:5], [0.0, 1e6]])  # edges count as in observe
    ours = Histogram("ours", "", buckets=buckets, registry=CollectorRegistry())
    theirs = Histogram("theirs", "", buckets=buckets, registry=CollectorRegistry())
    observe_many(ours, values[:300])
    observe_many(ours, values[300:])
    observe_many(ours, np.zeros(0))
    for v in values.tolist():
        theirs.observe(v)
    [a], [b] = ours.collect(), theirs.collect()
    assert [(s.name[4:], s.labels, s.value) for s in a.samples if not s.name.endswith("_sum")] == \
        [(s.name[6:], s.labels, s.value) for s in b.samples if not s.name.endswith("_sum")]
    assert ours._sum.get() == pytest.approx(theirs._sum.get(), rel=1e-12)


# -- artifacts ------------------------------------------------------------------------------------

def synthetic(n: int, seed: int) -> np.ndarray:
    """Four correlated features on very different scales."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, n)
    b = 2 * a + rng.normal(0, 0.3, n)
    c = rng.normal(100, 20, n)
    d = c / 10 + rng.normal(0, 0.5, n)
    return np.column_stack([a, b, c, d])


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return synthetic(600, seed=0)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, reference):
    from vigil_detectors.outlier.train import train_outlier

    out = tmp_path_factory.mktemp("outlier") / "vae"
    train_outlier(reference, {"epochs": 8, "latentDim": 2, "thresholdPercentile": 95}, out,
                  feature_names=FEATURES, progress=lambda msg: None)
    return out


@pytest.fixture(scope="module")
def deterministic_artifact(tmp_path_factory, artifact):
    from alibi_detect.saving import load_detector, save_detector

    od = load_detector(str(artifact))
    od.vae(np.zeros((1, len(FEATURES)), dtype=np.float32))  # builds the layers: checkpoint weights restore now
    log_var = od.vae.encoder.fc_log_var
    kernel, bias = log_var.get_weights()
    log_var.set_weights([np.zeros_like(kernel), np.full_like(bias, -30.0)])
    out = tmp_path_factory.mktemp("outlier") / "deterministic"
    save_detector(od, str(out))
    return out


@pytest.fixture(scope="module")
def direct(deterministic_artifact):
    """Expected scores: alibi-detect's own predict on the loaded (deterministic) artifact, row by row."""
    from alibi_detect.saving import load_detector

    od = load_detector(str(deterministic_artifact))
    scaler = od.meta["vigil"]["scaler"]
    mean, scale = np.asarray(scaler["mean"]), np.asarray(scaler["scale"])

    def predict(row: np.ndarray) -> float:
        x = ((np.asarray(row, dtype=np.float64).reshape(1, -1) - mean) / scale).astype(np.float32)
        return float(od.predict(x)["data"]["instance_score"][0])

    return predict


def test_compiled_scores_equal_alibi_detects_predict(deterministic_artifact):
    """`VAEScorer.score` (one tf.function) against alibi-detect's own `OutlierVAE.predict` on the same rows:
    instance and feature scores to rtol 1e-5 (float32 sums in another order; the deterministic artifact's
    latent noise is ~3e-7), identical outlier flags, for batch sizes with and without padding."""
    from vigil_detectors.outlier.scorer import VAEScorer

    scorer = VAEScorer.load(str(deterministic_artifact))
    rows = synthetic(70, seed=21)
    rows[::7] += [3, 6, 60, 6]  # outliers among them, so the flags are not all equal
    x = scorer.prepare(rows)
    flagged = 0
    for n in (1, 3, 8, 64, 70):
        ours, theirs = scorer.score(x[:n]), scorer.score_library(x[:n])
        np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5, err_msg=f"instance scores, {n} rows")
        np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5, atol=1e-9, err_msg=f"feature scores, {n} rows")
        assert ours[1].shape == (n, len(FEATURES))
        np.testing.assert_array_equal(ours[2], theirs[2])
        flagged = int(ours[2].sum())
    assert 0 < flagged < 70


def settings(path, **kw):
    from vigil_detectors.outlier.settings import OutlierSettings

    return OutlierSettings(artifact=str(path), feature_names=FEATURES, monitor="m1", namespace="ns", **kw)


def serve(path, **kw):
    from vigil_detectors.outlier.service import create_app

    return serve_app(create_app(settings(path, **kw)))


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while httpx.get(url + "/readyz").status_code != 200:
        assert time.monotonic() < deadline, httpx.get(url + "/readyz").text
        time.sleep(0.05)


def ce(body, *, id="e1", ce_type=REQUEST, content_type="application/json") -> tuple[dict, bytes]:
    """Binary-mode CloudEvent headers and body (raw bytes, so bad bodies can be sent too)."""
    headers = {"ce-specversion": "1.0", "ce-type": ce_type, "ce-source": "/test", "ce-id": id,
               "content-type": content_type}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return headers, data


def v2(rows, datatype="FP64") -> dict:
    rows = np.asarray(rows)
    return {"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": datatype,
                        "data": rows.ravel().tolist()}]}


async def send_all(url: str, events: list[tuple[dict, bytes]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(events), max_keepalive_connections=len(events))
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        return await asyncio.gather(*(client.post(url + "/", headers=h, content=b) for h, b in events))


# -- the service ----------------------------------------------------------------------------------

def test_concurrent_events_each_get_their_own_score(deterministic_artifact, direct):
    rng = np.random.default_rng(7)
    rows = synthetic(64, seed=3)
    rows[::8] += rng.normal(0, 5, size=(8, 4)) * [1, 2, 20, 2]  # a spread of scores, outliers among them
    multi = {5: 3, 17: 2}  # a few events carry several rows: slices must follow
    events, expected = [], []
    for i, row in enumerate(rows):
        batch = np.vstack([row] + [row + 0.5 * k for k in range(1, multi.get(i, 1))])
        events.append(ce(v2(batch), id=f"ev-{i}"))
        expected.append([direct(r) for r in batch])
    flat = [s for e in expected for s in e]
    gaps = np.diff(np.sort(flat))
    assert gaps.min() > 1e-3 * np.median(flat), "test rows must have clearly distinct scores"

    with serve(deterministic_artifact, max_batch_size=64, max_batch_delay_ms=50) as url:
        wait_ready(url)
        replies = asyncio.run(send_all(url, events))
        metrics = httpx.get(url + "/metrics").text

    for i, (reply, want) in enumerate(zip(replies, expected, strict=True)):
        assert reply.status_code == 200, reply.text
        assert reply.headers["ce-id"] == f"ev-{i}"
        assert reply.headers["ce-type"] == "dev.vigil.detection.outlier"
        body = reply.json()
        np.testing.assert_allclose(body["data"]["instance_score"], want, rtol=1e-4)
        threshold = body["data"]["threshold"]
        assert body["data"]["is_outlier"] == [int(s > threshold) for s in want]
    n_rows = len(flat)
    assert metric_value(metrics, "vigil_outlier_batch_size_sum") == n_rows
    batches = metric_value(metrics, "vigil_outlier_batch_size_count")
    assert batches <= len(events) / 2, f"{len(events)} concurrent events took {batches} VAE calls"
    assert metric_value(metrics, "vigil_outlier_instances_total", monitor="m1", namespace="ns") == n_rows


def test_an_overflowing_event_among_concurrent_ones_is_a_400_and_not_counted(deterministic_artifact, direct):
    rows = synthetic(16, seed=8)
    events = [ce(v2(r[None]), id=f"ok-{i}") for i, r in enumerate(rows)]
    events.insert(5, ce(v2([[1e300, 0.0, 100.0, 10.0]]), id="huge"))  # overflows float32 once standardized
    with serve(deterministic_artifact, max_batch_size=64, max_batch_delay_ms=50) as url:
        wait_ready(url)
        asyncio.run(send_all(url, events[:2]))  # two at once: the batcher now waits for company
        replies = asyncio.run(send_all(url, events[2:]))
        metrics = httpx.get(url + "/metrics").text
    huge = replies[3]
    assert huge.status_code == 400 and huge.json()["reason"] == "out_of_range", huge.text
    others = replies[:3] + replies[4:]
    for reply, row in zip(others, rows[2:], strict=True):
        assert reply.status_code == 200, reply.text
        np.testing.assert_allclose(reply.json()["data"]["instance_score"], [direct(row)], rtol=1e-4)
    assert metric_value(metrics, "vigil_outlier_batch_size_count") < 10  # the huge row did share batches
    assert metric_value(metrics, "vigil_outlier_instances_total") == 16
    assert metric_value(metrics, "vigil_outlier_score_count") == 16
    assert metric_value(metrics, "vigil_events_rejected_total", reason="out_of_range") == 1


@pytest.mark.parametrize("max_batch_size", [1, 64])
def test_a_finite_row_whose_score_overflows_is_a_400_and_not_counted(deterministic_artifact, direct, max_batch_size):
    rows = synthetic(3, seed=9)
    events = [ce(v2(r[None]), id=f"ok-{i}") for i, r in enumerate(rows)]
    # finite in float32 once standardized, but its squared reconstruction error is not
    events.insert(1, ce(v2([[1e35, 0.0, 100.0, 10.0]]), id="huge"))
    with serve(deterministic_artifact, max_batch_size=max_batch_size, max_batch_delay_ms=20) as url:
        wait_ready(url)
        replies = asyncio.run(send_all(url, events))
        metrics = httpx.get(url + "/metrics").text
    assert replies[1].status_code == 400 and replies[1].json()["reason"] == "out_of_range", replies[1].text
    for reply, row in zip(replies[:1] + replies[2:], rows, strict=True):
        assert reply.status_code == 200, reply.text
        np.testing.assert_allclose(reply.json()["data"]["instance_score"], [direct(row)], rtol=1e-4)
    assert metric_value(metrics, "vigil_outlier_instances_total") == 3
    assert metric_value(metrics, "vigil_outlier_score_count") == 3
    assert np.isfinite(metric_value(metrics, "vigil_outlier_score_sum")) and "NaN" not in metrics
    assert metric_value(metrics, "vigil_events_rejected_total", reason="out_of_range") == 1


def test_batching_off_scores_one_event_per_call(deterministic_artifact, direct):
    rows = synthetic(24, seed=4)
    with serve(deterministic_artifact, max_batch_size=1) as url:
        wait_ready(url)
        replies = asyncio.run(send_all(url, [ce(v2(r[None]), id=str(i)) for i, r in enumerate(rows)]))
        metrics = httpx.get(url + "/metrics").text
    for reply, row in zip(replies, rows, strict=True):
        np.testing.assert_allclose(reply.json()["data"]["instance_score"], [direct(row)], rtol=1e-4)
    assert metric_value(metrics, "vigil_outlier_batch_size_count") == len(rows)


def test_datatypes_are_cast_at_the_edge(deterministic_artifact, direct):
    row = [1, 2, 110, 11]  # integer-valued, so every datatype carries the same numbers
    bodies = {
        "v2 FP64": v2([row], "FP64"), "v2 FP32": v2([row], "FP32"), "v2 INT32": v2([row], "INT32"),
        "v2 INT64": v2([row], "INT64"), "v2 INT16 1-D": {"inputs": [{"name": "x", "shape": [4], "datatype": "INT16",
                                                                   "data": row}]},
        "v1 ints": {"instances": [row]}, "v1 floats": {"instances": [[float(v) for v in row]]},
        "v2 one tensor per feature": {"inputs": [{"name": f, "shape": [1], "datatype": "INT64", "data": [v]}
                                                 for f, v in zip(FEATURES, row, strict=True)]},
    }
    want = direct(np.asarray(row, dtype=np.float64))
    with serve(deterministic_artifact, feature_scores=True) as url:
        wait_ready(url)
        for what, body in bodies.items():
            h, b = ce(body, id=what)
            reply = httpx.post(url + "/", headers=h, content=b)
            assert reply.status_code == 200, (what, reply.text)
            data = reply.json()["data"]
            np.testing.assert_allclose(data["instance_score"], [want], rtol=1e-4, err_msg=what)
            assert len(data["feature_score"][0]) == 4
            np.testing.assert_allclose(np.mean(data["feature_score"][0]), want, rtol=1e-4)


def test_bad_input_is_a_4xx_and_the_service_keeps_working(artifact, reference):
    bad = {
        "feature_count": ce({"instances": [[1.0, 2.0, 3.0]]}),
        "non_numeric": ce({"instances": [[1.0, "x", 3.0, 4.0]]}),
        "out_of_range": ce({"instances": [[1e300, 0.0, 100.0, 10.0]]}),
        "bad_json": ce(b'{"instances": [[1, 2'),
        "bad_body": ce({"rows": [[1, 2, 3, 4]]}),
        "content_type": ce({"instances": [[1, 2, 3, 4]]}, content_type="text/plain"),
        "unknown_type": ce({"instances": [[1, 2, 3, 4]]}, ce_type="com.example.other"),
    }
    extra = collections.Counter()
    with serve(artifact) as url:
        wait_ready(url)
        for reason, (h, b) in bad.items():
            reply = httpx.post(url + "/", headers=h, content=b)
            assert 400 <= reply.status_code < 500, (reason, reply.status_code, reply.text)
            assert reply.json()["reason"] == reason, reply.text
            assert reply.json()["error"]
        # V2 strings outside any category list, infinity, ragged rows, shape that does not fit
        for body in ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES", "data": ["a", "b", "c", "d"]}]},
                     b'{"instances": [[Infinity, 1, 100, 10]]}', {"instances": [[1, 2, 3, 4], [1, 2]]},
                     {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}):
            h, b = ce(body)
            reply = httpx.post(url + "/", headers=h, content=b)
            assert reply.status_code == 400, reply.text
            extra[reply.json()["reason"]] += 1
        h, b = ce({"instances": reference[:3].tolist()}, id="good")
        reply = httpx.post(url + "/", headers=h, content=b)
        assert reply.status_code == 200 and len(reply.json()["data"]["instance_score"]) == 3
        # a missing value (NaN from a lenient JSON encoder, null) is no 400: that row is skipped, counted,
        # and keeps its place in the reply as null
        h, b = ce(b'{"instances": [[NaN, 1, 100, 10], [1, 2, 110, 11], [1, null, 100, 10]]}', id="missing")
        reply = httpx.post(url + "/", headers=h, content=b)
        scores = reply.json()["data"]["instance_score"]
        assert reply.status_code == 200 and scores[0] is None and scores[2] is None and isinstance(scores[1], float)
        metrics = httpx.get(url + "/metrics").text
        status = httpx.get(url + "/status").json()
    for reason in bad:
        assert metric_value(metrics, "vigil_events_rejected_total", reason=reason) == 1 + extra[reason], reason
    assert metric_value(metrics, "vigil_instances_skipped_total", reason="missing") == 2
    assert metric_value(metrics, "vigil_outlier_instances_total") == 4
    assert status["outliers"]["seen"] == 4 and status["instancesSkipped"] == {"missing": 2}


def test_injected_outliers_are_flagged_and_normals_mostly_not(artifact):
    normals = synthetic(300, seed=11)
    rng = np.random.default_rng(12)
    outliers = synthetic(60, seed=13)
    std = synthetic(5000, seed=0).std(axis=0)
    which = rng.integers(0, 4, len(outliers))
    outliers[np.arange(len(outliers)), which] += 10 * std[which]  # +10 std in one feature each
    with serve(artifact, rate_window=100) as url:
        wait_ready(url)
        flags = {}
        for name, rows in (("normal", normals), ("outlier", outliers)):
            h, b = ce({"instances": rows.tolist()}, id=name)
            reply = httpx.post(url + "/", headers=h, content=b)
            assert reply.status_code == 200, reply.text
            flags[name] = np.asarray(reply.json()["data"]["is_outlier"])
            threshold = reply.json()["data"]["threshold"]
        status = httpx.get(url + "/status").json()["outliers"]
        metrics = httpx.get(url + "/metrics").text
    assert flags["outlier"].mean() >= 0.95, flags["outlier"]
    assert flags["normal"].mean() <= 0.15, flags["normal"].mean()
    total = len(normals) + len(outliers)
    flagged = int(flags["normal"].sum() + flags["outlier"].sum())
    assert status["seen"] == total and status["outliers"] == flagged
    assert status["window"] == 100
    last_100 = np.concatenate([flags["normal"], flags["outlier"]])[-100:]
    assert status["rate"] == pytest.approx(last_100.mean())
    assert status["threshold"] == pytest.approx(threshold)
    assert metric_value(metrics, "vigil_outlier_outliers_total") == flagged
    assert metric_value(metrics, "vigil_outlier_score_count") == total
    assert metric_value(metrics, "vigil_outlier_threshold") == pytest.approx(threshold)
    assert metric_value(metrics, "vigil_outlier_score_bucket", le=repr(float(threshold))) is not None


def test_not_ready_without_an_artifact_and_says_why(tmp_path):
    from vigil_detectors.outlier.service import create_app

    with serve_app(create_app(settings(tmp_path / "missing"))) as url:
        deadline = time.monotonic() + 30
        while (r := httpx.get(url + "/readyz")).json().get("status") == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert r.status_code == 503 and "missing" in r.json()["error"]
        h, b = ce({"instances": [[1, 2, 3, 4]]})
        assert httpx.post(url + "/", headers=h, content=b).status_code == 503
        assert httpx.get(url + "/healthz").status_code == 200


def test_feature_names_must_match_the_artifact(artifact):
    from vigil_detectors.outlier.service import create_app
    from vigil_detectors.outlier.settings import OutlierSettings

    s = OutlierSettings(artifact=str(artifact), feature_names=["d", "c", "b", "a"])
    with serve_app(create_app(s)) as url:
        deadline = time.monotonic() + 30
        while (r := httpx.get(url + "/readyz")).json().get("status") == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert r.status_code == 503 and "trained on features" in r.json()["error"]
