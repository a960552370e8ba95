"""The ModelMonitor CRD (crds/modelmonitors.vigil.dev.yaml) against the spec models and examples.

- Shape: group/version/names/short names, status subresource, printer columns into .status.
- Structural schema rules the API server enforces (types everywhere, nothing but the
  int-or-string pattern inside anyOf, defaults valid against their own schema).
- Field by field against `vigil.spec` (pydantic's JSON schema of the same models): every
  field in both, same type, enum, default, bounds and required-ness.
- CEL rules (evaluated with cel-python) reject exactly what the models reject.
- Every example monitor in examples/ validates with the CRD and with the models.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests import crdschema
from vigil.spec import ModelMonitorSpec, SpecError, monitor_from_dict

ROOT = Path(__file__).resolve().parent.parent
CRD = crdschema.load_crd()
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
SPEC = SCHEMA["properties"]["spec"]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def monitors_in(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict) and d.get("kind") == "ModelMonitor"]


# ----------------------------------------------------------------------------- shape

def test_names_scope_and_subresources():
    spec = CRD["spec"]
    assert CRD["metadata"]["name"] == "modelmonitors.vigil.dev"
    assert (spec["group"], spec["scope"]) == ("vigil.dev", "Namespaced")
    assert spec["names"]["plural"] == "modelmonitors" and spec["names"]["kind"] == "ModelMonitor"
    assert spec["names"]["shortNames"] == ["monitors", "mm"]
    assert [v["name"] for v in spec["versions"]] == ["v1alpha1"]
    assert VERSION["served"] and VERSION["storage"]
    assert VERSION["subresources"] == {"status": {}}


def test_printer_columns_read_the_status():
    cols = {c["name"].upper(): c for c in VERSION["additionalPrinterColumns"]}
    default = [c["name"].upper() for c in VERSION["additionalPrinterColumns"] if not c.get("priority")]
    assert default == ["MODEL", "PHASE", "DRIFT", "OUTLIERS", "ACCURACY", "AGE"]
    assert cols["MODEL"]["jsonPath"] == ".status.model"
    assert cols["PHASE"]["jsonPath"] == ".status.phase"
    assert (cols["DRIFT"]["jsonPath"], cols["DRIFT"]["type"]) == (".status.drift.detected", "boolean")
    assert (cols["OUTLIERS"]["jsonPath"], cols["OUTLIERS"]["type"]) == (".status.outliers.rate", "number")
    assert (cols["ACCURACY"]["jsonPath"], cols["ACCURACY"]["type"]) == (".status.metrics.accuracy", "number")
    assert (cols["AGE"]["jsonPath"], cols["AGE"]["type"]) == (".metadata.creationTimestamp", "date")
    # every status path a column reads exists in the status schema
    for col in cols.values():
        path = col["jsonPath"].lstrip(".").split(".")
        if path[0] != "status":
            continue
        node = SCHEMA
        for part in path:
            known = part in node.get("properties", {}) or isinstance(node.get("additionalProperties"), dict)
            assert known or node.get("x-kubernetes-preserve-unknown-fields"), col
            node = node.get("properties", {}).get(part) or node.get("additionalProperties") or {}


def test_the_crd_is_a_valid_kubernetes_object():
    kubernetes_validate.validate(CRD, "1.32", strict=True)


def _nodes(node: dict, path: str = "", inside_junctor: bool = False):
    yield path, node, inside_junctor
    for key in ("properties",):
        for k, v in (node.get(key) or {}).items():
            yield from _nodes(v, f"{path}.{k}", inside_junctor)
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]", inside_junctor)
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}", inside_junctor)
    for junctor in ("anyOf", "allOf", "oneOf"):
        for i, sub in enumerate(node.get(junctor) or []):
            yield from _nodes(sub, f"{path}<{junctor}{i}>", True)


def test_spec_blocks_are_described():
    """`kubectl explain modelmonitor.spec.<block>` has something to say for every block."""
    undocumented = [f"spec.{name}" for name, node in SPEC["properties"].items() if not node.get("description")]
    undocumented += [f"spec.detectors.{name}" for name, node in SPEC["properties"]["detectors"]["properties"].items()
                     if not node.get("description")]
    assert undocumented == []


def test_schema_is_structural():
    """What the API server requires of a CRD schema (apiextensions 'structural schema')."""
    for path, node, in_junctor in _nodes(SCHEMA):
        if in_junctor:
            assert set(node) <= {"type"}, f"{path}: only the int-or-string pattern may sit in anyOf"
            continue
        if node.get("x-kubernetes-int-or-string"):
            assert node.get("anyOf") == [{"type": "integer"}, {"type": "string"}], path
            continue
        if node.get("x-kubernetes-preserve-unknown-fields") and "type" not in node:
            continue
        assert node.get("type") in ("object", "array", "string", "integer", "number", "boolean"), path
        if "default" in node:
            errors = list(jsonschema.Draft7Validator(crdschema.openapi_to_jsonschema(node)).iter_errors(node["default"]))
            assert not errors, f"{path}: default {node['default']!r} invalid: {errors[0].message}"


# ----------------------------------------------------------------------------- against vigil.spec

MODEL_SCHEMA = ModelMonitorSpec.model_json_schema(by_alias=True)


def _resolve(node: dict) -> dict:
    if "$ref" in node:
        return MODEL_SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _unwrap_optional(node: dict) -> tuple[dict, bool]:
    """pydantic's Optional[X] is anyOf [X, null]: (X, nullable)."""
    options = node.get("anyOf")
    if options and any(o.get("type") == "null" for o in options):
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            merged = {**_resolve(rest[0]), **{k: v for k, v in node.items() if k != "anyOf"}}
            return merged, True
    return _resolve(node), False


