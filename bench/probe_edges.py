"""Send the hand list of bad inputs to live Vigil services; print how each edge answered.

    python bench/probe_edges.py --logger http://127.0.0.1:8080 --model http://127.0.0.1:8081 \\
        --detector http://127.0.0.1:8083 --model-name iris

(``vigil up monitor.yaml`` gives these ports.) Every bad input must get a 4xx, never a
5xx, never a dropped connection. With ``--workdir DIR`` (the work dir of a running
``vigil up``: its ``run.json`` names the logger and each detector's pid) it also injects
faults while valid traffic flows through the logger: a poison request (400-digit integer)
followed by a valid one on a new connection, 100 times; an oversized body followed by a
valid one; and a kill -9 of each detector. A fault is survived when every valid request
got a 200 and a killed detector is ready again (new pid) within 30 s. The last line reads
``N bad inputs: X 4xx, 0 5xx; M faults: M survived`` and the exit status is 1 if anything
was not a 4xx or a fault was not survived. The same list (`bad_inputs`) is
what tests/test_edges.py sends to real servers, so a probe and the tests agree.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import httpx

_JSON = {"content-type": "application/json"}
_BIG_HEADER = {"x-padding": "a" * 100_000}


@dataclass
class Bad:
    name: str
    path: str  # relative to the service's base URL
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    raw_headers: list = field(default_factory=list)  # (name, value) pairs, duplicates allowed
    method: str = "POST"
    #: "4xx", or "violation": the data-quality detector's contract for bad *values* in a well-formed
    #: event — it keeps the event (2xx) and counts the problem in vigil_quality_violations_total
    #: (a body it cannot read as rows at all stays a 4xx).
    expect: str = "4xx"


def _j(doc) -> bytes:
    return json.dumps(doc).encode()


def _deep(depth: int, leaf: str = "1") -> bytes:
    return ("[" * depth + leaf + "]" * depth).encode()


def _json_bodies(wrap) -> list[tuple[str, bytes]]:
    """Bad JSON bodies for an endpoint reading instances; `wrap(rows_json)` builds its body."""
    huge = "9" * 400
    return [
        ("400-digit integer", wrap(f"[[{huge}, 1, 2, 3]]")),
        ("5000-digit integer", wrap(f"[[{'9' * 5000}, 1, 2, 3]]")),
        ("1e400 float literal", wrap("[[1e400, 1, 2, 3]]")),
        ("deep nesting 100000", _deep(100_000)),
        ("deep nesting 900 in instances", wrap(_deep(900).decode())),
        ("deep objects 5000", ('{"a":' * 5000 + "1" + "}" * 5000).encode()),
        ("JSON array body", b"[1, 2, 3]"),
        ("JSON string body", b'"instances"'),
        ("JSON null body", b"null"),
        ("JSON number body", b"12"),
        ("empty body", b""),
        ("not JSON", b"{not json"),
        ("invalid UTF-8", b'{"instances": [[1, 2, 3, "\xff\xfe"]]}'),
        ("NaN literal rows of strings", wrap('[["NaN", "x", 1, 2]]')),
        ("Infinity", wrap("[[Infinity, 1, 2, 3]]")),
        ("ragged rows", wrap("[[1, 2, 3, 4], [1, 2]]")),
        ("empty instances", wrap("[]")),
        ("3-D instances", wrap("[[[1, 2, 3, 4]]]")),
        ("booleans and objects", wrap('[[true, {"a": 1}, null, 2]]')),
        ("wrong feature count", wrap("[[1, 2]]")),
        ("V2 shape 1e400", _j({"inputs": [{"name": "x", "shape": [1e308 * 10], "datatype": "FP64", "data": [1]}]})
         .replace(b"Infinity", b"1e400")),
        ("V2 shape 10**30", _j({"inputs": [{"name": "x", "shape": [10**30, 4], "datatype": "FP64", "data": [1]}]})),
        ("V2 datatype object", _j({"inputs": [{"name": "x", "shape": [1, 4], "datatype": {"a": 1}, "data": [1] * 4}]})),
        ("V2 inputs of strings", _j({"inputs": ["x"]})),
        ("V2 inputs object", _j({"inputs": {"name": "x"}})),
        ("V2 data huge int", ('{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT64", '
                              f'"data": [{huge}, 1, 2, 3]}}]}}').encode()),
    ]


def _header_cases(path: str, good: bytes, ctype: str = "application/json") -> list[Bad]:
    return [
        Bad("gzip content-encoding", path, good, {"content-type": ctype, "content-encoding": "gzip"}),
        Bad("br content-encoding", path, good, {"content-type": ctype, "content-encoding": "br"}),
        Bad("conflicting content-type", path, good, raw_headers=[("content-type", ctype), ("content-type", "text/csv")]),
        Bad("conflicting x-request-id", path, good,
            raw_headers=[("content-type", ctype), ("x-request-id", "a"), ("x-request-id", "b")]),
        Bad("oversized headers", path, good, {"content-type": ctype, **_BIG_HEADER}),
        Bad("text/csv content type", path, b"1,2,3,4", {"content-type": "text/csv"}),
        Bad("body over the limit", path, b'{"instances": [' + b"[1,2,3,4]," * 3_500_000 + b"[1,2,3,4]]}",
            {"content-type": ctype}),
    ]


def inference_inputs(model_name: str, n_features: int = 4) -> list[Bad]:
    """Bad inputs for a model server's (or the logger's) V1 and V2 inference paths."""
    v1 = f"/v1/models/{model_name}:predict"
    v2 = f"/v2/models/{model_name}/infer"
    good = _j({"instances": [[1.0] * n_features]})
    out = [Bad(f"V1 {name}", v1, body, dict(_JSON)) for name, body in
           _json_bodies(lambda rows: f'{{"instances": {rows}}}'.encode())]
    out += [Bad(f"V2 {name}", v2, body, dict(_JSON)) for name, body in
            _json_bodies(lambda rows: f'{{"inputs": [{{"name": "x", "datatype": "FP64", "shape": [-1, {n_features}], '
                                      f'"data": {rows}}}]}}'.encode())
            if name != "3-D instances"]  # V2 data is reshaped to `shape`: nesting does not matter there
    out += [Bad(f"V1 {c.name}", c.path, c.body, c.headers, c.raw_headers) for c in _header_cases(v1, good)]
    out += [Bad("V2 unknown output", v2, _j({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, n_features],
                                                            "data": [1.0] * n_features}], "outputs": [{"name": 5}]}),
                dict(_JSON)),
            Bad("unknown model", "/v2/models/nope/infer", good, dict(_JSON)),
            Bad("unknown route", "/v2/nope/nope", good, dict(_JSON))]
    return out


def explain_inputs(n_features: int = 4) -> list[Bad]:
    """Bad inputs for the explainer's ``POST /explain`` (V1 or V2 bodies, like inference)."""
    good = _j({"instances": [[1.0] * n_features]})
    out = [Bad(f"explain V1 {name}", "/explain", body, dict(_JSON)) for name, body in
           _json_bodies(lambda rows: f'{{"instances": {rows}}}'.encode())]
    out += [Bad(f"explain V2 {name}", "/explain", body, dict(_JSON)) for name, body in
            _json_bodies(lambda rows: f'{{"inputs": [{{"name": "x", "datatype": "FP64", "shape": [-1, {n_features}], '
                                      f'"data": {rows}}}]}}'.encode())
            if name != "3-D instances"]
    out += [Bad(f"explain {c.name}", c.path, c.body, c.headers, c.raw_headers) for c in _header_cases("/explain", good)]
    return out


