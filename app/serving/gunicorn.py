"""gunicorn's server hooks for Kassa, installed by gunicorn.conf.py.

Standard library only at import: gunicorn.conf.py is read by the master, which must not
load the app (each worker builds its own after the fork, once gevent has patched it).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any


def on_starting(server: Any) -> None:
    """Start every deployment with an empty metrics directory (stale files would add up)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        # Only prometheus_client's own files: the directory may not be ours alone.
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the metrics (prometheus_client multiprocess)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    """The worker's app is built: hide everything made so far (modules, the app, mappers,
    compiled templates: ~140,000 objects) from the garbage collector. A full collection
    otherwise scans all of them, holding the interpreter lock for 30-40 ms and stalling
    every request of the worker; now it scans only what requests left behind."""
    gc.collect()
    gc.freeze()


def worker_int(worker: Any) -> None:
    """On SIGINT/SIGQUIT, let queued in-process jobs finish before the worker exits."""
    app = getattr(worker, "wsgi", None)
    runner = getattr(app, "extensions", {}).get("kassa_jobs") if app is not None else None
    if runner is not None:
        runner.wait_idle(timeout=5)
