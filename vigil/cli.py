"""`vigil` — the one command line: demo, init, up, validate, status, train, baseline, report, serve, fetch, operator,
replay.

Each subcommand imports what it needs when it runs, so `vigil status` or `vigil operator`
never pay for (or need) TensorFlow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vigil import components, logs
from vigil.plan import DEFAULT_BASE_PORT


def _workdir(args, monitor_name: str) -> Path:
    """Artifacts, state and logs of a monitor: beside its file, so `vigil demo`'s trained
    detectors are reused by `vigil up vigil-demo/monitor.yaml`."""
    return Path(args.workdir or Path(args.monitor).parent / ".vigil" / monitor_name).resolve()


def cmd_serve(args) -> int:
    from vigil.services import app_factory, serve

    logs.configure(args.log_level, args.log_format)
    serve(app_factory(args.component), args.host, args.port, args.log_level, factory=True)
    return 0


def cmd_validate(args) -> int:
    from vigil.validate import validate_file

    problems, notes = validate_file(args.monitor, base_port=args.base_port, check_ports=not args.no_ports)
    for line in notes:
        print(f"note: {line}")
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if problems:
        return 2
    print(f"{args.monitor}: ok")
    return 0


def cmd_up(args) -> int:
    from vigil.auth import TOKEN_ENV, read_token_file
    from vigil.local import LocalError, LocalStack, local_plan
    from vigil.spec import load_monitor
    from vigil.validate import validate_file

    problems, notes = validate_file(args.monitor, base_port=args.base_port)  # before training or starting
    for line in notes:
        print(f"note: {line}")
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    monitor = load_monitor(args.monitor)
    plan, placement = local_plan(monitor, Path(args.monitor).parent, _workdir(args, monitor.name), args.base_port)
    stack = LocalStack(plan, placement, serve_args=logs.child_args(args))
    if args.token_file:
        try:
            stack.extra_env[TOKEN_ENV] = read_token_file(args.token_file)
        except (OSError, ValueError) as exc:
            print(f"error: --token-file: {exc}", file=sys.stderr)
            return 2
    print(f"vigil up: {monitor.name} ({', '.join(plan.names)}) — work dir {placement.workdir}")
    try:
        stack.train(retrain=args.retrain)
        stack.start()
        print("\nEndpoints:")
        for name, url in stack.endpoints().items():
            print(f"  {name:<10} {url}")
        print("Metrics:")
        for name, url in stack.component_urls().items():
            print(f"  {name:<10} {url}/metrics")
        print(f"\nvigil status --workdir {placement.workdir}   # summary;  Ctrl-C stops everything")
        stack.wait()
    except LocalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping …")
        stack.stop()
    return 0


def _status_target(args) -> dict:
    """The run file of a running `vigil up`: of the monitor file's work dir, of --workdir, or the one here."""
    from vigil.local import RUN_FILE
    from vigil.spec import load_monitor

    if args.monitor:
        monitor = load_monitor(args.monitor)
        run_file = _workdir(args, monitor.name) / RUN_FILE
        if not run_file.exists():
            raise SystemExit(f"error: monitor {monitor.name} is not running (no {run_file}); start it with "
                             f"vigil up {args.monitor}")
        return json.loads(run_file.read_text())
    candidates = ([Path(args.workdir) / RUN_FILE] if args.workdir else
                  sorted(Path(".").glob(f".vigil/*/{RUN_FILE}")) + sorted(Path(".").glob(f"*/.vigil/*/{RUN_FILE}")))
    candidates = [c for c in candidates if c.exists()]
    if len(candidates) != 1:
        raise SystemExit("error: no running `vigil up` found here; pass the monitor file "
                         "(vigil status monitor.yaml) or --workdir" if not candidates else
                         f"error: several runs found ({', '.join(map(str, candidates))}); pass --workdir")
    return json.loads(candidates[0].read_text())


def cmd_status(args) -> int:
    from vigil.status import format_history, format_table, history, poll, summarize

    run = _status_target(args)
    if args.history is not None:
        if args.history < 1:
            raise SystemExit("error: --history N needs N >= 1")
        checks = asyncio.run(history(run["components"], args.history))
        _print(checks, args.output, format_history)
        return 0
    status = {"monitor": run.get("monitor"), "namespace": run.get("namespace"),
              **summarize(asyncio.run(poll(run["components"])), run["endpoints"])}
    for name, state in (run.get("states") or {}).items():  # the supervisor knows a restarting one
        if state == "Restarting" and status["components"].get(name) == "Unreachable":
            status["components"][name] = "Restarting"
    status["restarts"] = run.get("restarts") or {n: 0 for n in run["components"]}
    if run.get("lastExit"):
        status["lastExit"] = run["lastExit"]
    if run.get("transport"):
        status["transport"] = run["transport"]
    _print(status, args.output, format_table)
    return 0 if status["phase"] == "Ready" else 3


