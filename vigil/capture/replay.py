"""`vigil replay CAPTURE_DIR --to URL | --monitor monitor.yaml [--speed N]`: backfill detectors from a capture.

Every captured event is re-sent as the binary-mode CloudEvent the logger sent (``cloudevents``
SDK), with its original ``ce-id``, type, time and extension attributes, so a detector that
already holds an event drops it as a duplicate (DESIGN §11): replaying twice, or into a
detector that saw the live traffic, counts nothing twice. Events go in the order they were
captured, one at a time (a drift window fills in the order the model saw its traffic, a
metrics join sees a response before its feedback as it did live).

- ``--to URL``: every event to one detector's ``POST /``;
- ``--monitor monitor.yaml``: through that monitor's sinks, as `vigil up` would wire the
  logger (each detector gets the kinds it consumes; ``--base-port`` as given to `vigil up`):
  HTTP POSTs, or, with ``spec.transport.type: jetstream``, one publish per event to the
  monitor's stream with the logger's subject and message id (``--nats URL`` when the spec
  has no ``url``: the one `vigil status` shows), so the server drops what it holds within
  its duplicate window and the detectors' own de-duplication drops the rest.

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
    held: int = 0  # jetstream: publishes the stream already held (same message id)
    errors: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        extra = f", skipped {self.skipped} (no target takes their kind)" if self.skipped else ""
        held = f", {self.held} already in the stream" if self.held else ""
        return (f"replayed: sent {self.sent}, failed {self.failed}{extra}{held} "
                "(duplicates are dropped by the detectors)")

    def fail(self, where: str, why: str) -> None:
        self.failed += 1
        key = f"{where}: {why}"
        self.errors[key] = self.errors.get(key, 0) + 1


def encode(record: Record) -> tuple[dict[str, str], bytes]:
    """The binary-mode HTTP message of a captured event (headers, body), as the logger sent it."""
    from cloudevents.core.bindings.http import to_binary
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    msg = to_binary(CloudEvent(record.attributes(), record.data), JSONFormat())
    return dict(msg.headers), msg.body


def monitor_logger(monitor_file: str, base_port: int):
    """The `LoggerSettings` the logger of `monitor_file` runs with under `vigil up --base-port`, and
    the NATS URL its spec names (None: none, or HTTP)."""
    from vigil.local import local_plan
    from vigil.spec import load_monitor

    monitor = load_monitor(monitor_file)
    base = Path(monitor_file).resolve().parent
    plan, _ = local_plan(monitor, base, base / ".vigil" / monitor.name, base_port)
    logger = plan.get("logger")
    assert logger is not None
    return logger.settings, monitor.spec.transport.url


def monitor_targets(settings) -> list[Target]:
    """The logger's sinks (a JetStream monitor's are the detectors' consumers)."""
    return [Target(s.name, s.url, frozenset(s.types)) for s in settings.sinks]


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
    first: list[float] = []  # capture time and clock of the first event
    with httpx.Client(timeout=timeout, headers=auth_header(token), trust_env=False) as client:
        for record in records:
            wanted = [t for t in targets if record.kind in t.kinds]
            if not wanted:
                summary.skipped += 1
                continue
            delay = _pace(speed, record, first)
            if delay > 0:
                time.sleep(delay)
            headers, body = encode(record)
            for target in wanted:
                why = _send(client, target, headers, body)
                if why is None:
                    summary.sent += 1
                else:
                    summary.fail(target.name, why)
            if progress is not None:
                progress(summary)
    return summary


def _pace(speed: float, record: Record, first: list[float]) -> float:
    """Seconds to wait before `record` to keep the captured gaps divided by `speed` (0: none)."""
    if speed <= 0:
        return 0.0
    if not first:
        first += [record.time.timestamp(), time.monotonic()]
    return first[1] + (record.time.timestamp() - first[0]) / speed - time.monotonic()


