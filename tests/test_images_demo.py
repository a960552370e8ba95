"""`vigil demo --images` (vigil/demo_images.py, issue 11): its monitor, its traffic and the whole run.

The fast tests check what the demo sends: the monitor it writes loads and plans as an image monitor,
its phases are one drift window each of textured patches (clean ones different from the reference),
each corruption changes the images the way it says, strong noise is noise. The slow test runs the
demo as a user does (``python -m vigil demo --images``) and reads its printed verdicts: no drift on
clean patches, drift on each corruption, strong noise flagged as outliers, and an anchor explanation
saved as a PNG of the patch with its anchor outlined (its printed path).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import numpy as np
import pytest

from vigil import demo_images, imagedata


def test_the_demo_monitor_is_an_image_monitor_with_every_image_detector(tmp_path):
    from vigil.local import LocalPlacement
    from vigil.plan import build_plan
    from vigil.spec import load_monitor

    path = tmp_path / "monitor.yaml"
    path.write_text(demo_images.monitor_yaml("cifar-demo"))
    monitor = load_monitor(path)
    assert monitor.spec.schema_.shape == list(imagedata.SHAPE)
    d = monitor.spec.detectors
    assert d.drift.preprocess.type == "uae" and d.drift.window.size == demo_images.WINDOW
    assert d.explainer.type == "anchor-image" and d.outlier.type == "vae"
    plan = build_plan(monitor, LocalPlacement(str(tmp_path), str(tmp_path)))
    assert {c.name for c in plan.components} == {"model", "logger", "outlier", "drift", "metrics", "explainer"}


def test_the_phases_are_windows_of_textured_patches_and_each_corruption_does_what_it_says():
    phases = {name: (what, x, y) for name, what, x, y in demo_images.phases()}
    assert list(phases) == ["clean", *demo_images.CORRUPTIONS, "strong_noise"]
    floor = imagedata._median_detail(imagedata.SHAPE[0])
    clean = phases["clean"][1]
    for name, (_, x, y) in phases.items():
        assert x.shape[1:] == imagedata.SHAPE and x.dtype == np.float32 and len(x) == len(y)
        assert 0 <= x.min() and x.max() <= 1, name
        assert len(x) == (50 if name == "strong_noise" else demo_images.WINDOW), name
    assert (imagedata.detail(clean) > floor).all()  # textured: the patches the drift verdicts hold for
    reference, _ = imagedata.patches(1600, seed=0, textured=True)
    assert not np.isin(clean[:, 0, 0, 0], reference[:, 0, 0, 0]).all()  # other places than the reference
    # the corruptions, each on its own phase's clean patches (seeds 101..104)
    for i, name in enumerate(demo_images.CORRUPTIONS, start=1):
        before, _ = imagedata.patches(demo_images.WINDOW, seed=100 + i, textured=True)
        after = phases[name][1]
        if name == "brightness":
            assert after.mean() > before.mean() + 0.1
        elif name == "gaussian_noise":
            assert abs(np.std(after - before) - 0.1) < 0.02
        else:  # blur and pixelation remove detail
            assert imagedata.detail(after).mean() < 0.7 * imagedata.detail(before).mean(), name
    px = phases["pixelate"][1]
    assert (px[:, ::4, ::4] == px[:, 3::4, 3::4]).all()  # factor 0.25: 4×4 blocks, an 8×8 image
    assert "not detectable" in phases["pixelate"][0] and "0.65" in phases["pixelate"][0]
    assert "severity 5" in phases["motion_blur"][0]
    noise = phases["strong_noise"][1]
    assert imagedata.detail(noise).mean() > 3 * imagedata.detail(clean).mean()



def test_explain_order_puts_the_rarer_class_first():
    _, y = imagedata.patches(20, seed=77, textured=True)  # the sample the demo explains from
    order = demo_images.explain_order(y)
    assert sorted(order) == list(range(len(y)))
    rare = np.bincount(y).argmin()
    tries = order[:demo_images.EXPLAIN_TRIES]
    assert all(y[i] == rare for i in tries) and tries == sorted(tries)  # the first rare patches, in order
    assert demo_images.explain_order(np.array([0, 0, 1, 0, 1, 1, 1])) == [0, 1, 3, 2, 4, 5, 6]

@pytest.mark.slow
@pytest.mark.tensorflow
def test_vigil_demo_images_end_to_end(tmp_path):
    from PIL import Image

    from tests.prom import free_port_range

    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "vigil", "demo", "--images", "--workdir", str(tmp_path / "demo"),
                           "--base-port", str(free_port_range(7))], capture_output=True, text=True, timeout=1800)
    took = time.monotonic() - started
    out = proc.stdout
    print(out, f"\n(demo took {took:.0f}s)")
    assert proc.returncode == 0, out + proc.stderr[-3000:]
    lines = {m.group(1): m.group(0) for m in re.finditer(r"^  (\w+)\s+drift .*$", out, re.M)}
    assert set(lines) == {"clean", *demo_images.CORRUPTIONS, "strong_noise"}, out
    assert "drift none" in lines["clean"]
    for name in demo_images.CORRUPTIONS:
        assert "drift DETECTED" in lines[name], lines[name]
    rate = float(re.search(r"outliers\s+([\d.]+)%", lines["strong_noise"]).group(1))
    assert rate >= 100 * demo_images.OUTLIER_RATE
    assert "Result: no drift on clean images, drift on each corruption" in out
    png = re.search(r"anchor image: (\S+\.png)", out).group(1)
    assert png == str(tmp_path / "demo" / "anchor.png")
    assert re.search(r"because of superpixels \[\d+(, \d+)*\] of \d+", out), out  # not an empty anchor
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (256, 256)
        pixels = np.asarray(img.convert("RGB"), dtype=float) / 255
    outline = np.isclose(pixels, [1.0, 0.85, 0.0], atol=1 / 255 + 1e-6).all(axis=-1)
    assert outline.any()  # the anchor's boundary is drawn