def feedback_inputs() -> list[Bad]:
    """Bad feedback for the logger's ``POST /feedback``."""
    fb = "/feedback"
    cases = {
        "truth NaN": b'{"inferenceId": "p1", "truth": NaN}',
        "truth unknown class": _j({"inferenceId": "p1", "truth": "no-such-class"}),
        "truth nested object": _j({"inferenceId": "p1", "truth": {"label": 1}}),
        "truth deep list": b'{"inferenceId": "p1", "truth": ' + _deep(900) + b"}",
        "truth boolean": _j({"inferenceId": "p1", "truth": True}),
        "truth huge integer": b'{"inferenceId": "p1", "truth": ' + b"9" * 400 + b"}",
        "truth index out of range": _j({"inferenceId": "p1", "truth": 99}),
        "response nested": b'{"inferenceId": "p1", "truth": 1, "response": ' + _deep(900) + b"}",
        "no truth": _j({"inferenceId": "p1"}),
        "no inference id": _j({"truth": 1}),
        "inference id object": _j({"inferenceId": {"a": 1}, "truth": 1}),
        "array body": b"[1]",
        "not JSON": b"{",
        "deep nesting": _deep(100_000),
        "empty": b"",
    }
    out = [Bad(f"feedback {k}", fb, v, dict(_JSON)) for k, v in cases.items()]
    out += [Bad(f"feedback {c.name}", fb, c.body, c.headers, c.raw_headers)
            for c in _header_cases(fb, _j({"inferenceId": "p1", "truth": 1}))]
    return out


