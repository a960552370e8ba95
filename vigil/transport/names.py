"""The names on a monitor's JetStream stream (DESIGN §13), in one place for the logger and the detectors.

- stream ``VIGIL_<NAMESPACE>_<MONITOR>`` (upper case, ``-`` -> ``_``), subjects
  ``vigil.<namespace>.<monitor>.>``;
- events on ``vigil.<namespace>.<monitor>.<kind>.<partition>`` (kind: request, response,
  feedback; partition: a stable hash of the inference id modulo ``partitions``, so one
  inference's request, response and feedback share a partition);
- detector replies on ``vigil.<namespace>.<monitor>.detection.<component>``;
- message id (``Nats-Msg-Id``) ``<kind>:<inference id>`` for requests and responses and
  ``feedback:<inference id>:<feedback event id>`` for feedback: a logger retry is the same
  message (de-duplicated by the server), a feedback correction a new one;
- one durable consumer per detector, named after the component; a partitioned detector (metrics
  with several replicas) one per replica, replica ``i`` of ``n`` reading the partitions ``p`` with
  ``p % n == i`` (`replica_partitions`), named ``<component>-p<partitions>``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Optional


def stream_name(namespace: str, monitor: str) -> str:
    return f"VIGIL_{namespace}_{monitor}".upper().replace("-", "_").replace(".", "_")


def prefix(namespace: str, monitor: str) -> str:
    return f"vigil.{namespace}.{monitor}"


def partition_of(inference_id: Optional[str], partitions: int) -> int:
    """The partition of an inference: CRC-32 of its id (stable across processes, unlike hash())."""
    return zlib.crc32((inference_id or "").encode()) % max(1, partitions)


def event_subject(namespace: str, monitor: str, kind: str, inference_id: Optional[str], partitions: int) -> str:
    return f"{prefix(namespace, monitor)}.{kind}.{partition_of(inference_id, partitions)}"


def reply_subject(namespace: str, monitor: str, component: str) -> str:
    return f"{prefix(namespace, monitor)}.detection.{component}"


def message_id(kind: str, inference_id: str, event_id: str) -> str:
    if kind == "feedback":
        return f"feedback:{inference_id}:{event_id}"
    return f"{kind}:{inference_id}"


def filter_subjects(namespace: str, monitor: str, kinds: Iterable[str],
                    partitions: Optional[Iterable[int]] = None) -> list[str]:
    """What a consumer reads: every partition of its kinds, or only the given partitions."""
    base = prefix(namespace, monitor)
    if partitions is None:
        return [f"{base}.{kind}.*" for kind in kinds]
    return [f"{base}.{kind}.{p}" for kind in kinds for p in sorted(set(partitions))]


def replica_partitions(replica: int, replicas: int, partitions: int) -> tuple[int, ...]:
    """The partitions replica ``replica`` (0-based) of ``replicas`` consumes: every ``replicas``-th,
    so the replicas together read each partition exactly once (``replicas <= partitions``)."""
    if not 0 <= replica < replicas <= partitions:
        raise ValueError(f"replica {replica} of {replicas} has no share of {partitions} partitions")
    return tuple(range(replica, partitions, replicas))


def consumer_name(component: str, partitions: Optional[Iterable[int]] = None) -> str:
    if partitions is None:
        return component
    return f"{component}-p" + "-".join(str(p) for p in sorted(set(partitions)))
