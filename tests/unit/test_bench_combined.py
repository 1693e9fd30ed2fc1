"""The checkout benchmark's full runs measure each setting twice; how two runs add up."""

from __future__ import annotations

from typing import Any

from bench.serving import _combined


def run(ok: int, seconds: float, p99: float, errors: int = 0) -> dict[str, Any]:
    return {
        "name": "checkout",
        "requests": ok + errors,
        "ok": ok,
        "errors": errors,
        "seconds": seconds,
        "rate": round(ok / seconds, 1),
        "p50_ms": p99 / 2,
        "p95_ms": p99 * 0.9,
        "p99_ms": p99,
        "max_ms": p99 * 1.2,
        "error_samples": ["503"] * errors,
    }


def test_the_rate_counts_every_request_over_every_second_and_percentiles_take_the_worse_run() -> (
    None
):
    both = _combined([run(3000, 30.0, 1800.0), run(4000, 20.0, 1500.0, errors=2)])
    assert both["rate"] == 140.0  # 7,000 over 50 s, not the mean of 100 and 200
    assert both["rates_per_run"] == [100.0, 200.0]
    assert both["ok"] == 7000 and both["errors"] == 2 and both["requests"] == 7002
    assert both["p99_ms"] == 1800.0 and both["p50_ms"] == 900.0
    assert both["error_samples"] == ["503", "503"]


def test_a_single_run_is_reported_as_it_is() -> None:
    one = run(300, 3.0, 40.0)
    assert _combined([one]) is one