def _ce_headers(**over) -> dict:
    h = {"content-type": "application/json", "ce-specversion": "1.0", "ce-id": str(uuid.uuid4()),
         "ce-source": "/probe", "ce-type": "dev.vigil.inference.request"}
    h.update(over)
    return {k: v for k, v in h.items() if v is not None}


def detector_inputs(n_features: int = 4, kind: str = "request") -> list[Bad]:
    """Bad CloudEvents for a detector's ``POST /``; bodies in events of `kind` (request: instances,
    response: predictions), the kind the detector consumes (others it acknowledges unread, 204)."""
    good = _j({"instances": [[1.0] * n_features]})
    key = "instances" if kind == "request" else "predictions"
    ce_type = f"dev.vigil.inference.{kind}"
    out = [Bad(f"{kind} event {name}", "/", body, _ce_headers(**{"ce-type": ce_type})) for name, body in
           _json_bodies(lambda rows: f'{{"{key}": {rows}}}'.encode())
           if not (kind == "response" and name == "wrong feature count")]  # predictions have no feature count
    structured = {"content-type": "application/cloudevents+json"}
    attrs = {"specversion": "1.0", "id": "s1", "source": "/probe", "type": "dev.vigil.inference.request"}
    out += [
        Bad("structured event that is an array", "/", b"[1, 2]", dict(structured)),
        Bad("structured event that is a string", "/", b'"event"', dict(structured)),
        Bad("structured event that is null", "/", b"null", dict(structured)),
        Bad("structured event deep", "/", _deep(100_000), dict(structured)),
        *[Bad(f"structured event without {a}", "/", _j({**{k: v for k, v in attrs.items() if k != a},
                                                          "data": {"instances": [[1.0] * n_features]}}),
              dict(structured)) for a in attrs],
        *[Bad(f"binary event without ce-{a}", "/", good, _ce_headers(**{f"ce-{a}": None})) for a in attrs],
        Bad("binary event with empty ce-id", "/", good, _ce_headers(**{"ce-id": ""})),
        Bad("bad ce-specversion", "/", good, _ce_headers(**{"ce-specversion": "9.9"})),
        Bad("bad ce-time", "/", good, _ce_headers(**{"ce-time": "yesterday"})),
        Bad("unknown event type", "/", good, _ce_headers(**{"ce-type": "com.example.other"})),
        Bad("batch mode", "/", b"[]", {"content-type": "application/cloudevents-batch+json"}),
        Bad("conflicting ce-id", "/", good, raw_headers=[*[(k, v) for k, v in _ce_headers().items() if k != "ce-id"],
                                                         ("ce-id", "a"), ("ce-id", "b")]),
    ]
    if kind == "response":  # a detector of responses (metrics) also reads feedback
        out += [Bad("feedback data not an object", "/", b"[1]", _ce_headers(**{"ce-type": "dev.vigil.inference.feedback"})),
                Bad("feedback truth NaN", "/", b'{"truth": NaN}',
                    _ce_headers(**{"ce-type": "dev.vigil.inference.feedback"})),
                Bad("response of objects", "/", _j({"predictions": [{"a": 1}]}), _ce_headers(**{"ce-type": ce_type}))]
    out += [Bad(f"event {c.name}", "/", c.body, {**_ce_headers(), **c.headers},
                [*([(k, v) for k, v in _ce_headers().items() if k != "content-type"] if c.raw_headers else []),
                 *c.raw_headers])
            for c in _header_cases("/", good)]
    return out


