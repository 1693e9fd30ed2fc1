"""Entry point for Celery: `celery -A app.jobs.worker worker` and `celery -A app.jobs.worker beat`.

Builds the Flask app from the environment (DATABASE_URL, CELERY_BROKER_URL, ...);
KASSA_INSTANCE_PATH, when set, is used as the instance folder (receipts' outbox and
beat's schedule file).
"""

from __future__ import annotations

import os

from app import create_app

_config = (
    {"INSTANCE_PATH": os.environ["KASSA_INSTANCE_PATH"]}
    if os.environ.get("KASSA_INSTANCE_PATH")
    else None
)
flask_app = create_app(_config)
if not flask_app.config.get("CELERY_BROKER_URL"):
    raise RuntimeError(
        "CELERY_BROKER_URL is not set: without a broker, jobs run in-process "
        "and no worker is needed"
    )
app = celery = flask_app.extensions["kassa_celery"]