def _print(doc: Any, output: str, as_text: Callable[[Any], str]) -> None:
    """`doc` as ``--output`` asks: json, yaml, or text (`as_text`)."""
    if output == "json":
        print(json.dumps(doc, indent=2))
    elif output == "yaml":
        import yaml

        print(yaml.safe_dump(doc, sort_keys=False), end="")
    else:
        print(as_text(doc))


def cmd_train(args) -> int:
    if args.monitor:
        from vigil.local import LocalError, LocalStack, local_plan
        from vigil.spec import load_monitor

        monitor = load_monitor(args.monitor)
        if args.out:  # --out DIR: each detector to DIR/<detector>
            from vigil.trainopts import out_dir_plan

            plan, placement = out_dir_plan(monitor, Path(args.monitor).parent, Path(args.out))
        else:
            plan, placement = local_plan(monitor, Path(args.monitor).parent, _workdir(args, monitor.name),
                                         DEFAULT_BASE_PORT)
        if args.component:
            plan = type(plan)(plan.monitor, tuple(c for c in plan.components if c.name == args.component))
        if not plan.training:
            print("nothing to train: every detector has a storageUri (drift is fitted from reference at start-up)")
            return 0
        try:
            LocalStack(plan, placement).train(retrain=True)
        except LocalError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for step in plan.training:
            print(f"{step.component}: saved to {placement.path(step.output_uri)}")
        return 0
    if not (args.component and args.reference and args.output):
        raise SystemExit("error: give a monitor file, or --component, --reference and --output")
    from vigil.trainopts import parse_json_option, validate_options

    options = validate_options(args.component, parse_json_option("--options", args.options, {}))
    feature_names = parse_json_option("--feature-names", args.feature_names, None)
    categorical = parse_json_option("--categorical", args.categorical, {})
    shape = parse_json_option("--shape", args.shape, None)
    if shape is not None and not (isinstance(shape, list) and shape and all(isinstance(d, int) and d >= 1 for d in shape)):
        raise SystemExit(f"error: --shape must be a JSON list of positive integers, got {args.shape}")
    from vigil_detectors.train import train_component

    train_component(component=args.component, reference=args.reference, output=args.output,
                    options=options, feature_names=feature_names,
                    categorical=categorical, shape=shape, model=args.model, model_format=args.model_format,
                    model_name=args.model_name)
    return 0


def cmd_baseline(args) -> int:
    from vigil.baseline import CONSTRAINTS_FILE, STATISTICS_FILE, BaselineError, compute_baseline
    from vigil.data import DataError, load_table
    from vigil.instances import InputSchema
    from vigil.local import LocalPlacement
    from vigil.spec import load_monitor

    monitor = load_monitor(args.monitor)  # a SpecError: exit 2 (main)
    if monitor.spec.reference is None:
        print(f"error: {args.monitor}: a baseline profiles spec.reference, which this monitor does not have",
              file=sys.stderr)
        return 2
    base = Path(args.monitor).parent
    out = Path(args.out) if args.out else base / "baseline"
    if (out / CONSTRAINTS_FILE).exists() and not args.force:
        print(f"error: {out / CONSTRAINTS_FILE} exists (it may hold your edits); pass --force to overwrite it "
              "or --out DIR for another directory", file=sys.stderr)
        return 1
    schema = InputSchema.from_spec(monitor.spec.schema_)
    try:
        reference = LocalPlacement(_workdir(args, monitor.name), base).path(monitor.spec.reference.storage_uri)
        print(f"vigil baseline: profiling {reference} ({len(schema.feature_names or ())} features) …", flush=True)
        baseline = compute_baseline(load_table(reference, schema.feature_names, monitor.spec.schema_.categorical,
                                               missing="keep"), schema)
        baseline.write(out)
    except (DataError, BaselineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write the baseline to {out}: {exc}", file=sys.stderr)
        return 1
    types = [f.inferred_type for f in baseline.statistics.features]
    kinds = ", ".join(f"{types.count(t)} {t}" for t in ("numeric", "integer", "categorical") if t in types)
    print(f"wrote {out / STATISTICS_FILE} and {out / CONSTRAINTS_FILE}: {baseline.statistics.dataset.item_count} "
          f"rows, {len(types)} features ({kinds})")
    where = os.path.relpath(out.resolve(), base.resolve())  # storage URIs are relative to the monitor file
    print(f"edit {CONSTRAINTS_FILE} (each check has \"enabled\") and set spec.baseline.storageUri: "
          f"{out.resolve() if where.startswith('..') else where} to use it")
    return 0


def cmd_report(args) -> int:
    from vigil.errors import VigilError
    from vigil.report import build_report, render
    from vigil.spec import SpecError, load_monitor

    if not Path(args.monitor).is_file():
        print(f"error: {args.monitor}: monitor file not found", file=sys.stderr)
        return 2
    try:
        workdir = _workdir(args, load_monitor(args.monitor).name)
        report = build_report(args.monitor, args.current, workdir, say=lambda msg: print(msg, file=sys.stderr))
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(report), encoding="utf-8")
    except SpecError:
        raise  # main() names the field
    except (VigilError, ValueError, OSError) as exc:  # SpecError, DataError, DetectorError, unreadable files
        print(f"error: {exc}", file=sys.stderr)
        return 2
    d = report.drift
    print(f"drift: {len(d.drifted)} of {len(d.features)} features drifted"
          + (f" ({', '.join(d.drifted)})" if d.drifted else ""))
    print(f"wrote {out.resolve()}")
    return 0


