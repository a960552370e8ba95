"""Memory of every Vigil process a cluster runs: what the operator's default requests and
limits (operator/vigil_operator/resources.yaml) are set from.

On 127.0.0.1, for the iris monitor of `vigil demo` (every detector):

- one-shot processes, as the pods' init containers and the training Jobs run them:
  ``python -m vigil.storage`` (`vigil fetch` copying and unpacking the model into a pod
  volume) and `vigil train` for each detector Vigil trains — peak RSS from `wait4`
  (``ru_maxrss``, forked from a small process: `LAUNCHER`);
- every service (`vigil serve NAME`, as `vigil up` starts it): RSS at ready
  (``/proc/PID/status`` ``VmRSS``), then the peak RSS (``VmHWM``) after traffic through
  the logger — normal, drifted and outlier phases with feedback for every inference, a
  few rejected requests and anchor explanations (bench/traffic.py) — repeated `--rounds`
  times so windows fill and roll.

    python bench/bench_memory.py                 # ~2-4 min (TensorFlow start-up, training)
    python bench/bench_memory.py --json out.json

RSS includes shared libraries (what the kernel charges a container's memory cgroup for
pages it touched first). The rule the defaults follow (DESIGN §12): request ≥ half the RSS
at ready, limit ≥ the peak RSS under load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

MiB = 1024 * 1024


def proc_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


#: Forks and waits for the command from a small process: a child's ``ru_maxrss`` counts the
#: address space it was forked with (Linux keeps the high-water mark across exec), so a
#: command forked from this benchmark (~240 MiB) would read at least that much.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvpe(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_peak(cmd: list[str], env: dict) -> tuple[int, float]:
    """Run `cmd` to completion; (peak RSS in bytes, seconds). Fails loudly on a non-zero exit."""
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *cmd], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} … exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return int(proc.stderr.strip().splitlines()[-1]) * 1024, time.monotonic() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="traffic rounds (each: normal, drift, outliers)")
    p.add_argument("--rows", type=int, default=600, help="rows per phase and round")
    p.add_argument("--json", help="also write the numbers here")
    p.add_argument("--base-port", type=int, default=None)
    args = p.parse_args(argv)

    import traffic

    from tests.prom import free_port_range
    from vigil.demo import prepare
    from vigil.local import LocalStack, _vigil_cmd, child_env, local_plan
    from vigil.spec import load_monitor

    work = Path(tempfile.mkdtemp(prefix="vigil-bench-memory-"))
    results: dict[str, dict] = {}
    try:
        path, _ = prepare(work, lambda s: None)
        monitor = load_monitor(path)
        base = args.base_port or free_port_range(6)
        plan, placement = local_plan(monitor, work, work / "run", base)
        env = child_env({})

        # -- init container: copy the model (and an archive of it, unpacked) into a pod volume
        # what the init containers run (vigil_operator.manifests.FETCH_COMMAND)
        fetch = [sys.executable, "-m", "vigil.storage"]
        if (ROOT / "vigil" / "storage.py").exists():
            shutil.make_archive(str(work / "model"), "gztar", work, "model.joblib")
            peak, secs = run_peak(fetch + [f"file://{work}/model.tar.gz", str(work / "fetched")], env)
            results["fetch"] = {"peak": peak, "seconds": round(secs, 1)}

        # -- training Jobs: one `vigil train` per detector
        for step in plan.training:
            cmd = _vigil_cmd("train", "--component", step.component,
                             "--reference", placement.path(step.reference_uri),
                             "--output", placement.path(step.output_uri), "--options", json.dumps(step.options),
                             "--feature-names", json.dumps(list(monitor.spec.schema_.feature_names)),
                             "--categorical", json.dumps(monitor.spec.schema_.categorical))
            if step.model_uri:
                cmd += ["--model", placement.path(step.model_uri), "--model-format", monitor.spec.model.format]
            peak, secs = run_peak(cmd, env)
            results[f"train-{step.component}"] = {"peak": peak, "seconds": round(secs, 1)}
            print(f"  train {step.component}: peak {peak / MiB:.0f} MiB in {secs:.0f}s", file=sys.stderr)

        # -- services: RSS at ready, then peak under load
        stack = LocalStack(plan, placement, say=lambda s: None)
        stack.start(timeout=300)
        try:
            time.sleep(2.0)  # let start-up garbage settle
            for name, proc in stack.procs.items():
                results[name] = {"ready": proc_kib(proc.pid, "VmRSS") * 1024}
            urls = stack.component_urls()
            for i in range(args.rounds):
                sent = traffic.send(urls["logger"], rows=args.rows, batch=10, bad=5, seed=i,
                                    explain_url=urls["explainer"], explanations=3)
                if sent.errors:
                    raise SystemExit(f"traffic errors: {sent.errors[:3]}")
            time.sleep(3.0)  # the detectors drain their queues
            for name, proc in stack.procs.items():
                results[name]["peak"] = proc_kib(proc.pid, "VmHWM") * 1024
                results[name]["now"] = proc_kib(proc.pid, "VmRSS") * 1024
        finally:
            stack.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{'process':<18} {'ready MiB':>10} {'peak MiB':>10}")
    for name, r in results.items():
        ready = f"{r['ready'] / MiB:.0f}" if "ready" in r else "-"
        print(f"{name:<18} {ready:>10} {r['peak'] / MiB:>10.0f}")
    services = [r["ready"] for r in results.values() if "ready" in r]
    print(f"{'all services':<18} {sum(services) / MiB:>10.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
