"""Vigil's Kubernetes API emulator for tests: kmock's `KubernetesEmulator` plus what an
operator and kubectl rely on (DESIGN.md §6).

kmock (by kopf's author) serves the Kubernetes REST shape from memory: discovery, list,
watch, get, create, merge-patch, delete. This subclass adds the API server behaviour the
operator depends on, each emulated explicitly and simply:

- object identity: ``metadata.uid``, ``creationTimestamp``, ``generation`` (bumped when
  anything but metadata/status changes) and a cluster-wide increasing ``resourceVersion``
  (not bumped by a no-op patch, like the real server);
- optimistic concurrency: a merge patch carrying a stale ``metadata.resourceVersion`` is
  refused with 409 Conflict; a JSON patch whose ``test`` op fails (kopf's guarded
  finalizer patches) with 422; creating an existing name with 409 AlreadyExists;
- the status subresource: ``PATCH …/status`` changes only ``.status`` and a patch of the
  main resource never does;
- ``generateName`` (kopf's Events use it);
- ``labelSelector`` on lists (the operator finds its children by label);
- custom resources validated against their CRD schema (OpenAPI + CEL, see
  `tests/crdschema.py`), answering 422 Invalid like the real server; nulls and unknown
  fields pruned (unknown fields refused under ``fieldValidation=Strict``, as kubectl asks);
- admission: ``admission`` callables ``(kind, obj) -> message or None`` see every created or
  patched object and deny it with 403, as a validating webhook or policy engine would;
- finalizers and a background garbage collector: deleting an object deletes the objects
  whose ``ownerReferences`` name its uid (``garbage_collect=True``, the default), so the
  owner references the operator sets are what cleans up, as in a cluster;
- for kubectl: an OpenAPI v3 document per custom resource group that declares the
  ``fieldValidation`` query parameter (so ``kubectl apply`` validates on the server, i.e.
  here), server-side printing (``Accept: …;as=Table``) with the CRD's
  ``additionalPrinterColumns``, and subresources without short names in discovery;
- RBAC for one identity: with ``rbac={token: rules}``, a request bearing that token is
  refused with 403 unless a rule (``apiGroups``/``resources``/``verbs``, as in a Role)
  allows its verb on its resource, so tests prove an operator needs no more than its
  declared rules. Other tokens (the test itself, kubectl) are cluster admins.

Still no controllers: nothing makes a Deployment's pods ready or a Job complete. Tests
play the controller-manager explicitly with `set_status`.
"""

from __future__ import annotations

import copy
import datetime
import re
import secrets
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

import aiohttp.web
import attrs
import jsonpatch
import kmock
import yaml
from kmock._internal import apps, dicts, enums, rendering

from tests import crdschema


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details={})


# ----------------------------------------------------------------------------- label selectors

