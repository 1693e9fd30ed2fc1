"""Medium-size runs of checkout, api_checkout, webhooks and dashboard into one JSON file,
for before/after comparisons on a shared machine (bench/RESULTS.md, "Issue 16's figure").

`PYTHONPATH=. .venv/bin/python bench/medium.py OUT.json checkout,api_checkout,webhooks`
from the tree to measure (its app, its gunicorn.conf.py, its venv). The full settings
(200 customers, 250 ms, 64 senders, alternating rounds inside each benchmark) with 12 s per
measured run instead of 30 s, and 100,000 payments for the dashboard; the gateway is the
Stripe adapter against bench/fake_gateway.py. Run it from each tree in turn, interleaved
and rotated, and compare the medians; an older tree gets this bench/ copied in.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

from bench import dashboard, serving
from bench.harness import OUT, Database, reference_work_ms

MEDIUM = {30: 12, 20: 12, 180: 60, 1_000_000: 100_000}


class Medium(serving.Sizes):
    def pick(self, full: Any, quick: Any) -> Any:
        return MEDIUM.get(full, full) if isinstance(full, int) else full


BENCHES = {
    "checkout": serving.checkout_under_latency,
    "api_checkout": serving.api_vs_form_checkout,
    "webhooks": serving.webhook_intake,
    "dashboard": dashboard.run,
}


def main() -> None:
    out, names = sys.argv[1], sys.argv[2].split(",")
    serving.USE_STRIPE = True
    sizes = Medium(full=True)
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "tree": os.getcwd(),
        "started": time.strftime("%H:%M:%S"),
        "load_start": os.getloadavg(),
        "reference_work_ms_start": reference_work_ms(),
        "results": {},
    }
    db = Database.create("app")
    try:
        db.migrate_and_seed_demo()
        for name in names:
            t0, load = time.monotonic(), os.getloadavg()[0]
            try:
                result = BENCHES[name](db, sizes)
            except Exception as exc:  # noqa: BLE001 - report it and run the next one
                traceback.print_exc()
                result = {"error": repr(exc)}
            result["bench_seconds"] = round(time.monotonic() - t0, 1)
            result["load"] = [round(load, 2), round(os.getloadavg()[0], 2)]
            results["results"][name] = result
            print(name, "done", result["bench_seconds"], "s", flush=True)
    finally:
        serving.stop_shared()
        db.drop()
    results["reference_work_ms_end"] = reference_work_ms()
    results["ended"] = time.strftime("%H:%M:%S")
    with open(out, "w") as fh:
        json.dump(results, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
