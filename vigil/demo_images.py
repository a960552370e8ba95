"""`vigil demo --images`: the CIFAR-10 walkthrough on images that ship with scikit-learn (DESIGN §6, §8).

Cuts 32×32×3 patches from scikit-learn's two sample photos (`vigil.imagedata`), trains a small Keras
CNN that tells which photo a patch comes from, writes a tensor `ModelMonitor` (``schema.shape``) with a
convolutional VAE outlier detector, KS drift through an untrained autoencoder (``preprocess: uae``) and
the metrics service, runs it with the local backend as `vigil up` would, and sends one drift window of
traffic per phase through the request logger with ground-truth feedback: clean patches, then each of
the four corruptions of alibi-detect's CIFAR-10 example (gaussian noise, motion blur, brightness,
pixelate, at CIFAR-10-C severity 5), then strong noise (outliers). After each phase it prints the drift
verdict, the outlier rate and the accuracy; then one anchor-image explanation, saved as ``anchor.png``.
It succeeds when clean traffic shows no drift and every corruption does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vigil import imagedata
from vigil.events import v2_request

WINDOW = 200  # drift window, in images: one window per phase
PER_REQUEST = 20
SEVERITY = 5


def monitor_yaml(name: str) -> str:
    return f"""\
apiVersion: vigil.dev/v1alpha1
kind: ModelMonitor
metadata:
  name: {name}
spec:
  model:
    storageUri: model.h5
    format: tensorflow
    name: cifar
  schema:
    shape: [32, 32, 3]
  reference:
    storageUri: reference.npy
  detectors:
    outlier: {{type: vae, latentDim: 16, epochs: 5, thresholdPercentile: 95}}
    # pValue 0.01: the demo tests six windows, and at 0.05 per window one clean window in twenty
    # is a false alarm (alibi-detect's KSDrift on the same UAE encodings agrees)
    drift: {{type: ks, pValue: 0.01, correction: bonferroni, preprocess: {{type: uae, encodingDim: 32}},
            window: {{size: {WINDOW}, mode: tumbling, maxAge: 10m}}}}
    metrics: {{task: classification, classes: [{", ".join(imagedata.CLASSES)}], window: {WINDOW}}}
    explainer: {{type: anchor-image, threshold: 0.9, timeout: 60s}}
"""


def prepare(workdir: Path, say: Callable[[str], None]) -> Path:
    """Classifier, reference images and monitor file in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    x, y = imagedata.patches(1600, seed=0)
    started = time.monotonic()
    imagedata.train_classifier(x[:1000], y[:1000], workdir / "model.h5", epochs=3)
    say(f"• model: a small Keras CNN telling the two photos apart, trained in {time.monotonic() - started:.0f}s "
        "→ model.h5")
    np.save(workdir / "reference.npy", x[600:])
    say("• reference: 1000 clean 32×32×3 patches → reference.npy")
    path = workdir / "monitor.yaml"
    path.write_text(monitor_yaml("cifar-demo"))
    say(f"• monitor: {path}")
    return path


def _phases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    for i, name in enumerate(("clean", *imagedata.CORRUPTIONS)):
        x, y = imagedata.patches(WINDOW, seed=100 + i)
        if name != "clean":
            x = imagedata.CORRUPTIONS[name](x, SEVERITY, seed=i)
        out.append((name, x, y))
    x, y = imagedata.patches(50, seed=99)
    noise = np.clip(x + np.random.default_rng(7).normal(0.0, 1.0, x.shape), 0, 1).astype(np.float32)
    out.append(("strong noise", noise, y))
    return out


def explain(http, url: str, workdir: Path, say: Callable[[str], None]) -> None:
    """One anchor-image explanation of a clean patch, saved as a PNG (the anchor superpixels highlighted)."""
    from vigil_detectors.explainer.imageplot import save_anchor_png

    x, _ = imagedata.patches(1, seed=77)
    say("\n Explaining one prediction (AnchorImage over slic superpixels, the model called as a black box):")
    r = http.post(f"{url}/explain", json=v2_request(np.round(x, 4)), timeout=180)
    if r.status_code != 200:
        say(f"  explainer answered {r.status_code}: {r.text[:200]}")
        return
    e = r.json()
    png = save_anchor_png(x[0], np.asarray(e["segments"]), e["anchor"], workdir / "anchor.png")
    say(f"  anchor: segments {e['anchor']} (precision {e['precision']:.2f}, coverage {e['coverage']:.2f}) → {png}")


