"""Send iris traffic with ground-truth feedback through a Vigil request logger.

What an operator wants to see on the dashboards, on demand: normal traffic, then
drifted traffic (petal length shifted by 2 cm, so the model also gets answers wrong and
accuracy falls), then outliers (rows far outside the data), with feedback for every
inference, a few requests the logger must reject, and a few anchor explanations.

    python bench/traffic.py --url http://127.0.0.1:8080                     # vigil up
    kubectl port-forward svc/iris-logger 8080:8080 &                        # in a cluster
    python bench/traffic.py --url http://127.0.0.1:8080 --phases normal,drift

It prints what it sent and how long it took; the detectors' view is on their /status,
/metrics and the Grafana dashboards. tests/test_dashboards_live.py and
bench/render_dashboards.py drive a local `vigil up` with it.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

import httpx
import numpy as np

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
PHASES = ("normal", "drift", "outliers")
DRIFT_SHIFT = {2: 2.0}  # petal_length + 2 cm


@dataclass
class Sent:
    requests: int = 0
    rows: int = 0
    feedback: int = 0
    rejected: int = 0
    explanations: int = 0
    errors: list[str] = field(default_factory=list)
    by_phase: dict[str, int] = field(default_factory=dict)


def iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x, y


def sample(phase: str, n: int, rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """n rows of a phase and their true classes."""
    idx = rng.integers(0, len(x), n)
    rows = x[idx] + rng.normal(0.0, 0.1 * x.std(axis=0), (n, x.shape[1]))
    truth = y[idx]
    if phase == "drift":
        for col, shift in DRIFT_SHIFT.items():
            rows[:, col] += shift
    elif phase == "outliers":
        rows = rows * rng.uniform(2.5, 4.0, (n, 1)) + rng.uniform(3.0, 6.0, (n, x.shape[1]))
    elif phase != "normal":
        raise ValueError(f"unknown phase {phase!r}; one of {', '.join(PHASES)}")
    return np.round(rows, 3), truth


def v2_body(rows: np.ndarray) -> dict:
    return {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.ravel().tolist()}]}


def send(url: str, model: str = "iris", phases: tuple[str, ...] = PHASES, rows: int = 600, batch: int = 10,
         bad: int = 5, explain_url: Optional[str] = None, explanations: int = 3, seed: int = 0,
         rate: Optional[float] = None, progress: bool = False) -> Sent:
    """Send every phase through the logger at `url`; return what was sent."""
    x, y = iris()
    rng = np.random.default_rng(seed)
    sent = Sent()
    infer = f"{url.rstrip('/')}/v2/models/{model}/infer"
    feedback = f"{url.rstrip('/')}/feedback"
    with httpx.Client(timeout=30.0) as http:
        for phase in phases:
            data, truth = sample(phase, rows, rng, x, y)
            for start in range(0, rows, batch):
                t0 = time.monotonic()
                chunk = data[start:start + batch]
                r = http.post(infer, json=v2_body(chunk))
                if r.status_code != 200:
                    sent.errors.append(f"{phase}: infer {r.status_code} {r.text[:200]}")
                    continue
                sent.requests += 1
                sent.rows += len(chunk)
                sent.by_phase[phase] = sent.by_phase.get(phase, 0) + len(chunk)
                fb = http.post(feedback, json={"truth": truth[start:start + batch].tolist()},
                               headers={"x-inference-id": r.headers["x-inference-id"]})
                if fb.status_code == 202:
                    sent.feedback += 1
                else:
                    sent.errors.append(f"{phase}: feedback {fb.status_code} {fb.text[:200]}")
                if progress:
                    sys.stderr.write(f"\r  {phase:<9} {min(start + batch, rows)}/{rows}")
                if rate:
                    time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - t0)))
            if progress:
                sys.stderr.write("\n")
        # Requests the logger must refuse (4xx, counted in vigil_events_rejected_total).
        for _ in range(bad):
            r = http.post(feedback, json={"inferenceId": "no-truth"})
            sent.rejected += r.status_code == 400
        if explain_url:
            data, _ = sample("normal", explanations, rng, x, y)
            for row in data:
                r = http.post(f"{explain_url.rstrip('/')}/explain", json=v2_body(row.reshape(1, -1)), timeout=120.0)
                if r.status_code == 200:
                    sent.explanations += 1
                else:
                    sent.errors.append(f"explain {r.status_code} {r.text[:200]}")
    return sent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the request logger (inference entry)")
    p.add_argument("--model", default="iris", help="model name on the V2 path")
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, from {', '.join(PHASES)}")
    p.add_argument("--rows", type=int, default=600, help="rows per phase")
    p.add_argument("--batch", type=int, default=10, help="rows per inference request")
    p.add_argument("--rate", type=float, help="requests per second (default: as fast as answered)")
    p.add_argument("--bad", type=int, default=5, help="malformed feedback requests to send (rejected, counted)")
    p.add_argument("--explain-url", help="the explainer (e.g. http://127.0.0.1:8085) for a few /explain calls")
    p.add_argument("--explanations", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    phases = tuple(s.strip() for s in args.phases.split(",") if s.strip())
    started = time.monotonic()
    sent = send(args.url, args.model, phases, args.rows, args.batch, args.bad, args.explain_url, args.explanations,
                args.seed, args.rate, progress=True)
    took = time.monotonic() - started
    print(f"sent {sent.requests} requests ({sent.rows} rows: "
          + ", ".join(f"{k} {v}" for k, v in sent.by_phase.items())
          + f"), {sent.feedback} feedback, {sent.rejected} rejected on purpose, {sent.explanations} explanations "
          f"in {took:.1f} s")
    for error in sent.errors[:10]:
        print("error:", error, file=sys.stderr)
    return 1 if sent.errors else 0


if __name__ == "__main__":
    sys.exit(main())
