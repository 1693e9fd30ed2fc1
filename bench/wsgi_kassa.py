"""The production app plus the benchmark's gateway: `gunicorn -c gunicorn.conf.py
bench.wsgi_kassa:app`. BENCH_GATEWAY_URL points at bench.fake_gateway; with
BENCH_JOBS_REDIS jobs go to a Redis list for bench.broker's worker (a broker stand-in)."""

import os

from app import create_app
from app.gateways.instrumented import InstrumentedGateway
from app.observability import observe_gateway_call
from bench.gateway import BenchGateway

app = create_app(
    {"INSTANCE_PATH": os.environ["BENCH_INSTANCE_PATH"]}
    if os.environ.get("BENCH_INSTANCE_PATH")
    else None
)
if os.environ.get("BENCH_GATEWAY_URL"):
    # Registered like any configured gateway, timed like the others.
    app.extensions["kassa_gateways"]["benchpay"] = InstrumentedGateway(
        BenchGateway(os.environ["BENCH_GATEWAY_URL"]), observe_gateway_call
    )
if os.environ.get("BENCH_JOBS_REDIS"):
    from bench.broker import RedisListRunner

    app.extensions["kassa_jobs"] = RedisListRunner(app, os.environ["BENCH_JOBS_REDIS"])