def _compare(model: dict, crd: dict, path: str, problems: list) -> None:
    model, _ = _unwrap_optional(model)
    mtype = model.get("type")
    if "const" in model:
        model = {**model, "enum": [model["const"]]}
    ctype = crd.get("type")
    if mtype and ctype and mtype != ctype:
        problems.append(f"{path}: type {mtype} (model) vs {ctype} (CRD)")
    if "enum" in model and sorted(model["enum"]) != sorted(crd.get("enum") or []):
        problems.append(f"{path}: enum {model['enum']} vs {crd.get('enum')}")
    if "default" in model and model["default"] is not None and not isinstance(model["default"], (dict, list)):
        if crd.get("default") != model["default"]:
            problems.append(f"{path}: default {model['default']!r} (model) vs {crd.get('default')!r} (CRD)")
    for bound in ("minimum", "maximum", "minItems"):
        if bound in model and crd.get(bound) != model[bound]:
            problems.append(f"{path}: {bound} {model[bound]} vs {crd.get(bound)}")
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in model and not (crd.get(bound) is True and crd.get(limit) == model[bound]):
            problems.append(f"{path}: {bound} {model[bound]} vs {crd.get(bound)}/{crd.get(limit)}")
    if mtype == "object" and "properties" in model:
        mprops, cprops = model["properties"], crd.get("properties") or {}
        for name in sorted(set(mprops) | set(cprops)):
            if name not in cprops:
                problems.append(f"{path}.{name}: in the model, missing from the CRD")
            elif name not in mprops:
                problems.append(f"{path}.{name}: in the CRD, unknown to the model")
            else:
                _compare(mprops[name], cprops[name], f"{path}.{name}", problems)
        if sorted(model.get("required") or []) != sorted(crd.get("required") or []):
            problems.append(f"{path}: required {model.get('required')} vs {crd.get('required')}")
    if mtype == "array" and isinstance(model.get("items"), dict) and "type" in model["items"]:
        _compare(model["items"], crd.get("items") or {}, f"{path}[]", problems)


def test_every_spec_field_matches_the_models():
    problems: list[str] = []
    _compare(MODEL_SCHEMA, SPEC, "spec", problems)
    assert problems == []


def test_the_comparison_notices_a_difference():
    """The cross-check is not vacuous: a drifted default, enum or missing field is reported."""
    crd = copy.deepcopy(SPEC)
    drift = crd["properties"]["detectors"]["properties"]["drift"]["properties"]
    drift["pValue"]["default"] = 0.1
    drift["correction"]["enum"] = ["bonferroni"]
    del crd["properties"]["logger"]["properties"]["queueSize"]
    problems: list[str] = []
    _compare(MODEL_SCHEMA, crd, "spec", problems)
    assert any("pValue: default" in p for p in problems)
    assert any("correction: enum" in p for p in problems)
    assert any("queueSize: in the model, missing" in p for p in problems)