def send(client: httpx.Client, base: str, bad: Bad) -> Optional[int]:
    """The status `bad` got (None: the connection failed)."""
    headers = list(bad.raw_headers) or list(bad.headers.items())
    try:
        return client.request(bad.method, base.rstrip("/") + bad.path, content=bad.body, headers=headers).status_code
    except httpx.HTTPError:
        return None


def _violations(client: httpx.Client, base: str) -> float:
    text = client.get(base.rstrip("/") + "/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vigil_quality_violations_total{"))


def quality_cases(cases: list[Bad]) -> list[Bad]:
    """The quality detector's reading of a detector's bad-input list: an event whose data is a V1/V2
    body with bad values is kept and its values counted as violations; the rest stays a 4xx."""
    out = []
    for c in cases:
        value_level = c.name.startswith("request event ") and c.name != "request event body over the limit" \
            and c.body.lstrip().startswith(b'{"instances"') or c.name == "request event V2 data huge int"
        out.append(Bad(c.name, c.path, c.body, c.headers, c.raw_headers, c.method,
                       "violation" if value_level else c.expect))
    return out


def probe(targets: list[tuple[str, list[Bad]]]) -> tuple[int, int, int, list[str]]:
    """(cases sent, answered 4xx, kept and counted as quality violations, what was neither)."""
    n, fours, recorded, wrong = 0, 0, 0, []
    with httpx.Client(timeout=60) as client:
        for base, cases in targets:
            for bad in cases:
                before = _violations(client, base) if bad.expect == "violation" else 0.0
                status = send(client, base, bad)
                n += 1
                if bad.expect == "violation" and status is not None and 200 <= status < 300 \
                        and _violations(client, base) > before:
                    recorded += 1
                elif status is not None and 400 <= status < 500:
                    fours += 1
                else:
                    wrong.append(f"{base} {bad.name}: {status if status is not None else 'connection failed'}")
    return n, fours, recorded, wrong


# -- faults (with --workdir of a running `vigil up`) ----------------------------------------------