def run_image_demo(base_port: int, workdir: Path, keep_running: bool = False,
                   say: Callable[[str], None] = print) -> int:
    import httpx

    from vigil.local import LocalError, LocalStack, local_plan
    from vigil.spec import load_monitor

    started = time.monotonic()
    say("Vigil image demo — 1/4 preparing a Keras image classifier, reference images and monitor")
    monitor_path = prepare(workdir, say)
    monitor = load_monitor(monitor_path)
    plan, placement = local_plan(monitor, workdir, workdir / ".vigil" / monitor.name, base_port)
    stack = LocalStack(plan, placement, say=say)
    try:
        say("2/4 training the convolutional VAE and the UAE drift detector from the reference images")
        stack.train()
        say("3/4 starting the stack on 127.0.0.1 (model, logger, outlier, drift, metrics, explainer)")
        stack.start(timeout=300)
        urls = stack.component_urls()
        http = httpx.Client(timeout=120.0)
        infer = f"{urls['logger']}/v2/models/{monitor.model_name}/infer"

        def status(component: str) -> dict:
            return http.get(f"{urls[component]}/status").json()

        say(f"4/4 sending {WINDOW} images per phase through the request logger, with ground-truth feedback")
        verdicts: dict[str, bool] = {}
        seen = flagged = windows = 0
        for name, x, y in _phases():
            for i in range(0, len(x), PER_REQUEST):
                r = http.post(infer, json=v2_request(np.round(x[i:i + PER_REQUEST], 4)))
                r.raise_for_status()
                http.post(f"{urls['logger']}/feedback", json={"truth": y[i:i + PER_REQUEST].tolist()},
                          headers={"x-inference-id": r.headers["x-inference-id"]}).raise_for_status()
            deadline = time.monotonic() + 180
            full = len(x) >= WINDOW
            while time.monotonic() < deadline:
                out, drift = status("outlier")["outliers"], status("drift")["drift"]
                if (out["seen"] >= seen + len(x) and (not full or drift["windows"] > windows)
                        and status("logger")["logger"]["queueDepth"] == 0):
                    break
                time.sleep(0.3)
            else:
                raise TimeoutError(f"the detectors did not see the '{name}' phase in time; logs in {stack.logs}")
            acc = status("metrics")["metrics"].get("accuracy")
            rate = (out["outliers"] - flagged) / max(out["seen"] - seen, 1)
            line = f"  {name:<15}"
            if full:
                verdicts[name] = bool(drift["detected"])
                line += f" drift {'DETECTED' if drift['detected'] else 'none    '} (p {drift.get('pValue') or 0:.2g})"
            else:
                line += " drift (part of a window, not tested)"
            line += f"  outliers {rate:6.1%}"
            line += f"  accuracy {acc:.3f}" if acc is not None else ""
            say(line)
            seen, flagged, windows = out["seen"], out["outliers"], drift["windows"]
        explain(http, placement.url("explainer"), workdir, say)
        corrupted = [n for n in verdicts if n != "clean"]
        ok = not verdicts["clean"] and all(verdicts[n] for n in corrupted)
        say("\nResult: " + ("no drift on clean images, drift on each corruption" if ok else
                            "UNEXPECTED: " + ", ".join(f"{n}: {'drift' if v else 'no drift'}"
                                                       for n, v in verdicts.items())))
        say(f"Done in {time.monotonic() - started:.0f}s. Work dir: {workdir}")
        if keep_running:
            say("The stack keeps running (Ctrl-C stops it):")
            for name, url in urls.items():
                say(f"  {name:<10} {url}/metrics    {url}/status")
            stack.wait()
        return 0 if ok else 1
    except (LocalError, TimeoutError, httpx.HTTPError) as exc:
        say(f"error: {exc}")
        return 1
    finally:
        stack.stop()
