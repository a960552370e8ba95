"""`vigil init MODEL REFERENCE`: write a commented `monitor.yaml` to start from.

What the file says comes from the two files, not from guesses where they can answer:

- the model (loaded with the model server's own loaders, `vigil.modelserver.loaders`):
  its format (from the file name unless `--format`), task (classifier or regressor),
  classes, input width and feature names — scikit-learn's `feature_names_in_` /
  `n_features_in_`, an XGBoost booster's feature names and feature count, a Keras or
  SavedModel input shape (one instance's shape: a width for tabular models, `shape`
  for tensors);
- the reference table (CSV with or without a header, Parquet, .npy): its column names
  when the model has none, and categorical hints — a column with at most
  `CATEGORICAL_MAX_DISTINCT` distinct values, which drift tests as categorical anyway
  (DESIGN §10), is declared in `schema.categorical`.

The result is a `ModelMonitor` that `vigil up` runs as is (detectors without
`storageUri` are trained from the reference on first start). TensorFlow is imported
only for TensorFlow models.
"""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from vigil_detectors.drift.statistics.suite import MAX_CATEGORIES as CATEGORICAL_MAX_DISTINCT  # the drift rule

_FORMATS = {".joblib": "sklearn", ".pkl": "sklearn", ".pickle": "sklearn", ".sav": "sklearn",
            ".json": "xgboost", ".ubj": "xgboost", ".keras": "tensorflow", ".h5": "tensorflow"}


class InitError(ValueError):
    """A model or reference file `vigil init` cannot describe; the message says why."""


@dataclass
class ModelFacts:
    format: str
    task: str
    platform: str
    width: Optional[int] = None
    feature_names: Optional[list[str]] = None
    shape: Optional[list[int]] = None  # one instance, when it is a tensor (rank > 1)
    classes: Optional[list[Any]] = None
    n_classes: Optional[int] = None


@dataclass
class ReferenceFacts:
    columns: Optional[list[str]]  # header names, None without a header
    width: int
    rows: int
    distinct: dict[int, list[Any]] = field(default_factory=dict)  # column -> values, when few


def guess_format(path: Path) -> str:
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return "tensorflow"
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _FORMATS)
        if len(files) == 1:
            return _FORMATS[files[0].suffix.lower()]
        raise InitError(f"{path}: cannot tell the model format from this directory; pass --format")
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        raise InitError(f"{path}: cannot tell the model format from the name; pass --format "
                        "sklearn|xgboost|tensorflow") from None


def inspect_model(path: Path, fmt: Optional[str] = None) -> ModelFacts:
    from vigil.modelserver.loaders import ModelLoadError, load_model

    if not path.exists():
        raise InitError(f"{path}: model file not found")
    fmt = fmt or guess_format(path)
    try:
        m = load_model(str(path), fmt)
    except ModelLoadError as exc:
        raise InitError(str(exc)) from None
    facts = ModelFacts(format=fmt, task=m.task, platform=m.platform, width=m.n_features,
                       feature_names=m.info.get("feature_names"), classes=m.info.get("classes"),
                       n_classes=m.n_classes)
    shape = m.info.get("input_shape")
    if shape and len(shape) > 1 and all(d is not None for d in shape):
        facts.shape, facts.width = [int(d) for d in shape], None
    elif shape and len(shape) == 1 and shape[0] is not None:
        facts.width = int(shape[0])
    if facts.feature_names and not facts.width:
        facts.width = len(facts.feature_names)
    return facts


