"""Validate custom resources against a CRD the way the API server does, for tests.

- `openapi_to_jsonschema`: the CRD's OpenAPI v3 (Kubernetes dialect) as a JSON Schema
  that `jsonschema` can check: ``nullable``, boolean ``exclusiveMinimum/Maximum``,
  ``x-kubernetes-int-or-string`` and ``x-kubernetes-preserve-unknown-fields``.
- `prune_nulls`: the API server drops ``null`` for fields that are not ``nullable``
  before validating and defaulting; so do we.
- `unknown_fields` / `prune_unknown`: fields the schema does not know. The API server
  prunes them, or rejects them when the client asks for strict field validation
  (``fieldValidation=Strict``, what ``kubectl apply`` sends by default).
- `cel_errors`: evaluates the schema's ``x-kubernetes-validations`` rules with
  cel-python (``celpy``) at every node the document has.
- `validate`: all of the above; a list of ``path: message`` strings (empty = valid).

Used by the CRD tests and by the API emulator (`tests/kubeemu.py`) to answer 422 like a
real API server would. Defaulting is *not* emulated (the operator never relies on it).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, Optional

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
CRD_PATH = ROOT / "crds" / "modelmonitors.vigil.dev.yaml"


def load_crd(path: Path = CRD_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def version_schema(crd: dict, version: Optional[str] = None) -> dict:
    for v in crd["spec"]["versions"]:
        if version is None or v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(version)


def openapi_to_jsonschema(node: Any) -> Any:
    if isinstance(node, list):
        return [openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "exclusiveMinimum", "exclusiveMaximum"):
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {k: openapi_to_jsonschema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = openapi_to_jsonschema(value)
        else:
            out[key] = value
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if node.get(bound) is True and limit in node:
            out[bound] = out.pop(limit)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    return out


def _child(schema: dict, key: Any) -> Optional[dict]:
    if isinstance(key, int):
        return schema.get("items")
    props = schema.get("properties") or {}
    if key in props:
        return props[key]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def prune_nulls(doc: Any, schema: Optional[dict]) -> Any:
    """Drop null values of non-nullable fields (the API server does this before validation)."""
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            sub = _child(schema, k) if schema else None
            if v is None and not (sub or {}).get("nullable"):
                continue
            out[k] = prune_nulls(v, sub)
        return out
    if isinstance(doc, list):
        sub = (schema or {}).get("items")
        return [prune_nulls(v, sub) for v in doc]
    return doc


def _unknown(doc: Any, schema: Optional[dict], path: str, out: list, prune: bool) -> Any:
    if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return doc
    if isinstance(doc, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        result = {}
        for k, v in doc.items():
            here = f"{path}.{k}" if path else k
            # the API server never prunes an object's apiVersion, kind and metadata
            root = path == "" and k in ("apiVersion", "kind", "metadata")
            if props is not None and k not in props and not isinstance(extra, dict) and path != "metadata" \
                    and not root:
                out.append((path, k))
                if prune:
                    continue
            result[k] = _unknown(v, _child(schema, k), here, out, prune)
        return result
    if isinstance(doc, list):
        return [_unknown(v, schema.get("items"), f"{path}[{i}]", out, prune) for i, v in enumerate(doc)]
    return doc


def unknown_fields(doc: dict, schema: dict) -> list[str]:
    out: list = []
    _unknown(doc, schema, "", out, prune=False)
    return [f'{path or "<root>"}: unknown field "{key}"' for path, key in out]


def prune_unknown(doc: dict, schema: dict) -> dict:
    return _unknown(copy.deepcopy(doc), schema, "", [], prune=True)


def _walk_rules(doc: Any, schema: Optional[dict], path: str) -> Iterator[tuple[str, dict, Any]]:
    if not schema:
        return
    for rule in schema.get("x-kubernetes-validations") or []:
        yield path, rule, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _walk_rules(v, _child(schema, k), f"{path}.{k}" if path else k)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _walk_rules(v, schema.get("items"), f"{path}[{i}]")


@cache
def _program(rule: str):
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_errors(doc: dict, schema: dict) -> list[str]:
    import celpy

    errors = []
    for path, rule, value in _walk_rules(doc, schema, ""):
        ok = _program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)})
        if not bool(ok) or isinstance(ok, celpy.CELEvalError):
            where = path + rule.get("fieldPath", "")
            errors.append(f"{where}: {rule.get('message') or 'failed rule: ' + rule['rule']}")
    return errors


def validate(doc: dict, schema: Optional[dict] = None, cel: bool = True, strict: bool = True) -> list[str]:
    """Errors the API server would report for `doc` (empty list: valid). `strict`: unknown
    fields are errors (kubectl's default), else they are pruned first."""
    schema = schema if schema is not None else version_schema(load_crd())
    pruned = prune_nulls(copy.deepcopy(doc), schema)
    if strict:
        unknown = unknown_fields(pruned, schema)
        if unknown:
            return unknown
    else:
        pruned = prune_unknown(pruned, schema)
    validator = jsonschema.Draft7Validator(openapi_to_jsonschema(schema))
    errors = [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
              for e in sorted(validator.iter_errors(pruned), key=lambda e: list(map(str, e.absolute_path)))]
    if not errors and cel:
        errors = cel_errors(pruned, schema)
    return errors
