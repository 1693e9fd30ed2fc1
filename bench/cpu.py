"""CPU time of the app's processes, read from /proc (issue 21: figures that travel).

A rate depends on how fast and how busy the machine is; the CPU milliseconds the app's own
processes spent per operation depend much less on either. `CpuMeter` samples utime+stime
of named groups of processes (gunicorn master and workers, Celery workers, this run's
PostgreSQL backends, PostgreSQL's shared background processes) before and after a run.
A process that started during the run counts from zero; one that exited during it is lost
(the groups below hold long-lived processes: pooled backends, workers).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


def _ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """pid and its descendants."""
    found = [pid]
    for p in found:
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        found += [int(k) for k in kids]
    return found


def postgres_backends(database: str) -> list[int]:
    """This run's PostgreSQL backends (their process title names the database)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            cmd = _cmdline(int(entry))
            if cmd.startswith("postgres: ") and f" {database} " in cmd:
                pids.append(int(entry))
    return pids


def postgres_shared() -> list[int]:
    """PostgreSQL's background processes (WAL writer, checkpointer...): shared with every
    database on the server, so other sessions' work lands here too."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            cmd = _cmdline(int(entry))
            if cmd.startswith("postgres: ") and any(
                w in cmd for w in ("walwriter", "checkpointer", "background writer")
            ):
                pids.append(int(entry))
    return pids


class CpuMeter:
    """`meter = CpuMeter({"workers": lambda: [...], ...}); meter.start(); ...;
    meter.stop()` -> CPU seconds per group over the interval."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.before: dict[str, dict[int, int]] = {}
        self.seen: dict[str, dict[int, int]] = {}

    def _sample(self) -> dict[str, dict[int, int]]:
        out: dict[str, dict[int, int]] = {}
        for name, pids in self.groups.items():
            out[name] = {}
            for pid in pids():
                ticks = _ticks(pid)
                if ticks is not None:
                    out[name][pid] = ticks
        return out

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        spent: dict[str, float] = {}
        for name, now in after.items():
            was = self.before.get(name, {})
            spent[name] = sum(t - was.get(pid, 0) for pid, t in now.items()) / TICK
        return spent


def per_op(spent: dict[str, float], ops: int) -> dict[str, Any]:
    """CPU ms per operation by group, and in all."""
    if not ops:
        return {}
    out: dict[str, Any] = {f"{k}_ms": round(v * 1000 / ops, 3) for k, v in spent.items()}
    out["total_ms"] = round(sum(spent.values()) * 1000 / ops, 3)
    return out


def app_meter(server: Any, database: str, **more: Callable[[], list[int]]) -> CpuMeter:
    """A meter for one gunicorn server's processes and this run's PostgreSQL backends."""
    groups: dict[str, Callable[[], list[int]]] = {
        "workers": lambda: children(server.proc.pid) if server.proc else [],
        "postgres": lambda: postgres_backends(database),
    }
    groups.update(more)
    return CpuMeter(groups)


def measure(meter: CpuMeter, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a load generator run under the meter; the run's result gains `cpu_s` (seconds
    by group, the load generator's own as `client`) and `cpu_ms_per_op` (per ok request)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    meter.start()
    result = run()
    spent = meter.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent["client"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["cpu_s"] = {k: round(v, 3) for k, v in spent.items()}
    result["cpu_ms_per_op"] = per_op(
        {k: v for k, v in spent.items() if k != "client"}, result.get("ok", 0)
    )
    result["cpu_ms_per_op"]["client_ms"] = (
        round(spent["client"] * 1000 / result["ok"], 3) if result.get("ok") else None
    )
    return result


def combined_cpu(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU ms per op over several runs: every second of CPU over every ok request."""
    ok = sum(r.get("ok", 0) for r in runs)
    totals: dict[str, float] = {}
    for r in runs:
        for k, v in r.get("cpu_s", {}).items():
            totals[k] = totals.get(k, 0.0) + v
    client = totals.pop("client", None)
    out = per_op(totals, ok)
    if client is not None and ok:
        out["client_ms"] = round(client * 1000 / ok, 3)
    return out
