"""`vigil demo --images`: the CIFAR-10 walkthrough on images that ship with scikit-learn (DESIGN §6, §8).

Cuts textured 32×32×3 patches from scikit-learn's two sample photos (`vigil.imagedata`), trains a
small Keras CNN that tells which photo a patch comes from, writes a tensor `ModelMonitor`
(``schema.shape``) with a convolutional VAE outlier detector, KS drift through an untrained
autoencoder (``preprocess: uae``), the metrics service and an anchor-image explainer, runs it with the
local backend as `vigil up` would (`vigil.demo.local_stack`), and sends one drift window of traffic per
phase through the request logger with ground-truth feedback (`vigil.demo.DemoClient`): clean patches,
then each of the four corruptions of alibi-detect's CIFAR-10 example at the strengths in `CORRUPTIONS`
(CIFAR-10-C severity 5 for noise, blur and brightness; pixelation stronger than CIFAR-10-C's strongest,
which KS on the UAE encodings of these patches does not tell from clean ones), then strong noise
(outliers). After each phase it prints the drift verdict (the detector's own Bonferroni-adjusted
p-value), the outlier rate and the accuracy; then an anchor-image explanation of a clean patch (the
rarer class first, up to three tries until an anchor holds a superpixel), saved as ``anchor.png``
(the patch with its anchor superpixels outlined, the rest dimmed). It succeeds when clean traffic
shows no drift, every corruption does, most strong-noise images are outliers and the anchor holds at
least one superpixel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from vigil import imagedata
from vigil.events import v2_request

WINDOW = 500  # drift window, in images: one window per phase (200 is too few to see CIFAR-10-C noise here)
REFERENCE = 1000
PER_REQUEST = 20
STRONG_NOISE = 1.0  # σ of the outlier phase's noise
OUTLIER_RATE = 0.9  # the share of strong-noise images the demo expects flagged

#: phase name -> (what is done, the corruption)
CORRUPTIONS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "gaussian_noise": ("CIFAR-10-C severity 5: σ 0.10", partial(imagedata.gaussian_noise, severity=5, seed=1)),
    "motion_blur": ("CIFAR-10-C severity 5: an 11-pixel line", partial(imagedata.motion_blur, severity=5, seed=2)),
    "brightness": ("CIFAR-10-C severity 5: HSV value +0.3", partial(imagedata.brightness, severity=5)),
    "pixelate": ("factor 0.25, shown at 8×8; CIFAR-10-C's strongest, 0.65, is not detectable on these patches",
                 partial(imagedata.pixelate, factor=0.25)),
}


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
    # pValue 0.01 (Bonferroni over the 32 encoded dimensions): the demo tests six windows, and at 0.05 per
    # window one clean window in twenty is a false alarm
    drift: {{type: ks, pValue: 0.01, correction: bonferroni, preprocess: {{type: uae, encodingDim: 32}},
            window: {{size: {WINDOW}, mode: tumbling, maxAge: 10m}}}}
    metrics: {{task: classification, classes: [{", ".join(imagedata.CLASSES)}], window: {WINDOW}}}
    explainer: {{type: anchor-image, threshold: 0.9, timeout: 60s}}
"""


def prepare(workdir: Path, say: Callable[[str], None]) -> Path:
    """Classifier, reference images and monitor file in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    x, y = imagedata.patches(1600, seed=0, textured=True)
    started = time.monotonic()
    imagedata.train_classifier(x[:1000], y[:1000], workdir / "model.h5", epochs=3)
    say(f"• model: a small Keras CNN telling the two photos apart, trained in {time.monotonic() - started:.0f}s "
        "→ model.h5")
    np.save(workdir / "reference.npy", x[-REFERENCE:])
    say(f"• reference: {REFERENCE} clean textured 32×32×3 patches → reference.npy")
    path = workdir / "monitor.yaml"
    path.write_text(monitor_yaml("cifar-demo"))
    say(f"• monitor: {path}")
    return path


def phases() -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(name, what was done, images, labels): a clean window, one window per corruption, strong noise."""
    out = []
    for i, name in enumerate(("clean", *CORRUPTIONS)):
        x, y = imagedata.patches(WINDOW, seed=100 + i, textured=True)
        what = "patches from other places of the photos"
        if name in CORRUPTIONS:
            what, corrupt = CORRUPTIONS[name]
            x = corrupt(x)
        out.append((name, what, x, y))
    x, y = imagedata.patches(50, seed=99, textured=True)
    noise = np.clip(x + np.random.default_rng(7).normal(0.0, STRONG_NOISE, x.shape), 0, 1).astype(np.float32)
    out.append(("strong_noise", f"σ {STRONG_NOISE} (outliers; part of a window)", noise, y))
    return out


EXPLAIN_TRIES = 3  # clean patches the demo explains at most, until one anchor holds a superpixel


def explain_order(labels: np.ndarray) -> list[int]:
    """Indices of the clean sample in the order the demo explains them: the rarer class first. A patch of
    the common class is often predicted as such whatever its superpixels show (most background images
    are of that class too), and its anchor is then rightly empty."""
    counts = np.bincount(labels, minlength=int(labels.max()) + 1)
    return sorted(range(len(labels)), key=lambda i: (counts[labels[i]], i))