_REQ = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(==|=|!=)\s*([\w.-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$")


def parse_selector(selector: str) -> list[tuple]:
    """'a=b,c!=d,e in (x,y),!f,g' -> [(key, op, values)] (equality- and set-based syntax)."""
    parts, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    parts.append(cur)
    out = []
    for part in filter(str.strip, parts):
        m = _REQ.match(part)
        if not m:
            raise ValueError(f"bad label selector {part!r}")
        neg, key, eq, val, setop, vals = m.groups()
        if neg:
            out.append((key, "!exists", ()))
        elif eq:
            out.append((key, "!=" if eq == "!=" else "=", (val,)))
        elif setop:
            out.append((key, setop, tuple(v.strip() for v in vals.split(",") if v.strip())))
        else:
            out.append((key, "exists", ()))
    return out


def matches(labels: dict, requirements: Iterable[tuple]) -> bool:
    for key, op, values in requirements:
        have = labels.get(key)
        ok = {"=": have == values[0] if values else False,
              "!=": have != values[0] if values else True,
              "in": have in values, "notin": have not in values,
              "exists": key in labels, "!exists": key not in labels}[op]
        if not ok:
            return False
    return True


# ----------------------------------------------------------------------------- the emulator

@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    crds: list = attrs.field(factory=list)  # CRD documents (dicts) or paths to them
    garbage_collect: bool = True
    validate: bool = True
    rbac: dict = attrs.field(factory=dict)  # bearer token -> list of RBAC rules
    admission: list = attrs.field(factory=list)  # (kind, object) -> denial message or None
    fast: bool = True  # serve resource requests without kmock's reaction matching (see _dispatch)
    _rv: int = attrs.field(default=0, init=False)
    _status_sub: set = attrs.field(factory=set, init=False)
    _schemas: dict = attrs.field(factory=dict, init=False)
    _columns: dict = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()
        for res, info in list(self.resources.items()):
            if "status" in info.subresources:
                self._status_sub.add(kmock.resource(res))
        for crd in self.crds:
            self.add_crd(crd)
        self.fallback["get /openapi/v3"] << self._serve_openapi_root
        self.fallback["get", re.compile(r"^/openapi/v3/apis/.+")] << self._serve_openapi_group

    def add_crd(self, crd) -> None:
        if not isinstance(crd, dict):
            crd = yaml.safe_load(Path(crd).read_text())
        names, group = crd["spec"]["names"], crd["spec"]["group"]
        for version in crd["spec"]["versions"]:
            res = kmock.resource(group, version["name"], names["plural"])
            subresources = set((version.get("subresources") or {}).keys())
            self.resources[res] = kmock.ResourceInfo(
                kind=names["kind"], singular=names.get("singular"), namespaced=crd["spec"]["scope"] == "Namespaced",
                shortnames=set(names.get("shortNames") or []), categories=set(names.get("categories") or []),
                subresources=subresources,
                verbs={"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"})
            if "status" in subresources:
                self._status_sub.add(res)
            self._schemas[res] = version["schema"]["openAPIV3Schema"]
            self._columns[res] = version.get("additionalPrinterColumns") or []

    # -- helpers for tests (what controllers would do) ------------------------------------

    def next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def get(self, resource: str, namespace: Optional[str], name: str) -> Optional[dict]:
        key = (kmock.resource(resource), namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def list(self, resource: str, namespace: Optional[str] = None, selector: str = "") -> list[dict]:
        res, reqs = kmock.resource(resource), parse_selector(selector)
        return [copy.deepcopy(o.raw) for (r, ns, _), o in self.objects.items()
                if r == res and not o.deleted and (namespace is None or ns == namespace)
                and matches((o.raw.get("metadata") or {}).get("labels") or {}, reqs)]

    async def set_status(self, resource: str, namespace: Optional[str], name: str, status: dict) -> dict:
        """Merge `status` into an object's status as its controller would (bumps resourceVersion,
        notifies watchers)."""
        key = (kmock.resource(resource), namespace, name)
        async with self._lock:
            cur = self.objects[key].raw
            new = copy.deepcopy(cur)
            new["status"] = {**(cur.get("status") or {}), **status}
            await self._store(key, cur, new, main=False)
        return self.get(resource, namespace, name)

    # -- the API semantics -----------------------------------------------------------------

    def _namespaced(self, res) -> bool:
        info = self.resources[res] if res in self.resources else None
        return bool(info and info.namespaced)

    def _check_schema(self, request, obj: dict) -> dict:
        """Validate a custom resource against its CRD; returns it as stored (nulls and, unless
        the client asked for strict field validation, unknown fields pruned)."""
        schema = self._schemas.get(request.resource)
        if schema is None or not self.validate:
            return obj
        strict = request.params.get("fieldValidation") == "Strict"
        errors = crdschema.validate(obj, schema, strict=strict)
        if errors:
            kind = obj.get("kind", "object")
            raise _error(422, "Invalid", f'{kind} "{obj.get("metadata", {}).get("name")}" is invalid: '
                                         + "; ".join(errors))
        return crdschema.prune_unknown(crdschema.prune_nulls(obj, schema), schema)

    def _admit(self, obj: dict) -> None:
        for check in self.admission:
            message = check(obj.get("kind"), obj)
            if message:
                raise _error(403, "Forbidden", f'admission webhook "policy.kmock" denied the request: {message}')

    async def _store(self, key, cur: dict, new: dict, main: bool) -> None:
        """Save a new version of an existing object (caller holds the lock)."""
        res = key[0]
        for k in ("uid", "creationTimestamp", "name", "namespace", "resourceVersion", "generation"):
            if k in cur.get("metadata", {}):
                new.setdefault("metadata", {})[k] = cur["metadata"][k]
        if new == cur:
            return  # a no-op changes nothing, not even the resourceVersion
        meta = new["metadata"]
        if main and {k: v for k, v in new.items() if k not in ("metadata", "status")} != \
                {k: v for k, v in cur.items() if k not in ("metadata", "status")}:
            meta["generation"] = int(cur["metadata"].get("generation", 1)) + 1
        meta["resourceVersion"] = self.next_rv()
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            await self._remove(key)
            return
        self.objects[key].history.append(new)
        await self._buses[res].put({"type": "MODIFIED", "object": copy.deepcopy(new)})

    async def _remove(self, key) -> None:
        """Delete an object now, then (garbage collector) everything it owns."""
        obj = self.objects[key]
        raw = copy.deepcopy(obj.last.raw)
        raw["metadata"]["resourceVersion"] = self.next_rv()
        obj.history.append(raw)  # the last seen state is what DELETE returns
        obj.delete()
        await self._buses[key[0]].put({"type": "DELETED", "object": raw})
        if self.garbage_collect:
            uid = raw["metadata"].get("uid")
            for dep_key, dep in list(self.objects.items()):
                if dep.deleted:
                    continue
                owners = (dep.raw.get("metadata") or {}).get("ownerReferences") or []
                if any(o.get("uid") == uid for o in owners):
                    await self._delete(dep_key)

    async def _delete(self, key) -> None:
        cur = self.objects[key].raw
        meta = cur.get("metadata", {})
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                new = copy.deepcopy(cur)
                new["metadata"]["deletionTimestamp"] = _now()
                new["metadata"]["resourceVersion"] = self.next_rv()
                self.objects[key].history.append(new)
                await self._buses[key[0]].put({"type": "MODIFIED", "object": copy.deepcopy(new)})
        else:
            await self._remove(key)

    async def _create(self, request) -> Any:
        res = request.resource
        obj = copy.deepcopy(request.data or {})
        meta = obj.setdefault("metadata", {})
        namespace = request.namespace or meta.get("namespace")
        if self._namespaced(res):
            meta["namespace"] = namespace = namespace or "default"
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise _error(422, "Invalid", "metadata.name or metadata.generateName is required")
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        key = (res, namespace, meta["name"])
        if key in self.objects and not self.objects[key].deleted:
            raise _error(409, "AlreadyExists", f'{obj.get("kind", "object")} "{meta["name"]}" already exists')
        if res in self._status_sub:
            obj.pop("status", None)
        obj = self._check_schema(request, obj)
        self._admit(obj)
        meta = obj["metadata"]
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion=self.next_rv(), generation=1)
        if key in self.objects:
            self.objects[key].history.append(obj)
        else:
            self.objects[key] = obj
        await self._buses[res].put({"type": "ADDED", "object": copy.deepcopy(obj)})
        evolved = attrs.evolve(request, namespace=namespace, name=meta["name"])
        # kmock matches reactions against the requests it has seen (by identity): swap ours in.
        for i, seen in enumerate(self._requests):
            if seen is request:
                self._requests[i] = evolved
        return evolved

    async def _patch(self, request) -> None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            raise kmock.KubernetesObjectNotFoundError()
        cur = self.objects[key].raw
        data = request.data
        if isinstance(data, list):  # RFC 6902 JSON patch, e.g. kopf's guarded finalizer edits
            try:
                new = jsonpatch.apply_patch(copy.deepcopy(cur), data)
            except jsonpatch.JsonPatchTestFailed as e:
                raise _error(422, "Invalid", f"the server rejected our request due to an error in our request: {e}") from e
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                raise _error(422, "Invalid", str(e)) from e
        elif isinstance(data, dict):  # RFC 7386 merge patch (strategic merge is treated the same)
            want = (data.get("metadata") or {}).get("resourceVersion")
            have = cur.get("metadata", {}).get("resourceVersion")
            if want is not None and str(want) != str(have):
                raise _error(409, "Conflict", f"Operation cannot be fulfilled on {request.resource.plural} "
                                              f'"{request.name}": the object has been modified; please apply '
                                              f"your changes to the latest version and try again")
            new = dict(dicts.merge_patch_dict(copy.deepcopy(cur), data))
        else:
            raise _error(400, "BadRequest", "the patch body must be a JSON object or array")
        new = copy.deepcopy(new)
        status_only = request.subresource == "status"
        if request.resource in self._status_sub:
            if status_only:
                kept = {k: v for k, v in cur.items() if k != "status"}
                new = {**kept, **({"status": new["status"]} if "status" in new else {})}
            elif "status" in cur:
                new["status"] = cur["status"]
            else:
                new.pop("status", None)
        new = self._check_schema(request, new)  # status writes are validated and pruned too
        if not status_only:
            self._admit(new)
        await self._store(key, cur, new, main=not status_only)

    def _authorize(self, request) -> None:
        auth = request.headers.get("Authorization") or request.headers.get("authorization") or ""
        token = auth.split(" ", 1)[1] if " " in auth else ""
        rules = self.rbac.get(token)
        res = request.resource
        if rules is None or res is None or res.plural is None:
            return  # not a restricted identity, or a discovery (non-resource) URL
        method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
        if method == "GET":
            verb = "watch" if request.params.get("watch") in ("true", "1") else ("get" if request.name else "list")
        else:
            verb = {"POST": "create", "PATCH": "patch", "PUT": "update",
                    "DELETE": "delete" if request.name else "deletecollection"}.get(method, method.lower())
        name = f"{res.plural}/{request.subresource}" if request.subresource else res.plural
        for rule in rules:
            if res.group in rule.get("apiGroups", ()) and name in rule.get("resources", ()) \
                    and (verb in rule.get("verbs", ()) or "*" in rule.get("verbs", ())):
                return
        group = f"{res.group}" if res.group else "core"
        raise _error(403, "Forbidden", f'cannot {verb} resource "{name}" in API group "{group}" (RBAC)')

    async def _handle(self, request) -> aiohttp.web.StreamResponse:
        self._authorize(request)
        res = request.resource
        action = request.action
        if res is not None and action in (enums.action.CREATE, enums.action.UPDATE, enums.action.DELETE) \
                and request.subresource in (None, "status"):
            if res not in self.resources:  # e.g. a CRD that is not installed
                raise kmock.KubernetesResourceNotFoundError()
            async with self._lock:
                if action == enums.action.CREATE:
                    request = await self._create(request)
                elif action == enums.action.UPDATE:
                    await self._patch(request)
                elif request.name is not None:
                    key = (res, request.namespace, request.name)
                    if key not in self.objects or self.objects[key].deleted:
                        raise kmock.KubernetesObjectNotFoundError()
                    await self._delete(key)
            # kmock's own readers render the response from the state set above.
            return await self._dispatch(request)
        if res is not None and res.plural and action in self._readers():
            return await self._dispatch(request)
        return await super()._handle(request)

    def _readers(self) -> dict:
        return {enums.action.CREATE: self._serve_create, enums.action.UPDATE: self._serve_update,
                enums.action.DELETE: self._serve_delete, enums.action.LIST: self._serve_list,
                enums.action.FETCH: self._serve_fetch, enums.action.WATCH: self._serve_watch}

    async def _dispatch(self, request) -> aiohttp.web.StreamResponse:
        """Serve a resource request with the emulator's own reader, straight away.

        kmock matches each request against its reactions by scanning every earlier request,
        which grows quadratically over a long run (an operator polls a lot). Resource requests
        go straight to the readers instead; kmock's DSL reactions (``kmock[...] << ...``) are
        therefore not consulted for them: set ``fast=False`` to use those.
        """
        reader = self._readers().get(request.action)
        if not self.fast or reader is None or (request.action == enums.action.DELETE and request.name is None):
            return await apps.RawHandler._handle(self, request)
        return await rendering.Response(payload=reader)(request)

    # -- kubectl ---------------------------------------------------------------------------------

    async def _serve_openapi_root(self, request) -> Any:
        groups = {(r.group, r.version) for r in self._schemas}
        return {"paths": {f"apis/{g}/{v}": {"serverRelativeURL": f"/openapi/v3/apis/{g}/{v}?hash={self._rv}"}
                          for g, v in sorted(groups)}}

    async def _serve_openapi_group(self, request) -> Any:
        _, _, _, _, group, version = request.url.path.split("/")[:6]
        doc: dict = {"openapi": "3.0.0", "info": {"title": "Kubernetes (kmock)", "version": "v1.32"},
                     "paths": {}, "components": {"schemas": {}}}
        for res, schema in self._schemas.items():
            if (res.group, res.version) != (group, version):
                continue
            info = self.resources[res]
            gvk = {"group": group, "version": version, "kind": info.kind}
            name = ".".join(reversed(group.split("."))) + f".{version}.{info.kind}"
            doc["components"]["schemas"][name] = {**schema, "x-kubernetes-group-version-kind": [gvk]}
            ref = {"$ref": f"#/components/schemas/{name}"}
            params = [{"name": n, "in": "query", "schema": {"type": "string"}}
                      for n in ("dryRun", "fieldManager", "fieldValidation")]
            op = {"x-kubernetes-group-version-kind": gvk, "parameters": params,
                  "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}}
            base = f"/apis/{group}/{version}/namespaces/{{namespace}}/{res.plural}"
            doc["paths"][base] = {"post": {**op, "x-kubernetes-action": "post"}}
            doc["paths"][base + "/{name}"] = {"patch": {**op, "x-kubernetes-action": "patch"},
                                              "put": {**op, "x-kubernetes-action": "put"}}
        return doc

    async def _serve_version(self, request) -> Any:
        data = await super()._serve_version(request)
        for entry in data.get("resources", []):
            if "/" in entry["name"]:  # subresources have no short names or categories
                entry["shortNames"], entry["categories"] = [], []
        return data

    def _wants_table(self, request) -> bool:
        accept = request.headers.get("Accept") or request.headers.get("accept") or ""
        return "as=Table" in accept and request.resource in self._columns

    def _table(self, request, items: list[dict]) -> dict:
        columns = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                    "description": "Name must be unique within a namespace."}]
        columns += [{"name": c["name"], "type": c["type"], "format": c.get("format", ""),
                     "description": c.get("description", ""), "priority": c.get("priority", 0)}
                    for c in self._columns[request.resource]]
        rows = []
        for obj in items:
            cells = [obj["metadata"]["name"]]
            for col in self._columns[request.resource]:
                value = _jsonpath(obj, col["jsonPath"])
                if col["type"] == "date" and isinstance(value, str):
                    value = _age(value)
                cells.append(value)
            meta = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
            rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                                     "metadata": meta}})
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": str(self._rv)},
                "columnDefinitions": columns, "rows": rows}

    async def _serve_fetch(self, request) -> Any:
        data = await super()._serve_fetch(request)
        return self._table(request, [data]) if self._wants_table(request) else data

    async def _serve_list(self, request) -> Any:
        data = await super()._serve_list(request)
        selector = request.params.get("labelSelector") or ""
        if selector:
            reqs = parse_selector(selector)
            data["items"] = [o for o in data["items"]
                             if matches((o.get("metadata") or {}).get("labels") or {}, reqs)]
        info = self.resources[request.resource] if request.resource in self.resources else None
        data["kind"] = f"{info.kind}List" if info and info.kind else "List"
        data["apiVersion"] = (f"{request.resource.group}/{request.resource.version}" if request.resource.group
                              else request.resource.version)
        data["metadata"] = {"resourceVersion": str(self._rv)}
        return self._table(request, data["items"]) if self._wants_table(request) else data


def _jsonpath(obj: Any, path: str) -> Any:
    """The dotted-field subset of JSONPath that printer columns use (``.status.drift.detected``)."""
    for part in path.strip().lstrip(".").split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _age(timestamp: str) -> str:
    """What the API server shows for a `date` column: a short human duration (``45s``, ``3m``)."""
    then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    s = max(0, int((datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()))
    if s < 120:
        return f"{s}s"
    if s < 600:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    if s < 3 * 3600:
        return f"{s // 60}m"
    return f"{s // 3600}h" if s < 48 * 3600 else f"{s // 86400}d"


def kubeconfig(url: str, path: Path, namespace: str = "default", token: str = "admin") -> Path:
    """A kubeconfig pointing kubectl / the kubernetes client / kopf at the emulator as `token`."""
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": str(url).rstrip("/")}}],
        "users": [{"name": "kmock", "user": {"token": token}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": namespace}}],
    }
    path.write_text(yaml.safe_dump(doc))
    return path
