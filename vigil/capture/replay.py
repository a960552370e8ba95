"""`vigil replay CAPTURE_DIR --to URL | --monitor monitor.yaml [--speed N]`: backfill detectors from a capture.

Every captured event is re-sent as the binary-mode CloudEvent the logger sent (``cloudevents``
SDK), with its original ``ce-id``, type, time and extension attributes, so a detector that
already holds an event drops it as a duplicate (DESIGN §11): replaying twice, or into a
detector that saw the live traffic, counts nothing twice. Events go in the order they were
captured, one at a time (a drift window fills in the order the model saw its traffic, a
metrics join sees a response before its feedback as it did live).

- ``--to URL``: every event to one detector's ``POST /``;
- ``--monitor monitor.yaml``: through that monitor's HTTP sinks, as `vigil up` would wire the
  logger (each detector gets the kinds it consumes; ``--base-port`` as given to `vigil up`).
  JetStream is not a replay target yet: replay through HTTP to the detectors.

``--speed N`` keeps the captured gaps between events divided by N (0 or unset: as fast as
possible). Connection errors, timeouts, 408/425/429 and 5xx are retried (3 times, with
backoff); other answers count as failed. Progress goes to stderr; the last line on stdout is
``replayed: sent N, failed M (duplicates are dropped by the detectors)``; the exit status
is 1 when anything failed, 2 when the capture or the monitor cannot be read.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import httpx

from vigil.capture.reader import capture_files, iter_records
from vigil.capture.record import CaptureError, Record

RETRY_STATUS = frozenset({408, 425, 429})
RETRIES = 3


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    kinds: frozenset[str]


@dataclass
class Summary:
    sent: int = 0
    failed: int = 0
    skipped: int = 0  # events no target consumes
    errors: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        extra = f", skipped {self.skipped} (no target takes their kind)" if self.skipped else ""
        return f"replayed: sent {self.sent}, failed {self.failed}{extra} (duplicates are dropped by the detectors)"


def encode(record: Record) -> tuple[dict[str, str], bytes]:
    """The binary-mode HTTP message of a captured event (headers, body), as the logger sent it."""
    from cloudevents.core.bindings.http import to_binary
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    msg = to_binary(CloudEvent(record.attributes(), record.data), JSONFormat())
    return dict(msg.headers), msg.body


def monitor_targets(monitor_file: str, base_port: int) -> list[Target]:
    """The HTTP sinks the logger of `monitor_file` would send to under `vigil up --base-port`."""
    from vigil.local import local_plan
    from vigil.spec import load_monitor

    monitor = load_monitor(monitor_file)
    base = Path(monitor_file).resolve().parent
    plan, _ = local_plan(monitor, base, base / ".vigil" / monitor.name, base_port)
    logger = plan.get("logger")
    assert logger is not None
    return [Target(s.name, s.url, frozenset(s.types)) for s in logger.settings.sinks]


def _send(client: httpx.Client, target: Target, headers: dict[str, str], body: bytes) -> Optional[str]:
    """None when the target took the event, else why not."""
    why = ""
    for attempt in range(RETRIES + 1):
        if attempt:
            time.sleep(min(2.0, 0.1 * 2 ** (attempt - 1)))
        try:
            r = client.post(target.url, headers=headers, content=body)
        except httpx.HTTPError as e:
            why = f"{type(e).__name__}: {e}"
            continue
        if r.status_code < 300:
            return None
        why = f"HTTP {r.status_code}: {r.text[:200]}"
        if r.status_code < 500 and r.status_code not in RETRY_STATUS:
            return why
    return why


def replay(records: Iterable[Record], targets: list[Target], speed: float = 0.0, token: Optional[str] = None,
           progress=None, timeout: float = 30.0) -> Summary:
    """Send every record to each target that takes its kind; `progress(summary)` after each event."""
    from vigil.auth import auth_header

    summary = Summary()
    first: Optional[tuple[float, float]] = None  # (capture time, wall clock) of the first event
    with httpx.Client(timeout=timeout, headers=auth_header(token), trust_env=False) as client:
        for record in records:
            wanted = [t for t in targets if record.kind in t.kinds]
            if not wanted:
                summary.skipped += 1
                continue
            if speed > 0:
                at = record.time.timestamp()
                if first is None:
                    first = (at, time.monotonic())
                delay = first[1] + (at - first[0]) / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            headers, body = encode(record)
            for target in wanted:
                why = _send(client, target, headers, body)
                if why is None:
                    summary.sent += 1
                else:
                    summary.failed += 1
                    summary.errors[f"{target.name}: {why}"] = summary.errors.get(f"{target.name}: {why}", 0) + 1
            if progress is not None:
                progress(summary)
    return summary


class _Progress:
    """A status line on stderr at most every half second (a line per update when not a terminal: every 1,000)."""

    def __init__(self, files: int):
        self.files, self.tty, self.last = files, sys.stderr.isatty(), 0.0

    def __call__(self, s: Summary) -> None:
        n = s.sent + s.failed
        now = time.monotonic()
        if self.tty and now - self.last > 0.5:
            self.last = now
            print(f"\rreplaying {self.files} files: sent {s.sent}, failed {s.failed}", end="", file=sys.stderr)
        elif not self.tty and n % 1000 == 0:
            print(f"replaying: sent {s.sent}, failed {s.failed}", file=sys.stderr)

    def done(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def cmd_replay(args) -> int:
    from vigil.auth import read_token_file, token_from_env
    from vigil.spec import SpecError

    if args.speed is not None and args.speed < 0:
        print("error: --speed must be ≥ 0 (0: as fast as possible)", file=sys.stderr)
        return 2
    try:
        files = capture_files(args.capture)
        if args.to:
            if not args.to.startswith(("http://", "https://")):
                print(f"error: --to {args.to}: a detector URL, http(s)://HOST:PORT/", file=sys.stderr)
                return 2
            targets = [Target("detector", args.to, frozenset(("request", "response", "feedback")))]
        else:
            targets = monitor_targets(args.monitor, args.base_port)
            if not targets:
                print(f"error: {args.monitor} has no detector that consumes events", file=sys.stderr)
                return 2
        token = read_token_file(args.token_file) if args.token_file else token_from_env()
    except (CaptureError, SpecError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    kinds = args.kind or None
    print(f"replay: {len(files)} capture files from {args.capture} to "
          + ", ".join(f"{t.name} {t.url}" for t in targets), file=sys.stderr)
    progress = _Progress(len(files))
    try:
        summary = replay(iter_records(args.capture, kinds), targets, args.speed or 0.0, token, progress)
    except CaptureError as e:
        progress.done()
        print(f"error: {e}", file=sys.stderr)
        return 2
    progress.done()
    for why, n in sorted(summary.errors.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  {n} failed: {why}", file=sys.stderr)
    print(summary.line())
    return 1 if summary.failed else 0


def add_parser(sub) -> None:
    from vigil.plan import DEFAULT_BASE_PORT

    s = sub.add_parser("replay", help="re-send captured events (spec.logger.capture) to detectors as CloudEvents",
                       description="Re-send every captured event as the binary-mode CloudEvent the logger sent (same "
                                   "ce-id: detectors drop what they already hold), to one detector or through a "
                                   "monitor's sinks.")
    s.add_argument("capture", help="capture directory or file (local path, file:// or s3://)")
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", help="a detector's URL (its POST /), e.g. http://127.0.0.1:8083/")
    where.add_argument("--monitor", help="ModelMonitor YAML file: send through its logger's sinks, as vigil up wires them")
    s.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT, help="with --monitor: the base port of its vigil up")
    s.add_argument("--speed", type=float, help="replay N times faster than captured (0 or unset: as fast as possible)")
    s.add_argument("--kind", action="append", choices=("request", "response", "feedback"),
                   help="only these kinds (repeatable; default all)")
    s.add_argument("--token-file", help="file holding the shared bearer token (else $VIGIL_TOKEN)")
    s.set_defaults(func=cmd_replay)
