"""The benchmarks in quick mode: each one runs and produces numbers (nothing timed is
asserted: CI machines are noisy). The full runs are `make bench`.

About 40 s on an idle 2-CPU machine (six gunicorn starts and a small seed); the generous
subprocess timeout is for shared, overloaded CI hosts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.bench
@pytest.mark.postgres
def test_every_benchmark_runs_in_quick_mode(tmp_path: Path) -> None:
    admin = os.environ.get("TEST_DATABASE_URL")
    if not admin:
        pytest.skip("TEST_DATABASE_URL is not set (the benchmarks need PostgreSQL)")
    env = dict(os.environ, BENCH_DATABASE_URL=admin, BENCH_OUT=str(tmp_path))
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    payload = json.loads((tmp_path / "results-quick.json").read_text())
    results = {r["name"]: r for r in payload["results"]}
    # How fast the machine was, at the start and at the end (runs on other days compare).
    speed = [float(v) for k, v in payload["machine"].items() if k.startswith("reference work")]
    assert len(speed) == 2 and all(ms > 0 for ms in speed)
    assert set(results) == {
        "checkout",
        "api_checkout",
        "webhooks",
        "processing",
        "journey",
        "instances",
        "dashboard",
        "page",
        "memory",
        "streams",
        "deliveries",
    }
    for result in results.values():
        assert "error" not in result
        assert isinstance(result["ratio"], (int, float)) and result["ratio"] > 0

    checkout = results["checkout"]
    for run_ in (checkout["baseline_0ms"], checkout["latency_50ms"]):
        assert run_["ok"] > 0 and run_["rate"] > 0 and run_["p99_ms"] > 0
    assert checkout["gateway_metric_present"]
    api_checkout = results["api_checkout"]
    for run_ in (api_checkout["form"], api_checkout["api"]):
        assert run_["ok"] > 0 and run_["errors"] == 0 and run_["server_cpu_ms_per_op"] > 0
    webhooks = results["webhooks"]
    assert webhooks["kassa"]["ok"] > 0 and webhooks["baseline_bare_flask"]["ok"] > 0
    assert webhooks["all_acked_events_in_inbox"]
    processing = results["processing"]
    assert processing["all_as_expected"]
    for mode in ("inproc", "redis"):
        if "check" in processing[mode]:  # a broker that is not running is skipped
            assert processing[mode]["unprocessed_after_wait"] == 0
            assert (
                processing[mode]["check"]["refunds"]
                == processing[mode]["check"]["refunds_expected"]
            )
    assert "check" in processing["inproc"]
    journey = results["journey"]
    assert journey["run"]["errors"] == 0 and journey["run"]["journeys"] > 0
    assert journey["check"]["ok"] and journey["check"]["refunds_acked"] > 0
    # The same journey through the Stripe adapter against the fake (its hosted page, its
    # signed webhook), at 0 ms and at 250 ms: every journey paid once, refunds once.
    for key in ("latency_0ms", "latency_250ms"):
        stripe_run = journey["stripe"][key]
        assert stripe_run["run"]["errors"] == 0 and stripe_run["run"]["journeys"] > 0
        assert stripe_run["check"]["ok"] and stripe_run["check"]["refunds_acked"] > 0
        assert stripe_run["webhooks"]["webhooks_delivered"] >= stripe_run["run"]["journeys"]
        assert stripe_run["cpu_ms_per_journey"]["workers_ms"] > 0
    assert journey["stripe"]["ratio"] > 0
    for result in (checkout["baseline_0ms"], webhooks["kassa"], webhooks["baseline_bare_flask"]):
        assert result["cpu_ms_per_op"]["workers_ms"] >= 0
    dashboard = results["dashboard"]
    assert dashboard["payments"] > 0 and all(q["p95_ms"] > 0 for q in dashboard["list_queries"])
    assert dashboard["csv"]["rows"] >= dashboard["payments"]  # quick runs share a database
    assert dashboard["cpu_ms_per_op"]["total_ms"] > 0
    assert dashboard["csv"]["cpu_ms_per_1000_rows"]["total_ms"] >= 0
    assert results["page"]["total_raw_bytes"] > 0
    assert results["page"]["cpu_ms_per_op"]["workers_ms"] >= 0
    assert results["memory"]["rss_mb_after_requests"]
    assert results["memory"]["cpu_ms_per_op"]["total_ms"] > 0
    streams = results["streams"]
    assert streams["checkout_with_streams"]["ok"] > 0
    assert streams["publish_to_receive"]["received"] == streams["publish_to_receive"]["acked"] > 0
    assert results["deliveries"]["none_lost"]