def cmd_demo(args) -> int:
    if args.images:
        from vigil.demo_images import run_image_demo

        return run_image_demo(base_port=args.base_port, workdir=Path(args.workdir or "vigil-demo-images").resolve(),
                              keep_running=args.keep_running)
    from vigil.demo import run_demo

    return run_demo(base_port=args.base_port, workdir=Path(args.workdir or "vigil-demo").resolve(),
                    keep_running=args.keep_running)


def cmd_operator(args) -> int:
    from vigil_operator import run
    from vigil_operator.config import OperatorConfig

    # the flag turns host paths on; without it VIGIL_OPERATOR_ALLOW_HOST_PATH decides
    config = OperatorConfig(allow_host_path=True) if args.allow_host_path else OperatorConfig()
    run(namespace=args.namespace, all_namespaces=args.all_namespaces, liveness_port=args.liveness_port,
        metrics_port=args.metrics_port, peering=args.peering, config=config)
    return 0


def cmd_fetch(args) -> int:
    from vigil.storage import main as fetch_main

    return fetch_main(args.pairs)


def build_parser() -> argparse.ArgumentParser:
    from vigil import __version__, init
    from vigil.capture import replay

    p = argparse.ArgumentParser(prog="vigil", description="Model monitoring: drift, outliers, metrics, explanations.")
    p.add_argument("--version", action="version", version=f"vigil {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo", help="train a model and detectors on iris, run everything locally, inject drift")
    s.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                   help=f"first of the {len(components.rows())} loopback ports the stack uses (default {DEFAULT_BASE_PORT})")
    s.add_argument("--workdir", help="where the demo writes its model, data and logs (default ./vigil-demo)")
    s.add_argument("--keep-running", action="store_true", help="leave the stack up until Ctrl-C")
    s.add_argument("--images", action="store_true", help="the image walkthrough: a Keras CNN on 32x32x3 patches, "
                   "conv VAE outliers, UAE drift on four corruptions (needs the [detectors] extra)")
    s.set_defaults(func=cmd_demo)

    init.add_parser(sub)

    s = sub.add_parser("up", help="run a ModelMonitor locally as processes on 127.0.0.1")
    s.add_argument("monitor", help="ModelMonitor YAML file")
    s.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                   help=", ".join(f"{r.name} N+{r.port_offset}" if r.port_offset else f"{r.name} N"
                                  for r in components.rows()))
    s.add_argument("--workdir", help="artifacts, state and logs (default: .vigil/<monitor name> beside the file)")
    s.add_argument("--retrain", action="store_true", help="train detectors again even if artifacts exist")
    logs.add_arguments(s)
    s.add_argument("--token-file", help="file holding the shared bearer token (else $VIGIL_TOKEN; none: no auth)")
    s.set_defaults(func=cmd_up)

    s = sub.add_parser("validate", help="check a ModelMonitor before running it: files, model, widths, ports")
    s.add_argument("monitor", help="ModelMonitor YAML file")
    s.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT, help="ports vigil up would use (N, N+1, …)")
    s.add_argument("--no-ports", action="store_true", help="do not check that the ports are free")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("status", help="print the monitor summary (what the operator writes to .status)")
    s.add_argument("monitor", nargs="?", help="ModelMonitor YAML file (default: the running vigil up)")
    s.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                   help="with a monitor file: the base port it runs on (as given to vigil up)")
    s.add_argument("--workdir", help="the work dir of a running vigil up (default: the monitor file's, or found under ./.vigil)")
    s.add_argument("--output", "-o", choices=("text", "json", "yaml"), default="text",
                   help="table (default), JSON or YAML")
    s.add_argument("--history", nargs="?", type=int, const=10, default=None, metavar="N",
                   help="print the last N (default 10) window checks of drift and quality instead, newest last")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("train", help="fit and save detector artifacts from reference data")
    s.add_argument("monitor", nargs="?", help="ModelMonitor YAML file: trains every detector without storageUri")
    s.add_argument("--out", help="with a monitor file: output directory (each detector goes to OUT/<detector>)")
    s.add_argument("--workdir", help=argparse.SUPPRESS)
    s.add_argument("--component", choices=components.trainable(), help="the detector to train")
    s.add_argument("--reference", help="reference data file (CSV, Parquet or .npy)")
    s.add_argument("--output", help="artifact directory to write")
    s.add_argument("--options", help="detector options as JSON (the detector block of the spec)")
    s.add_argument("--feature-names", help="JSON list of feature names")
    s.add_argument("--categorical", help="JSON map feature -> categories")
    s.add_argument("--shape", help="JSON shape of one tensor instance, e.g. [32,32,3] (reference: .npy [n, *shape])")
    s.add_argument("--model", help="model file or V2 endpoint URL (the explainer fits against the model)")
    s.add_argument("--model-format", default="sklearn", help="format of --model: sklearn (default), xgboost, tensorflow")
    s.add_argument("--model-name", help="model name on the endpoint's V2 path /v2/models/{name}/infer")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("baseline", help="profile the reference into statistics.json and constraints.json")
    s.add_argument("monitor", help="ModelMonitor YAML file (its spec.reference is profiled)")
    s.add_argument("--out", help="directory to write (default: baseline/ beside the monitor file)")
    s.add_argument("--force", action="store_true", help="overwrite an existing constraints.json")
    s.add_argument("--workdir", help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_baseline)

    s = sub.add_parser("report", help="write an HTML drift report: current data against a monitor's reference")
    s.add_argument("-m", "--monitor", required=True, help="ModelMonitor YAML file")
    s.add_argument("--current", required=True, help="current data: a CSV, Parquet or .npy file, or a capture directory")
    s.add_argument("-o", "--output", default="report.html", help="HTML file to write (default report.html)")
    s.add_argument("--workdir", help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("serve", help="run one component (what vigil up and the pods run)")
    s.add_argument("component", choices=components.names(),
                   help="the component to serve (configured by VIGIL_* environment variables)")
    s.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    s.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    logs.add_arguments(s)
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("operator", help="run the Kubernetes operator (kopf)")
    scope = s.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch the whole cluster")
    s.add_argument("--liveness-port", type=int, default=8081, help="kopf liveness probe port (default 8081)")
    s.add_argument("--metrics-port", type=int, default=9090, help="operator /metrics port (default 9090)")
    s.add_argument("--allow-host-path", action="store_true",
                   help="let file:// storage mount host paths (off: such monitors fail; for kind and one-node tests)")
    s.add_argument("--peering", metavar="NAME",
                   help="run as one of several replicas: kopf peering through the KopfPeering (or, with "
                        "--all-namespaces, ClusterKopfPeering) NAME; only one replica acts at a time")
    s.set_defaults(func=cmd_operator)

    s = sub.add_parser("fetch", help="copy storage into a pod's volume, or upload an artifact (init containers, Jobs)")
    s.add_argument("pairs", nargs="*", metavar="SRC DEST",
                   help="local paths or s3://, gs://, https:// URLs; archives (.tar.gz, .zip) unpack into DEST")
    s.set_defaults(func=cmd_fetch)

    replay.add_parser(sub)
    return p


def main(argv=None) -> int:
    from vigil.spec import SpecError

    try:
        args = build_parser().parse_args(argv)
        return args.func(args) or 0
    except SpecError as exc:
        print(f"error: invalid ModelMonitor: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `vigil ... | head`: the reader left. Stop quietly, and keep Python's exit-time
        # flush of stdout from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