# ----------------------------------------------------------------------------- CEL rules vs models

def _base() -> dict:
    return {"apiVersion": "vigil.dev/v1alpha1", "kind": "ModelMonitor", "metadata": {"name": "m"},
            "spec": {"model": {"storageUri": "pvc://models/m.joblib"}, "schema": {"featureNames": ["a", "b"]},
                     "reference": {"storageUri": "pvc://models/ref.csv"},
                     "detectors": {"drift": {}, "outlier": {}}}}


def _edit(path: str, value: Any) -> dict:
    doc = _base()
    node = doc
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    if value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return doc


_DELETE = object()


def _image(detectors: dict, shape: Optional[list] = None) -> dict:
    doc = _edit("spec.schema", {"shape": shape or [32, 32, 3]})
    doc["spec"]["detectors"] = {"drift": {"preprocess": {"type": "uae"}}, "outlier": {"type": "vae"}, **detectors}
    return doc


def _edits(changes: dict[str, Any]) -> dict:
    """`_edit` of several paths at once."""
    doc = _base()
    for path, value in changes.items():
        node = doc
        *parents, last = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return doc


CASES = [
    ("valid", _base(), None),
    ("both model sources", _edit("spec.model.endpoint", "http://m:8080"), "spec.model"),
    ("no model source", _edit("spec.model.storageUri", _DELETE), "spec.model"),
    ("endpoint only", _edit("spec.model", {"endpoint": "http://m:8080"}), None),
    ("training without reference", _edit("spec.reference", _DELETE), "spec.reference"),
    ("no training, no reference", _edit("spec.reference", _DELETE) | {"spec": {
        **_edit("spec.reference", _DELETE)["spec"],
        "detectors": {"drift": {"storageUri": "pvc://a/d"}, "outlier": {"storageUri": "pvc://a/o"},
                      "metrics": {}}}}, None),
    ("null means unset", _edit("spec.model", {"storageUri": "pvc://x/m", "endpoint": None, "image": None}), None),
    ("bad enum", _edit("spec.detectors.drift", {"correction": "holm"}), "spec.detectors.drift.correction"),
    ("p-value bound", _edit("spec.detectors.drift", {"pValue": 1.0}), "spec.detectors.drift.pValue"),
    ("unknown field", _edit("spec.detectors.drift", {"pvalue": 0.1}), "spec.detectors.drift"),
    ("bad duration", _edit("spec.detectors.drift", {"window": {"maxAge": "ten minutes"}}), "spec.detectors.drift.window.maxAge"),
    # every Duration field carries the pattern (these two had none in the CRD)
    ("bad quality duration", _edit("spec.detectors.quality", {"window": {"maxAge": "soon"}}),
     "spec.detectors.quality.window.maxAge"),
    ("bad capture rotate", _edit("spec.logger", {"capture": {"storageUri": "file:///tmp/c", "rotate": "hourly"}}),
     "spec.logger.capture.rotate"),
    ("capture rotate", _edit("spec.logger", {"capture": {"storageUri": "file:///tmp/c", "rotate": "90s"}}), None),
    ("empty features", _edit("spec.schema.featureNames", []), "spec.schema.featureNames"),
    ("negative replicas", _edit("spec.logger", {"replicas": -1}), "spec.logger.replicas"),
    ("bad scheme", _edit("spec.model.storageUri", "ftp://x/m"), "spec.model.storageUri"),
    # DESIGN §12: one pod holds a drift window or a metrics join
    ("two drift replicas", _edit("spec.detectors.drift", {"replicas": 2}), "spec.detectors.drift.replicas"),
    # … unless metrics runs over JetStream, each replica on a share of the partitions (DESIGN §13)
    ("two metrics replicas over HTTP", _edit("spec.detectors.metrics", {"replicas": 2}),
     "spec.detectors.metrics.replicas"),
    ("two metrics replicas over JetStream", _edits({"spec.transport": {"type": "jetstream"},
                                                    "spec.detectors.metrics": {"replicas": 2}}), None),
    ("more metrics replicas than partitions", _edits({"spec.transport": {"type": "jetstream", "partitions": 2},
                                                      "spec.detectors.metrics": {"replicas": 3}}),
     "spec.detectors.metrics.replicas"),
    ("five metrics replicas on the default four partitions", _edits({"spec.transport": {"type": "jetstream"},
                                                                     "spec.detectors.metrics": {"replicas": 5}}),
     "spec.detectors.metrics.replicas"),
    ("one drift replica", _edit("spec.detectors.drift", {"replicas": 1}), None),
    ("autoscaling", _edit("spec.logger", {"autoscaling": {"minReplicas": 2, "maxReplicas": 5}}), None),
    ("autoscaling min > max", _edit("spec.detectors.outlier", {"autoscaling": {"minReplicas": 4, "maxReplicas": 2}}),
     "spec.detectors.outlier.autoscaling"),
    ("autoscaling without max", _edit("spec.model", {"storageUri": "pvc://x/m", "autoscaling": {}}),
     "spec.model.autoscaling"),
    ("autoscaling on drift", _edit("spec.detectors.drift", {"autoscaling": {"maxReplicas": 2}}),
     "spec.detectors.drift"),
    ("pod controls", _edit("spec.pod", {"nodeSelector": {"a": "b"}, "tolerations": [{"key": "k"}],
                                        "imagePullSecrets": [{"name": "r"}]}), None),
    ("pull secret without name", _edit("spec.pod", {"imagePullSecrets": [{}]}), "spec.pod.imagePullSecrets"),
    ("artifacts on https", _edit("spec.storage", {"artifactsUri": "https://h/a"}), "spec.storage.artifactsUri"),
    # tensors (DESIGN §8): one instance's shape, every dimension at least 1; the explainer fits the schema
    ("image monitor", _image({"explainer": {"type": "anchor-image"}}), None),
    ("shape with a zero", _edit("spec.schema", {"shape": [32, 0, 3]}), "spec.schema.shape"),
    ("empty shape", _edit("spec.schema", {"shape": []}), "spec.schema.shape"),
    ("shape and featureNames", _edit("spec.schema", {"shape": [4], "featureNames": ["a"]}), "spec.schema"),
    ("anchor-image on rows", _edit("spec.detectors", {"explainer": {"type": "anchor-image"}}),
     "spec.detectors.explainer"),
    ("anchor-image on a 4-d shape", _image({"explainer": {"type": "anchor-image"}}, shape=[2, 32, 32, 3]),
     "spec.detectors.explainer"),
    ("anchor-tabular on images", _image({"explainer": {}}), "spec.detectors.explainer"),
]


