"""The Celery side of the jobs: the same registered tasks, on a broker.

Used when CELERY_BROKER_URL is set (Redis or RabbitMQ). Every function registered with
`@jobs.task(name)` becomes a Celery task of the same name that runs inside a Flask app
context. Tasks are acknowledged late and rejected (redelivered) when the worker dies, so
a task that was running when its worker was killed runs again on another one; they are
idempotent (row locks plus status checks), so running again never does anything twice.
Periodic tasks are scheduled by Celery beat (`celery -A app.jobs.worker beat`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import Celery, Task
from flask import Flask

from app import jobs

# name -> (task, setting with its interval in seconds)
PERIODIC: dict[str, tuple[str, str]] = {
    "reconcile": ("payments.reconcile", "RECONCILE_INTERVAL_SECONDS"),
    "expire-checkouts": ("checkouts.expire", "EXPIRE_INTERVAL_SECONDS"),
    "retry-webhooks": ("webhooks.retry_due", "WEBHOOK_RETRY_INTERVAL_SECONDS"),
    "resend-receipts": ("receipts.resend_pending", "RECEIPT_RESEND_INTERVAL_SECONDS"),
    "purge-idempotency-keys": ("api.purge_idempotency_keys", "IDEMPOTENCY_PURGE_INTERVAL_SECONDS"),
    "notify-merchants": ("notifications.sweep", "NOTIFY_INTERVAL_SECONDS"),
    "outgoing-webhooks": ("outgoing.sweep", "OUTGOING_WEBHOOK_INTERVAL_SECONDS"),
}


def make_celery(app: Flask) -> Celery[Any]:
    broker = app.config["CELERY_BROKER_URL"]

    class FlaskTask(Task[Any, Any]):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    Path(app.instance_path).mkdir(parents=True, exist_ok=True)  # beat's schedule file
    celery = Celery(app.import_name, task_cls=FlaskTask)
    celery.conf.update(
        broker_url=broker,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,  # tasks record their effects in the database
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_acks_late=True,  # ack after the task ran, not when it arrived
        task_reject_on_worker_lost=True,  # a killed worker's task goes back to the queue
        worker_prefetch_multiplier=1,  # never hold tasks another worker could run
        task_default_queue=app.config.get("CELERY_QUEUE") or "kassa",
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        # Redis redelivers unacknowledged tasks only after this (RabbitMQ: when the
        # worker's connection drops).
        broker_transport_options={
            "visibility_timeout": int(app.config.get("CELERY_VISIBILITY_TIMEOUT", 3600))
        },
        beat_schedule={
            key: {"task": task, "schedule": timedelta(seconds=int(app.config[setting]))}
            for key, (task, setting) in PERIODIC.items()
        },
        beat_schedule_filename=str(Path(app.instance_path) / "celerybeat-schedule"),
    )
    for name, fn in jobs.TASKS.items():
        # shared=False: each Celery app runs its own Flask app (tests build several).
        celery.task(name=name, shared=False)(_runner(name, fn))
    app.extensions["kassa_celery"] = celery
    return celery


def _runner(name: str, fn: Any) -> Any:
    def run(*args: Any) -> Any:
        result = fn(*args)
        return result if isinstance(result, str | int | list | type(None)) else None

    run.__name__ = name.replace(".", "_")
    run.__doc__ = fn.__doc__
    return run