async def replay_jetstream(records: Iterable[Record], settings, url: str, speed: float = 0.0,
                           progress=None) -> Summary:
    """Publish every record a consumer of the monitor takes to its stream, as the logger would
    (`vigil.transport.names`: subject by kind and inference id, message id)."""
    import asyncio

    import nats

    from vigil.transport import names
    from vigil.transport.jetstream import ConsumerSpec, ensure

    config = settings.transport.model_copy(update={"url": url})
    ns, monitor = settings.namespace, settings.monitor
    consumers = [ConsumerSpec(c.name, tuple(c.types)) for c in settings.sinks]
    kinds = {k for c in consumers for k in c.kinds}
    stream = names.stream_name(ns, monitor)
    summary = Summary()
    # no reconnecting here: a replay that loses its server reports the events that failed
    nc = await asyncio.wait_for(nats.connect(url, name=f"vigil-replay-{monitor}", connect_timeout=2,
                                             allow_reconnect=False), 10.0)
    try:
        js = nc.jetstream(timeout=10.0)
        await ensure(js, config, ns, monitor, consumers)
        first: list[float] = []
        for record in records:
            if record.kind not in kinds:
                summary.skipped += 1
                continue
            delay = _pace(speed, record, first)
            if delay > 0:
                await asyncio.sleep(delay)
            headers, body = encode(record)
            headers["Nats-Msg-Id"] = names.message_id(record.kind, record.inference_id, record.id)
            subject = names.event_subject(ns, monitor, record.kind, record.inference_id, config.partitions)
            for attempt in range(RETRIES + 1):
                if attempt:
                    await asyncio.sleep(min(2.0, 0.1 * 2 ** (attempt - 1)))
                try:
                    ack = await js.publish(subject, body, timeout=10.0, stream=stream, headers=headers)
                except Exception as e:  # noqa: BLE001 - nats-py's errors are many; the last one is reported
                    why = f"{type(e).__name__}: {e}"
                    continue
                summary.sent += 1
                summary.held += bool(ack.duplicate)
                break
            else:
                summary.fail("jetstream", why)
            if progress is not None:
                progress(summary)
    finally:
        await nc.close()
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
    settings, nats = None, None
    try:
        files = capture_files(args.capture)
        if args.to:
            if not args.to.startswith(("http://", "https://")):
                print(f"error: --to {args.to}: a detector URL, http(s)://HOST:PORT/", file=sys.stderr)
                return 2
            targets = [Target("detector", args.to, frozenset(("request", "response", "feedback")))]
        else:
            settings, spec_url = monitor_logger(args.monitor, args.base_port)
            targets = monitor_targets(settings)
            if not targets:
                print(f"error: {args.monitor} has no detector that consumes events", file=sys.stderr)
                return 2
            if settings.transport.jetstream:
                nats = args.nats or spec_url  # (the plan's url is a fresh port vigil up would take)
                if not nats:
                    print(f"error: {args.monitor} uses JetStream without spec.transport.url: pass --nats URL "
                          "(vigil status shows transport.url)", file=sys.stderr)
                    return 2
        token = read_token_file(args.token_file) if args.token_file else token_from_env()
    except (CaptureError, SpecError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    kinds = args.kind or None
    where = (f"the JetStream stream at {nats} ({', '.join(t.name for t in targets)})" if nats
             else ", ".join(f"{t.name} {t.url}" for t in targets))
    print(f"replay: {len(files)} capture files from {args.capture} to {where}", file=sys.stderr)
    progress = _Progress(len(files))
    try:
        if nats:
            import asyncio

            summary = asyncio.run(replay_jetstream(iter_records(args.capture, kinds), settings, nats,
                                                   args.speed or 0.0, progress))
        else:
            summary = replay(iter_records(args.capture, kinds), targets, args.speed or 0.0, token, progress)
    except CaptureError as e:
        progress.done()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - only the JetStream path gets here: nats-py's connect errors are many
        if not nats:
            raise
        progress.done()
        print(f"error: cannot publish to NATS at {nats}: {type(e).__name__}: {e}", file=sys.stderr)
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
    s.add_argument("--nats", help="with --monitor on JetStream: the NATS URL when the spec has none (vigil up's)")
    s.add_argument("--speed", type=float, help="replay N times faster than captured (0 or unset: as fast as possible)")
    s.add_argument("--kind", action="append", choices=("request", "response", "feedback"),
                   help="only these kinds (repeatable; default all)")
    s.add_argument("--token-file", help="file holding the shared bearer token (else $VIGIL_TOKEN)")
    s.set_defaults(func=cmd_replay)