def explain(client, url: str, workdir: Path, say: Callable[[str], None]) -> bool:
    """An anchor-image explanation of a clean patch, saved as ``anchor.png``: up to `EXPLAIN_TRIES` patches
    (`explain_order`), each printed, until one anchor holds a superpixel; True when one did."""
    from vigil_detectors.explainer.imageplot import save_anchor_png

    x, y = imagedata.patches(20, seed=77, textured=True)  # a small clean sample
    say("\n Explaining one prediction (AnchorImage over slic superpixels, perturbed ones showing reference "
        "images; the model called as a black box):")
    for i in explain_order(y)[:EXPLAIN_TRIES]:
        image = x[i]
        r = client.http.post(f"{url}/explain", json=v2_request(np.round(image[None], 4)), timeout=180)
        if r.status_code != 200:
            say(f"  the explainer answered {r.status_code}: {r.text[:200]}")
            continue
        e = r.json()
        because = (f"superpixels {e['anchor']} of {e['segmentCount']}" if e["anchor"] else
                   f"no superpixel of {e['segmentCount']} (an empty anchor: the answer holds whatever they show)")
        say(f"  a {imagedata.CLASSES[int(y[i])]} patch → {imagedata.CLASSES[int(e['prediction'])]} because of "
            f"{because}  (precision {e['precision']:.2f}, coverage {e['coverage']:.2f}, "
            f"{e['durationSeconds']:.1f}s, {e['modelCalls']} model calls)")
        if e["anchor"]:
            png = save_anchor_png(image, np.asarray(e["segments"]), e["anchor"], workdir / "anchor.png")
            say(f"  anchor image: {png}")
            return True
    return False


def run_image_demo(base_port: int, workdir: Path, keep_running: bool = False,
                   say: Callable[[str], None] = print) -> int:
    import httpx

    from vigil.demo import DemoClient, local_stack
    from vigil.local import LocalError

    started = time.monotonic()
    say("Vigil image demo — 1/4 preparing a Keras image classifier, reference images and monitor")
    monitor_path = prepare(workdir, say)
    monitor, _, placement, stack = local_stack(monitor_path, workdir, base_port, say)
    try:
        say("2/4 training the convolutional VAE, the UAE drift detector and the anchor explainer")
        stack.train()
        say("3/4 starting the stack on 127.0.0.1 (model, logger, outlier, drift, metrics, explainer)")
        stack.start(timeout=300)
        client = DemoClient(stack.component_urls(), monitor.model_name, per_request=PER_REQUEST, timeout=120.0)
        say(f"4/4 sending {WINDOW} images per phase through the request logger, with ground-truth feedback")
        verdicts: dict[str, bool] = {}
        noise_rate = 0.0
        seen = flagged = windows = 0
        for name, what, x, y in phases():
            client.send(name, np.round(x, 4), y)
            deadline = time.monotonic() + 180
            full = len(x) >= WINDOW
            while time.monotonic() < deadline:
                out, drift = client.status("outlier")["outliers"], client.status("drift")["drift"]
                if (out["seen"] >= seen + len(x) and (not full or drift["windows"] > windows)
                        and client.status("logger")["logger"]["queueDepth"] == 0):
                    break
                time.sleep(0.3)
            else:
                raise TimeoutError(f"the detectors did not see the '{name}' phase in time; logs in {stack.logs}")
            acc = client.status("metrics")["metrics"].get("accuracy")
            rate = (out["outliers"] - flagged) / max(out["seen"] - seen, 1)
            line = f"  {name:<15}"
            if full:
                verdicts[name] = bool(drift["detected"])
                line += f" drift {'DETECTED' if drift['detected'] else 'none    '} (p {drift.get('pValue') or 0:.2g})"
            else:
                line += " drift not tested     "
                noise_rate = rate
            line += f"  outliers {rate:6.1%}"
            line += f"  accuracy {acc:.3f}" if acc is not None else ""
            say(line + f"   [{what}]")
            seen, flagged, windows = out["seen"], out["outliers"], drift["windows"]
        say(f"  (drift: p is the smallest p-value over the 32 encoded dimensions, Bonferroni-adjusted; drift when "
            f"below 0.01. Accuracy: over the last {WINDOW} images with feedback)")
        anchored = explain(client, placement.url("explainer"), workdir, say)
        problems = [f"{n}: {'drift' if v else 'no drift'}" for n, v in verdicts.items() if v != (n != "clean")]
        if noise_rate < OUTLIER_RATE:
            problems.append(f"strong noise: {noise_rate:.0%} outliers (expected ≥ {OUTLIER_RATE:.0%})")
        if not anchored:
            problems.append("the anchor explanation holds no superpixel")
        say("\nResult: " + ("no drift on clean images, drift on each corruption, strong noise flagged as outliers, "
                            "an anchor of superpixels" if not problems else "UNEXPECTED: " + "; ".join(problems)))
        say(f"Done in {time.monotonic() - started:.0f}s. Work dir: {workdir}")
        if keep_running:
            say("The stack keeps running (Ctrl-C stops it):")
            for name, url in client.urls.items():
                say(f"  {name:<10} {url}/metrics    {url}/status")
            stack.wait()
        return 0 if not problems else 1
    except (LocalError, TimeoutError, httpx.HTTPError) as exc:
        say(f"error: {exc}")
        return 1
    finally:
        stack.stop()