@pytest.mark.parametrize("name,doc,field", CASES, ids=[c[0] for c in CASES])
def test_crd_and_models_agree(name, doc, field):
    crd_errors = crdschema.validate(doc, SCHEMA)
    try:
        monitor_from_dict(crdschema.prune_nulls(doc, SCHEMA))
        model_error: Optional[SpecError] = None
    except SpecError as e:
        model_error = e
    if field is None:
        assert crd_errors == [] and model_error is None, (crd_errors, model_error)
    else:
        assert crd_errors, f"the CRD accepts {name}"
        assert any(e.startswith(field) for e in crd_errors) or field.startswith(crd_errors[0].split(":")[0]), crd_errors
        assert model_error is not None, f"the models accept {name}"


def test_unknown_fields_rejected_under_strict_validation_pruned_otherwise():
    """A typo like `pvalue` fails `kubectl apply` (strict field validation, kubectl's default);
    clients that do not ask for it get it pruned, as from the API server."""
    doc = _edit("spec.detectors.drift", {"pvalue": 0.1})
    errors = crdschema.validate(doc, SCHEMA, strict=True)
    assert errors == ['spec.detectors.drift: unknown field "pvalue"']
    assert crdschema.validate(doc, SCHEMA, strict=False) == []
    assert crdschema.prune_unknown(doc, SCHEMA)["spec"]["detectors"]["drift"] == {}


# ----------------------------------------------------------------------------- examples

def test_there_are_examples():
    assert {p.name for p in EXAMPLES} >= {"iris-monitor.yaml", "endpoint-monitor.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates_against_crd_and_models(path):
    docs = monitors_in(path)
    assert docs, f"{path.name} holds no ModelMonitor"
    for doc in docs:
        assert crdschema.validate(doc, SCHEMA) == []
        monitor_from_dict(doc)