class _Traffic(threading.Thread):
    """Valid requests through the logger, one at a time, recording each status (None: failed)."""

    def __init__(self, url: str, body: bytes):
        super().__init__(daemon=True)
        self.url, self.body = url, body
        self.codes: list[Optional[int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.halt.is_set():
                try:
                    self.codes.append(client.post(self.url, content=self.body, headers=_JSON).status_code)
                except httpx.HTTPError:
                    self.codes.append(None)
                time.sleep(0.01)


def _poison_then_valid(url: str, poison: bytes, valid: bytes, times: int) -> list[str]:
    """Each round: a bad request, then a valid one on a new client connection; failures as text."""
    bad = []
    for i in range(times):
        with httpx.Client(timeout=30) as c:
            try:
                c.post(url, content=poison, headers=_JSON)
            except httpx.HTTPError:
                pass
        with httpx.Client(timeout=30) as c:
            try:
                code: Optional[int] = c.post(url, content=valid, headers=_JSON).status_code
            except httpx.HTTPError:
                code = None
        if code != 200:
            bad.append(f"round {i}: {code}")
    return bad


def _kill_detector(workdir: Path, name: str, traffic: _Traffic) -> Optional[str]:
    """kill -9 one component under traffic; None if it came back within 30 s and inference never failed."""
    run = json.loads((workdir / "run.json").read_text())
    pid, url = run["pids"][name], run["components"][name]
    before = len(traffic.codes)
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    while True:
        try:
            ready = httpx.get(url + "/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            ready = False
        if ready and json.loads((workdir / "run.json").read_text())["pids"][name] != pid:
            break
        if time.monotonic() > killed + 180:
            return f"{name} not back after 180 s"
        time.sleep(0.2)
    back = time.monotonic() - killed
    print(f"kill -9 {name}: back in {back:.1f} s")
    if back > 30:
        return f"{name} back in {back:.1f} s (over 30 s)"
    time.sleep(0.5)
    failed = [c for c in traffic.codes[before:] if c != 200]
    return f"{len(failed)} inference requests failed while {name} was down" if failed else None


def faults(workdir: Path, model_name: str, n_features: int) -> tuple[int, list[str]]:
    """Inject the fault list into a running `vigil up`; (number of faults, what was not survived)."""
    run = json.loads((workdir / "run.json").read_text())
    entry = run["components"]["logger"] + f"/v2/models/{model_name}/infer"
    valid = _j({"inputs": [{"name": "x", "shape": [1, n_features], "datatype": "FP64", "data": [1.0] * n_features}]})
    poison = b'{"instances": [[' + b"9" * 400 + b", 1.0" * (n_features - 1) + b"]]}"
    not_survived: list[str] = []
    n = 0
    for label, bad_body in (("poison (400-digit integer) then valid, x100", poison),
                            ("oversized body then valid, x3", b"[" + b"1," * (17 << 20) + b"1]")):
        n += 1
        times = 100 if "x100" in label else 3
        failures = _poison_then_valid(entry, bad_body, valid, times)
        if failures:
            not_survived.append(f"{label}: {len(failures)} valid requests failed ({failures[:3]})")
    traffic = _Traffic(entry, valid)
    traffic.start()
    try:
        for name in sorted(run["pids"]):
            if name in ("logger", "model"):
                continue  # the inference path itself: its death is not a detector fault
            n += 1
            problem = _kill_detector(workdir, name, traffic)
            if problem:
                not_survived.append(f"kill -9 {name}: {problem}")
    finally:
        traffic.halt.set()
        traffic.join(30)
    return n, not_survived


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--logger", help="request logger base URL")
    p.add_argument("--model", help="model server base URL")
    p.add_argument("--detector", action="append", default=[], help="detector base URL (repeatable)")
    p.add_argument("--model-name", default="model")
    p.add_argument("--features", type=int, default=4)
    p.add_argument("--workdir", type=Path, help="work dir of a running `vigil up`: also inject the fault list")
    a = p.parse_args(argv)
    if a.workdir:
        run = json.loads((a.workdir / "run.json").read_text())
        a.logger = a.logger or run["components"]["logger"]
        a.model = a.model or run["components"]["model"]
        a.detector = a.detector or [u for n, u in run["components"].items() if n not in ("logger", "model")]
    targets = []
    if a.model:
        targets.append((a.model, inference_inputs(a.model_name, a.features)))
    if a.logger:
        targets += [(a.logger, inference_inputs(a.model_name, a.features)), (a.logger, feedback_inputs())]
    for d in a.detector:  # each detector gets events of a kind it consumes
        if httpx.get(d.rstrip("/") + "/openapi.json", timeout=10).text.count('"/explain"'):
            targets.append((d, explain_inputs(a.features)))
        probe_event = Bad("valid request", "/", _j({"instances": [[1.0] * a.features]}), _ce_headers())
        with httpx.Client(timeout=30) as client:
            kind = "response" if send(client, d, probe_event) == 204 else "request"
        cases = detector_inputs(a.features, kind)
        if httpx.get(d.rstrip("/") + "/status", timeout=10).json().get("component") == "quality":
            cases = quality_cases(cases)
        targets.append((d, cases))
    if not targets:
        p.error("give at least one of --logger, --model, --detector")
    n, fours, recorded, wrong = probe(targets)
    for line in wrong:
        print("NOT 4xx:", line)
    fives = sum(1 for w in wrong if w.rsplit(": ", 1)[1].startswith("5"))
    line = (f"{n} bad inputs: {fours} 4xx, {fives} 5xx" + (f", {recorded} kept as quality violations" if recorded else "")
            + (f", {len(wrong) - fives} other" if len(wrong) > fives else ""))
    lost: list[str] = []
    if a.workdir:
        m, lost = faults(a.workdir, a.model_name, a.features)
        for problem in lost:
            print("NOT SURVIVED:", problem)
        line += f"; {m} faults: {m - len(lost)} survived"
    print(line)
    return 0 if not wrong and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