def _is_number(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def _value(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() else number


def inspect_reference(path: Path) -> ReferenceFacts:
    if not path.exists():
        raise InitError(f"{path}: reference data file not found")
    name = path.name.lower()
    if name.endswith(".npy"):
        import numpy as np

        arr = np.load(path, allow_pickle=False)
        if arr.ndim > 2:  # tensors: no columns to describe
            return ReferenceFacts(columns=None, width=int(np.prod(arr.shape[1:])), rows=int(arr.shape[0]))
        arr = arr.reshape(len(arr), -1)
        rows = [[str(v) for v in row] for row in arr.tolist()]
        return _facts(None, rows)
    if name.endswith((".parquet", ".pq")):
        try:
            import pandas as pd

            frame = pd.read_parquet(path)
        except ImportError:
            raise InitError(f"{path}: reading Parquet needs pandas and pyarrow (the [detectors] extra)") from None
        return _facts([str(c) for c in frame.columns], frame.astype(str).values.tolist())
    if name.endswith((".csv", ".tsv", ".txt")):
        with open(path, newline="") as f:
            table = [row for row in csv.reader(f, delimiter="\t" if name.endswith(".tsv") else ",") if row]
        if not table:
            raise InitError(f"{path}: the file is empty")
        header = None if all(_is_number(v) for v in table[0]) else [c.strip() for c in table[0]]
        return _facts(header, table[1:] if header else table)
    raise InitError(f"{path}: unknown reference data format; use .csv, .parquet or .npy")


def _facts(columns: Optional[list[str]], rows: list[list[str]]) -> ReferenceFacts:
    width = len(columns) if columns else (len(rows[0]) if rows else 0)
    seen: list[set] = [set() for _ in range(width)]
    for row in rows:
        for i, v in enumerate(row[:width]):
            if v != "" and len(seen[i]) <= CATEGORICAL_MAX_DISTINCT:
                seen[i].add(v)
    distinct = {i: sorted((_value(v) for v in s), key=lambda x: (isinstance(x, str), x))
                for i, s in enumerate(seen) if s and len(s) <= CATEGORICAL_MAX_DISTINCT}
    return ReferenceFacts(columns=columns, width=width, rows=len(rows), distinct=distinct)


def _flow(values: list[Any]) -> str:
    import json

    return "[" + ", ".join(v if isinstance(v, str) and re.fullmatch(r"[A-Za-z_][\w.-]*", v)
                           else json.dumps(v) for v in values) + "]"


def _c(code: str, comment: str) -> str:
    """A YAML line with its comment in the column the other comments use."""
    return f"{code:<36} # {comment}"


def render(model_path: str, reference_path: str, model: ModelFacts, ref: ReferenceFacts,
           name: str) -> str:
    """The commented monitor.yaml text."""
    notes: list[str] = []
    if model.shape:
        schema = [_c(f"    shape: {_flow(model.shape)}", "one instance, from the model's input")]
        categorical: list[str] = []
    else:
        names, source = _feature_names(model, ref, notes)
        index = {n: i for i, n in enumerate(ref.columns)} if ref.columns else {n: i for i, n in enumerate(names)}
        categorical = []
        for n in names:
            values = ref.distinct.get(index.get(n, -1))
            if not values:
                continue
            if all(isinstance(v, int) for v in values) and values == list(range(len(values))):
                categorical.append(f"      {n}: {len(values)}")
            elif any(isinstance(v, str) for v in values):
                categorical.append(f"      {n}: {_flow(values)}")
            else:
                categorical.append(f"      # {n}: {_flow(values)}   # numbers, not codes 0..k-1: declare if a category")
        schema = [f"    # {source}", f"    featureNames: {_flow(names)}"]
        if categorical:
            schema += [f"    # ≤ {CATEGORICAL_MAX_DISTINCT} distinct values in the reference: tested as categories "
                       "(chi-squared drift); remove a line if that feature is a number",
                       "    categorical:", *categorical]
        else:
            schema.append(_c("    categorical: {}", "feature -> number of categories or [values]"))
    classifier = model.task == "classification"
    classes = model.classes or (list(range(model.n_classes)) if model.n_classes else None)
    lines = [
        f"# ModelMonitor written by `vigil init {model_path} {reference_path}`.",
        "# Run it locally with `vigil up monitor.yaml`; apply it to a cluster running the Vigil",
        "# operator with `kubectl apply -f` (use pvc://, s3://, gs:// or https:// URIs there).",
        *[f"# NOTE: {n}" for n in notes],
        "apiVersion: vigil.dev/v1alpha1",
        "kind: ModelMonitor",
        "metadata:",
        f"  name: {name}",
        "spec:",
        "  model:",
        f"    storageUri: {model_path}",
        _c(f"    format: {model.format}", f"{model.platform}, a {'classifier' if classifier else 'regressor'}"),
        _c(f"    name: {name}", f"the V2 path: /v2/models/{name}/infer"),
        _c("  schema:", "what one instance looks like"),
        *schema,
        _c("  reference:", "training / baseline data"),
        _c(f"    storageUri: {reference_path}", f"{ref.rows} rows"),
        "  logger:",
        _c("    mode: all", "all | request | response"),
        "    sampleRate: 1.0",
        _c("  detectors:", "each block optional; delete one to not deploy it"),
        "    # outlier: a VAE trained from the reference (storageUri: null = Vigil trains it)",
        "    outlier: {type: vae, thresholdPercentile: 95, epochs: 30}",
        *(["    # drift: Kolmogorov-Smirnov per feature over windows of requests",
           "    drift: {type: ks, pValue: 0.05, correction: bonferroni, window: {size: 1000, mode: tumbling, maxAge: 10m}}"]
          if not model.shape else
          ["    # drift: KS per dimension of a seeded, untrained autoencoder's encoding (UAE, built by vigil train)",
           "    drift: {type: ks, pValue: 0.05, correction: bonferroni, preprocess: {type: uae, encodingDim: 32, seed: 0},"
           " window: {size: 1000, mode: tumbling, maxAge: 10m}}"]),
        "    # metrics: from ground-truth feedback posted to the logger's /feedback",
    ]
    if classifier:
        lines.append(f"    metrics: {{task: classification{', classes: ' + _flow(classes) if classes else ''}}}")
        lines += ["    # explainer: anchor explanations on POST /explain (classifiers only)",
                  "    explainer: {type: anchor-tabular, threshold: 0.95}" if not model.shape else
                  "    explainer: {type: anchor-image, threshold: 0.95, timeout: 60s}   # slic superpixels"]
    else:
        lines.append("    metrics: {task: regression}")
    return "\n".join(lines) + "\n"


def _feature_names(model: ModelFacts, ref: ReferenceFacts, notes: list[str]) -> tuple[list[str], str]:
    width = model.width
    if model.feature_names:
        missing = [n for n in model.feature_names if ref.columns and n not in ref.columns]
        if missing:
            notes.append(f"the reference has no column(s) {', '.join(missing)} that the model was fitted with")
        return list(model.feature_names), "feature names the model was fitted with"
    if ref.columns:
        if width and width != len(ref.columns):
            extra = ref.columns[width:]
            notes.append(f"the model takes {width} features but the reference has {len(ref.columns)} columns; "
                         f"featureNames lists the first {width} (left out: {', '.join(extra)}) — check the order")
            return ref.columns[:width], f"the reference's header (the model takes {width} features)"
        return list(ref.columns), f"the reference's header ({'the model takes ' + str(width) if width else 'width'} features)"
    n = width or ref.width
    if width and ref.width != width:
        notes.append(f"the model takes {width} features but the reference has {ref.width} columns")
    return [f"f{i}" for i in range(n)], f"the model takes {n} features; the reference has no header: rename them"


def add_parser(sub) -> None:
    s = sub.add_parser("init", help="write a commented monitor.yaml from a model file and a reference file",
                       description=__doc__.split("\n\n")[0])
    s.add_argument("model", help="model file: .joblib/.pkl (sklearn), .json/.ubj (XGBoost), .keras/.h5 or a "
                                 "SavedModel directory (TensorFlow)")
    s.add_argument("reference", help="reference (training) data: CSV, Parquet or .npy")
    s.add_argument("--format", choices=("sklearn", "xgboost", "tensorflow"),
                   help="model format (default: from the file name)")
    s.add_argument("--name", help="monitor and model name (default: the model file's stem)")
    s.add_argument("-o", "--output", default="monitor.yaml", help="file to write, '-' for stdout (default monitor.yaml)")
    s.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    s.set_defaults(func=cmd_init)


def _dns_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return name[:63].strip("-") or "model"


def cmd_init(args) -> int:
    model_path, ref_path = Path(args.model), Path(args.reference)
    out = None if args.output == "-" else Path(args.output)
    if out is not None and out.exists() and not args.force:
        print(f"error: {out} exists; pass --force to overwrite it or -o another file", file=sys.stderr)
        return 2
    try:
        model = inspect_model(model_path, args.format)
        ref = inspect_reference(ref_path)
    except InitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    base = out.parent.resolve() if out is not None else Path.cwd()
    text = render(_relative(model_path, base), _relative(ref_path, base), model, ref,
                  _dns_name(args.name or model_path.stem))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        print(f"wrote {out}: {model.platform}, "
              + (f"instance shape {model.shape}" if model.shape else f"{model.width or ref.width} features")
              + f"; run it with `vigil up {out}`")
    return 0


def _relative(path: Path, base: Path) -> str:
    """Paths in the monitor file are relative to the file's directory (as `vigil up` reads them)."""
    path = path.resolve()
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)
