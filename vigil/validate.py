"""Pre-flight: `vigil validate monitor.yaml`, also run by `vigil up` before it trains or starts anything.

A broken monitor should fail in seconds with one line per problem, not minutes later with a
traceback from a child process (DESIGN §11). `validate_file` returns ``(problems, notes)``:

- the file parses and the spec validates (`vigil.spec.load_monitor`), and the plan builds
  (every value each service would reject, named by its spec field);
- every local file the spec names exists: model, reference, detector artifacts;
- the reference reads with the declared ``featureNames`` (`vigil.data.load_table`);
- the model loads with the declared format (`vigil.modelserver.loaders`, the model server's
  own loaders); when the bytes look like another format the line says which
  (`sniff_format`: pickle/joblib, XGBoost JSON/UBJ, Keras/HDF5/SavedModel). TensorFlow is
  imported only when the declared format is ``tensorflow`` and the bytes agree;
- the model's input width (sklearn ``n_features_in_``, XGBoost ``num_features``, Keras input
  shape) equals the number of ``featureNames``;
- the explainer's model is a classifier (anchors explain class predictions);
- a local ``spec.baseline.storageUri`` reads as a baseline (`vigil.baseline.load_baseline`) for the schema's features;
- the ports `vigil up` would bind are free.

Notes do not fail validation: a capture location (``spec.logger.capture``) that cannot be written
(or needs a library that is missing) is served anyway — inference is never held up by it, records
are dropped and counted — so validate warns about it; a feature whose reference holds ≤ 10 distinct values and is not
declared categorical is tested as categorical by drift (DESIGN §10), and validate says so.
Monitors that point at an endpoint or at remote storage skip the checks that need the bytes.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import numpy as np

from vigil import components as registry
from vigil.plan import DEFAULT_BASE_PORT
from vigil.spec import ModelMonitor, SpecError, load_monitor

_PICKLE_MAGIC = (b"\x80", b"\x78", b"\x1f\x8b", b"\xfd7zXZ", b"BZh")  # pickle, joblib zlib/gzip/xz/bz2


def sniff_format(path: Path) -> Optional[str]:
    """The model format the bytes at `path` look like (sklearn, xgboost, tensorflow), or None."""
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "tensorflow"
        files = sorted(p for p in path.iterdir() if p.is_file())
        guesses = {sniff_format(p) for p in files} - {None}
        return guesses.pop() if len(guesses) == 1 else None
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x89HDF"):
        return "tensorflow"  # a .keras zip or an .h5 file
    if head.lstrip().startswith(b"{"):
        return "xgboost" if (b"learner" in head or not head.startswith(b"{\"")) else None
    if head.startswith(_PICKLE_MAGIC):
        return "sklearn"
    return None


def _local(uri: Optional[str], base: Path) -> Optional[Path]:
    """A storage URI as a local path, or None when it is remote (checked where it is read)."""
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        return None
    raw = (parsed.netloc + parsed.path) if parsed.scheme == "file" else uri
    path = Path(raw).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def capture_warnings(monitor: ModelMonitor, base: Path) -> list[str]:
    """Why the logger could not write its capture files here (they would be dropped and counted)."""
    import importlib.util
    import tempfile

    capture = monitor.spec.logger.capture
    if capture is None:
        return []
    field, uri = "spec.logger.capture.storageUri", capture.storage_uri
    consequence = "capture records would be dropped (vigil_capture_errors_total); inference is unaffected"
    out = []
    if capture.format == "parquet" and importlib.util.find_spec("pyarrow") is None:
        out.append(f"spec.logger.capture.format: parquet needs pyarrow, which is not installed "
                   f"(pip install pyarrow, or format: jsonl): {consequence}")
    scheme = urlparse(uri).scheme
    module = {"s3": "s3fs", "gs": "gcsfs"}.get(scheme)
    if module and importlib.util.find_spec(module) is None:
        out.append(f"{field}: {scheme}:// needs {module} (pip install 'vigil-ml[storage]'): {consequence}")
    path = _local(uri, base)
    if path is None:
        return out
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a directory")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        out.append(f"{field}: {path} is not writable ({exc}): {consequence}")
    return out


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def categorical_hints(x_ref: np.ndarray, monitor: ModelMonitor) -> list[str]:
    """What the drift service will test as categorical without being told (the drift suite's own rule)."""
    from vigil_detectors.drift.statistics.suite import inferred_categorical

    schema = monitor.spec.schema_
    names = schema.names
    declared = {names.index(n): None for n in schema.categorical}
    out = []
    for j in inferred_categorical(x_ref, declared):
        name, distinct = names[j], np.unique(x_ref[:, j]).size
        out.append(f"spec.schema.featureNames: {name} has {distinct} distinct reference values, so drift "
                   f"tests it as categorical; declare it in schema.categorical to say so (or to list its values)")
    return out


def _check_model(monitor: ModelMonitor, path: Path, problems: list[str]) -> None:
    from vigil.modelserver.loaders import load_model

    spec = monitor.spec
    field = "spec.model.storageUri"
    declared, looks = spec.model.format, sniff_format(path)
    hint = f" (the file looks like a {looks} model: set spec.model.format: {looks})" if looks and looks != declared else ""
    if declared == "tensorflow" and looks in ("sklearn", "xgboost") or looks == "tensorflow" and declared != looks:
        problems.append(f"{field}: {path} is not a {declared} model{hint}")
        return  # never import TensorFlow for a file that is not one (nor load one as pickle)
    try:
        model = load_model(str(path), declared)
    except Exception as exc:  # noqa: BLE001 - any load failure (ModelLoadError, unpickling) is one line
        problems.append(f"{field}: cannot load {path} as a {declared} model: {str(exc).splitlines()[0][:300]}{hint}")
        return
    shape = spec.schema_.instance_shape
    if shape is not None:
        width = int(np.prod(shape))
        if model.input_shape is not None and tuple(model.input_shape) != shape:
            problems.append(f"spec.schema.shape: instances of shape {list(shape)} declared but the model takes "
                            f"{list(model.input_shape)} ({model.platform})")
        elif model.n_features is not None and int(model.n_features) != width:
            problems.append(f"spec.schema.shape: instances of shape {list(shape)} ({width} values) declared but the "
                            f"model takes {model.n_features} inputs ({model.platform})")
    names = spec.schema_.names
    if shape is None and model.n_features is not None and int(model.n_features) != len(names):
        problems.append(f"spec.schema.featureNames: {len(names)} features declared but the model takes "
                        f"{model.n_features} inputs ({model.platform})")
    if getattr(spec.detectors, "explainer", None) is not None and not model.classifier:
        problems.append(f"spec.detectors.explainer: anchor explanations need a classifier, but the model is a "
                        f"regressor ({model.platform}); remove the explainer block")


def validate(monitor: ModelMonitor, base: Path, base_port: int = DEFAULT_BASE_PORT,
             check_ports: bool = True) -> tuple[list[str], list[str]]:
    """(problems, notes) of a loaded monitor whose relative paths are relative to `base`."""
    from vigil.data import DataError, load_table

    problems: list[str] = []
    notes: list[str] = []
    spec = monitor.spec
    files = [("spec.model.storageUri", spec.model.storage_uri),
             ("spec.reference.storageUri", spec.reference.storage_uri if spec.reference else None)]
    for row in registry.detectors():
        block = getattr(spec.detectors, row.name, None)
        if block is not None:
            files.append((f"spec.detectors.{row.name}.storageUri", getattr(block, "storage_uri", None)))
    missing = set()
    for field, uri in files:
        path = _local(uri, base)
        if path is not None and not path.exists():
            problems.append(f"{field}: {path} does not exist")
            missing.add(field)
    ref = _local(spec.reference.storage_uri if spec.reference else None, base)
    if ref is not None and "spec.reference.storageUri" not in missing:
        try:
            x_ref = load_table(ref, spec.schema_.feature_names, spec.schema_.categorical, shape=spec.schema_.shape,
                               missing="keep")
        except DataError as exc:
            problems.append(f"spec.reference.storageUri: {exc}")
        else:
            incomplete = int(np.isnan(x_ref.reshape(len(x_ref), -1)).any(axis=1).sum())
            if incomplete:
                notes.append(f"spec.reference.storageUri: {incomplete} of {x_ref.shape[0]} rows hold a missing value; "
                             "drift and outlier fit on the others")
                x_ref = x_ref[~np.isnan(x_ref).any(axis=1)]
            if getattr(spec.detectors, "drift", None) is not None and spec.schema_.shape is None:
                notes += categorical_hints(x_ref, monitor)
    notes += capture_warnings(monitor, base)
    problems += baseline_problems(monitor, base)
    model = _local(spec.model.storage_uri, base)
    if model is not None and "spec.model.storageUri" not in missing and not spec.model.image:
        _check_model(monitor, model, problems)
    if check_ports:
        rows = {r.name: r for r in registry.rows()}
        for name in _planned(monitor):
            port = base_port + rows[name].port_offset
            if not port_free(port):
                problems.append(f"port {port} ({name}) is in use on 127.0.0.1: stop what uses it or pass "
                                f"--base-port N")
    return problems, notes


def baseline_problems(monitor: ModelMonitor, base: Path) -> list[str]:
    """A local ``spec.baseline.storageUri`` must be a baseline the quality service can read, naming the schema's features."""
    path = _local(monitor.spec.baseline.storage_uri, base)
    if path is None:
        return []
    from vigil.baseline import BaselineError, load_baseline

    try:
        baseline = load_baseline(path)
    except BaselineError as exc:
        return [f"spec.baseline.storageUri: {exc}"]
    names = monitor.spec.schema_.feature_names or []
    if not set(names) & set(baseline.constraints.names):
        return [f"spec.baseline.storageUri: {path} has constraints for {baseline.constraints.names}, none of the "
                f"schema's featureNames {names}"]
    return []


def _planned(monitor: ModelMonitor) -> list[str]:
    """The components `vigil up` would start (the plan's list, without building settings)."""
    spec = monitor.spec
    names = ["logger"] + ([] if spec.model.endpoint else ["model"])
    names += [r.name for r in registry.detectors() if getattr(spec.detectors, r.name, None) is not None]
    return names


def validate_file(path: str, base_port: int = DEFAULT_BASE_PORT, check_ports: bool = True
                  ) -> tuple[list[str], list[str]]:
    """Validate a monitor file: (problems, notes), one line each. Never raises for a bad monitor."""
    try:
        monitor = load_monitor(path)
    except SpecError as exc:
        return [f"invalid ModelMonitor: {exc}"], []
    from vigil.local import local_plan

    base = Path(path).resolve().parent
    plan_problems = []
    try:  # the plan: values each service would refuse, named by their spec field
        local_plan(monitor, base, base / ".vigil" / monitor.name, base_port)
    except SpecError as exc:
        plan_problems.append(f"invalid ModelMonitor: {exc}")
    problems, notes = validate(monitor, base, base_port, check_ports)
    return plan_problems + problems, notes
