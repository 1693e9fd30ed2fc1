"""Where the time of webhook processing goes: `python -m bench.profile_processing [N]`.

One process, its own PostgreSQL database: N open sandbox payments made with the checkout
code, their events (bench/processing.py's five patterns) received through the webhook
intake code, then every job that intake enqueued (webhooks.process, and what those
enqueue: receipts, the outbox relay...) run one after another under cProfile, as the
drainer or a Celery worker would run them. Prints the wall and CPU time per job and the
top functions by cumulative and by own time. The jobs are collected by a stand-in runner
(`app.extensions["kassa_jobs"]`, the same seam as bench/broker.py), so nothing runs early;
the held jobs of a `merge=True` task (webhooks.process_batch) run as one, up to the
drainer's MERGE_LIMIT ids, as the drainer runs a backlog.

Per job it also counts SQL round trips (statements plus BEGIN, COMMIT, ROLLBACK).
The profiler's clock is CPU time, not wall time (on a shared machine the wall clock
mostly measures the run queue). PROFILE_OFF=1: no profiler (its overhead inflates the CPU
figures), only the per-job CPU and round trips; PROFILE_SHOW_SQL=N prints the statements
of the first N jobs of each name; PROFILE_DUMP=file keeps the stats for pstats.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.harness import OUT, SECRET_KEY, WEBHOOK_SECRET, Database


class Collect:
    def __init__(self) -> None:
        self.jobs: list[tuple[str, tuple[Any, ...]]] = []

    def submit(self, name: str, args: tuple[Any, ...]) -> None:
        self.jobs.append((name, args))

    def wait_idle(self, timeout: float = 10.0) -> None:
        return None

    def shutdown(self) -> None:
        return None


def main(count: int) -> None:
    db = Database.create("prof")
    try:
        db.migrate_and_seed_demo()
        os.environ.update(SECRET_KEY=SECRET_KEY, SANDBOX_WEBHOOK_SECRET=WEBHOOK_SECRET)
        from app import create_app
        from app.jobs import TASKS

        try:
            from app.jobs import MERGE, Drainer
        except ImportError:  # before issue 21's batches: nothing merges
            MERGE, Drainer = set(), None  # type: ignore[assignment]
        from app.payments import events
        from app.payments.audit import CUSTOMER
        from app.payments.checkout import ItemRequest, create_checkout
        from bench import processing

        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": db.url,
                "INSTANCE_PATH": str(OUT / "instance-prof"),
                "SANDBOX_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "SANDBOX_DELIVER_WEBHOOKS": False,
                "LOG_LEVEL": "WARNING",
                "SCHEDULER_ENABLED": False,
                "RATELIMIT_ENABLED": False,
            }
        )
        collect = Collect()
        app.extensions["kassa_jobs"] = collect
        ids = []
        with app.test_request_context():
            for n in range(count):
                p = create_checkout(
                    [ItemRequest("tee-usd", 1)], f"prof{n}@example.com", "Prof", "sandbox", CUSTOMER
                )
                ids.append(p.public_id)
        payments = processing._open_payments(db, ids)
        path, total, _distinct = processing.build_events(payments, "prof")
        collect.jobs.clear()
        t0 = time.perf_counter()
        with app.test_request_context():
            for line in Path(path).read_text().splitlines():
                e = json.loads(line)
                events.receive("sandbox", e["body"].encode(), e["headers"])
        intake_s = time.perf_counter() - t0
        print(
            f"intake of {total} events, serial, in-process: {intake_s * 1000 / total:.2f} ms each"
        )
        from sqlalchemy import event as sa_event

        from app.extensions import db as app_db

        statements: Counter[str] = Counter()
        current = [""]
        with app.app_context():
            engine = app_db.engine

        show = int(os.environ.get("PROFILE_SHOW_SQL", "0"))  # print the SQL of N jobs a name
        shown: Counter[str] = Counter()

        @sa_event.listens_for(engine, "before_cursor_execute")
        def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements[current[0]] += 1
            if shown[current[0]] <= show and show:
                print(f"    [{current[0]}] {' '.join(statement.split())[:150]}")

        @sa_event.listens_for(engine, "begin")
        def _count_begin(*_args: Any) -> None:  # BEGIN, COMMIT and ROLLBACK are round trips too
            statements[current[0]] += 1

        @sa_event.listens_for(engine, "commit")
        def _count_commit(*_args: Any) -> None:
            statements[current[0]] += 1

        @sa_event.listens_for(engine, "rollback")
        def _count_rollback(*_args: Any) -> None:
            statements[current[0]] += 1

        # CPU time, not wall: on a shared machine the wall clock mostly measures the queue.
        profiler = cProfile.Profile(time.process_time)
        # PROFILE_OFF=1: CPU and round trips per job without the profiler's own overhead.
        profiling = not os.environ.get("PROFILE_OFF")
        per_job: Counter[str] = Counter()
        wall: Counter[str] = Counter()
        cpu: Counter[str] = Counter()
        done = 0
        while collect.jobs:
            name, args = collect.jobs.pop(0)
            if name in MERGE:
                # As the drainer runs a backlog: the held jobs of a merge task as one run.
                ids = list(args[0])
                while len(ids) < Drainer.MERGE_LIMIT and name in [n for n, _ in collect.jobs]:
                    at = next(i for i, (n, _) in enumerate(collect.jobs) if n == name)
                    ids.extend(collect.jobs.pop(at)[1][0])
                args = (tuple(ids),)
            shown[name] += 1
            if show and shown[name] <= show:
                print(f"  job {name}{args if len(str(args)) < 80 else ''}")
            current[0] = name
            w0, c0 = time.perf_counter(), time.process_time()
            with app.app_context():
                if profiling:
                    profiler.enable()
                try:
                    TASKS[name](*args)
                finally:
                    if profiling:
                        profiler.disable()
            wall[name] += time.perf_counter() - w0
            cpu[name] += time.process_time() - c0
            per_job[name] += 1
            done += 1
        print(f"{done} jobs run")
        for name, n in per_job.most_common():
            print(
                f"  {name}: {n} runs, wall {wall[name] * 1000 / n:.2f} ms each, "
                f"CPU {cpu[name] * 1000 / n:.2f} ms each, SQL round trips {statements[name]}"
                f" ({statements[name] / n:.1f} each)"
            )
        current[0] = ""
        with app.app_context():
            processed = app_db.session.execute(
                text("SELECT count(*) FROM webhook_events WHERE status = 'processed'")
            ).scalar_one()
        print(
            f"all jobs per processed event ({processed}): wall "
            f"{sum(wall.values()) * 1000 / processed:.2f} ms, CPU "
            f"{sum(cpu.values()) * 1000 / processed:.2f} ms (this process only), SQL round "
            f"trips (statements, BEGIN, COMMIT) {sum(statements.values()) / processed:.1f}"
        )
        if os.environ.get("PROFILE_DUMP"):  # for pstats: callers, callees...
            profiler.dump_stats(os.environ["PROFILE_DUMP"])
        if not profiling:
            return
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(30)
        print(out.getvalue())
    finally:
        db.drop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
