"""A broker stand-in for the webhook benchmark: the web process only pushes each job onto a
Redis list (what enqueueing to Celery costs), and a separate worker process pops and runs
them (what a Celery worker does), so acknowledging never waits on processing.

`python -m bench.broker URL` is the worker: it runs jobs until the list stays empty for
--idle seconds.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import redis
from flask import Flask

QUEUE = "kassa-bench-jobs"


class RedisListRunner:
    """Drop-in for app.jobs.JobRunner: submit() = LPUSH."""

    def __init__(self, app: Flask, url: str) -> None:
        self.app = app
        self.client = redis.Redis.from_url(url)

    def submit(self, name: str, args: tuple[Any, ...]) -> None:
        self.client.lpush(QUEUE, json.dumps([name, list(args)]))

    def wait_idle(self, timeout: float = 10.0) -> None:
        return None

    def shutdown(self) -> None:
        self.client.close()


def work(url: str, idle: float) -> int:
    from app import create_app
    from app.jobs import TASKS

    app = create_app(
        {"INSTANCE_PATH": os.environ["BENCH_INSTANCE_PATH"]}
        if os.environ.get("BENCH_INSTANCE_PATH")
        else None
    )
    client = redis.Redis.from_url(url)
    done = 0
    while True:
        item = client.brpop([QUEUE], timeout=idle)
        if item is None:
            return done
        name, args = json.loads(item[1])
        with app.app_context():
            try:
                TASKS[name](*args)
            except Exception:  # noqa: BLE001 - the task records it on its row
                print(f"job {name} failed", flush=True)
        done += 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--idle", type=float, default=3.0)
    args = parser.parse_args()
    print(work(args.url, args.idle))


if __name__ == "__main__":
    main()
