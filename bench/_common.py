"""What the service benchmarks share: a service's CPU time and memory from /proc, stopping it,
reading a raw HTTP reply, and wrk runs.

Rates on a shared machine are lower bounds; events per CPU-second of the service (utime +
stime from ``/proc/PID/stat``) is the figure that stays put under load.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import time
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident memory of a process now (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def read_reply(reader) -> bytes:
    """Read one HTTP/1.1 response (headers, then a Content-Length body) from an asyncio stream;
    return its 3-digit status."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:"), 0)
    if length:
        await reader.readexactly(length)
    return head[9:12]


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM a service, SIGKILL it if it has not exited within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def pinned(cmd: list[str], cpu: str) -> list[str]:
    """`cmd` pinned to `cpu` with taskset (as it is when taskset is missing)."""
    return ["taskset", "-c", cpu, *cmd] if shutil.which("taskset") else cmd


def wrk(url: str, script: Path, duration: float, connections: int, cpu: str) -> dict:
    """One ``wrk`` run (one thread, `connections` keep-alive connections, Lua `script`) on `cpu`:
    requests, seconds, non-2xx, socket errors, the client's CPU share, latency avg and p99."""
    cmd = pinned(["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s", "--latency",
                  "-s", str(script), url + "/"], cpu)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    seconds = float(re.search(r"requests in ([\d.]+)(m?s)", out).group(1))
    unit = re.search(r"requests in [\d.]+(m?s)", out).group(1)
    seconds = seconds / 1000 if unit == "ms" else seconds
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    errors = re.search(r"Socket errors: (.*)", out)
    latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    return {"requests": total, "seconds": seconds, "non2xx": non2xx, "errors": errors.group(1) if errors else "",
            "client_cpu": cpu_used / wall, "latency_avg": latency.group(1) if latency else "?",
            "latency_p99": p99.group(1) if p99 else "?", "raw": out}
