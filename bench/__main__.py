"""`python -m bench [--quick] [--only checkout,api_checkout,webhooks,dashboard,page,memory]`

Full runs (the default, `make bench`) write bench/RESULTS.md and bench/out/results.json;
quick runs (CI, tests/bench/) use small counts, write only bench/out/results-quick.json
and check nothing but that every benchmark ran and produced numbers.
Needs PostgreSQL: BENCH_DATABASE_URL or TEST_DATABASE_URL (an admin URL whose user may
create databases), else postgresql+psycopg://postgres@127.0.0.1:5432/postgres.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench import dashboard, instances, journey, live, processing, serving
from bench.harness import (
    OUT,
    REFERENCE_LABEL,
    ROOT,
    Database,
    machine,
    postgres_available,
    reference_work_ms,
)
from bench.report import write_report

BENCHES: dict[str, Callable[[Database, serving.Sizes], dict[str, Any]]] = {
    "checkout": serving.checkout_under_latency,
    "api_checkout": serving.api_vs_form_checkout,
    "webhooks": serving.webhook_intake,
    "processing": processing.run,
    "journey": journey.run,
    "instances": instances.run,
    "dashboard": dashboard.run,
    "page": serving.page_weight,
    "memory": serving.worker_memory,
    "streams": live.streams,
    "deliveries": live.deliveries,
}


def headline(result: dict[str, Any]) -> str:
    name = result["name"]
    if "error" in result:
        return f"{name}: FAILED {result['error']}"
    if name == "checkout":
        slow_key = next(k for k in result if k.startswith("latency_"))
        b, s = result["baseline_0ms"], result[slow_key]
        return (
            f"checkout: {s['rate']} sessions/s at {slow_key[8:]} (p50 {s['p50_ms']} ms, "
            f"p99 {s['p99_ms']} ms, errors {s['errors']}); baseline 0 ms {b['rate']}/s "
            f"(p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms, errors {b['errors']}); "
            f"ratio {result['ratio']}"
        )
    if name == "api_checkout":
        f, a = result["form"], result["api"]
        return (
            f"api checkout: {a['rate']}/s (p99 {a['p99_ms']} ms, {a['server_cpu_ms_per_op']} "
            f"CPU ms/op, errors {a['errors']}); form checkout {f['rate']}/s (p99 {f['p99_ms']} "
            f"ms, {f['server_cpu_ms_per_op']} CPU ms/op, errors {f['errors']}); "
            f"ratio {result['ratio']}"
        )
    if name == "webhooks":
        k, b = result["kassa"], result["baseline_bare_flask"]
        text = (
            f"webhooks: {k['rate']} events/s acked (p50 {k['p50_ms']} ms, p99 "
            f"{k['p99_ms']} ms, errors {k['errors']}; in-process processing, all processed "
            f"after {k['all_processed_after_s']} s)"
        )
        if "kassa_with_broker" in result:
            w = result["kassa_with_broker"]
            text += (
                f"; with a broker {w['rate']}/s (p50 {w['p50_ms']} ms, p99 {w['p99_ms']} "
                f"ms, errors {w['errors']}; worker done after {w['all_processed_after_s']} s)"
            )
        return text + (
            f"; every acked event in the inbox: {result['all_acked_events_in_inbox']}"
            f"; bare Flask {b['rate']}/s (p99 {b['p99_ms']} ms); ratio "
            f"{result['ratio']} (with broker {result.get('ratio_with_broker')})"
        )
    if name == "processing":
        parts = []
        for mode in ("inproc", "redis", "rabbitmq"):
            r = result.get(mode)
            if not isinstance(r, dict):
                continue
            if "skipped" in r or "error" in r:
                parts.append(f"{mode}: {r.get('skipped') or 'FAILED ' + r['error']}")
                continue
            cpu = r["cpu_ms_per_applied_event"]
            parts.append(
                f"{mode}: {r['applied_per_s']} applied/s ({r['stored']} events, intake "
                f"{r['intake']['rate']}/s p99 {r['intake']['p99_ms']} ms, errors "
                f"{r['intake']['errors']}; CPU ms/event {cpu.get('total_ms')}, as expected "
                f"{r['check']['payments_as_expected']})"
            )
        return (
            "processing (real events): "
            + "; ".join(parts)
            + f"; ratio to 1,000/s {result['ratio']}"
        )
    if name == "instances":
        parts = [
            f"{k}: {v['rate']}/s (p99 {v['p99_ms']} ms, errors {v['errors']}, CPU ms/checkout "
            f"{v['cpu_ms_per_op'].get('total_ms')})"
            for k, v in result.items()
            if isinstance(v, dict) and "rate" in v
        ]
        return (
            "instances (checkout via HAProxy): " + "; ".join(parts) + f"; ratio {result['ratio']}"
        )
    if name == "journey":
        text = "journey (sandbox): not run (BENCH_JOURNEY_MODES)"
        if "run" in result:
            r, c = result["run"], result["check"]
            steps = ", ".join(
                f"{k} p50/p95/p99 {v['p50_ms']}/{v['p95_ms']}/{v['p99_ms']} ms"
                for k, v in r["steps"].items()
            )
            text = (
                f"journey: {r['journeys']} journeys by {r['customers']} customers in "
                f"{r['seconds']} s = {r['rate']}/s, {r['requests_per_s']} requests/s, errors "
                f"{r['errors']}; paid exactly once and refunds once: {c['ok']} ({c}); {steps}"
            )
        stripe = result.get("stripe")
        if stripe:
            parts = []
            for key in ("latency_0ms", "latency_250ms"):
                s, sc = stripe[key]["run"], stripe[key]["check"]
                parts.append(
                    f"{key[8:]}: {s['journeys']} journeys = {s['rate']}/s, journey p50/p95/p99 "
                    f"{s['steps'].get('journey', {}).get('p50_ms')}/"
                    f"{s['steps'].get('journey', {}).get('p95_ms')}/"
                    f"{s['steps'].get('journey', {}).get('p99_ms')} ms, errors {s['errors']}, "
                    f"checks {sc['ok']}, CPU ms/journey "
                    f"{stripe[key]['cpu_ms_per_journey'].get('total_ms')}"
                )
            text += (
                "\njourney (stripe fake): "
                + "; ".join(parts)
                + f"; ratio 250 ms / 0 ms {stripe['ratio']}, CPU ratio {stripe['cpu_ratio']}"
            )
        return text
    if name == "dashboard":
        worst = max(q["p95_ms"] for q in result["list_queries"])
        return (
            f"dashboard ({result['payments']} payments): worst list p95 {worst} ms, "
            f"overview p95 {result['overview']['p95_ms']} ms, CSV {result['csv']['rows']} "
            f"rows, RSS growth {result['csv']['rss_growth_mb']} MB; CPU ms/query "
            f"{result.get('cpu_ms_per_op', {}).get('total_ms')}, CPU ms/1,000 CSV rows "
            f"{result['csv'].get('cpu_ms_per_1000_rows', {}).get('total_ms')}; "
            f"ratio (worst p95 / 50 ms) {result['ratio']}"
        )
    if name == "page":
        return (
            f"page weight: {result['total_transferred_bytes']} B transferred "
            f"({result['total_raw_bytes']} B uncompressed); third-party render-blocking: "
            f"{len(result['third_party_render_blocking'])}; CPU ms/request "
            f"{result.get('cpu_ms_per_op', {}).get('total_ms')}; ratio to 50 KB {result['ratio']}"
        )
    if name == "memory":
        return (
            f"memory: RSS per worker {result['rss_mb_after_requests']} MB after "
            f"{result['requests']} requests (boot {result['rss_mb_after_boot']} MB); CPU "
            f"ms/request {result.get('cpu_ms_per_op', {}).get('total_ms')}; ratio {result['ratio']}"
        )
    if name == "streams":
        p = result["publish_to_receive"]
        w, o = result["checkout_with_streams"], result["checkout_without_streams"]
        return (
            f"streams: checkout {w['rate']}/s with {result['setup']['idle streams']} idle SSE "
            f"streams held, {o['rate']}/s without (mean of {len(w.get('rates', [0]))} "
            f"interleaved runs each; ratio {result['ratio']}, per round "
            f"{result.get('pair_ratios')}; errors {w['errors']}/{o['errors']}); "
            f"publish-to-receive (state change's commit to the client) p50 {p['p50_ms']} ms, "
            f"p95 {p['p95_ms']} ms ({p['received']}/{p['paid']} received)"
        )
    if name == "deliveries":
        return (
            f"deliveries: {result['rate']} outgoing webhooks/s ({result['delivered']} in "
            f"{result['seconds']} s; sustained {result.get('sustained_rate')}/s over the "
            f"middle 80%, slowest 5 s {result.get('slowest_5s_rate')}/s), verified and none "
            f"lost: {result['none_lost']}; CPU ms/delivery "
            f"{result.get('cpu_ms_per_op', {}).get('total_ms')}; ratio to 500/s "
            f"{result['ratio']}"
        )
    return f"{name}: {result}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small counts (CI)")
    parser.add_argument("--only", default="", help="comma-separated subset of " + ",".join(BENCHES))
    parser.add_argument(
        "--payments",
        type=int,
        default=None,
        help="payments to seed for the dashboard bench (default 1,000,000)",
    )
    parser.add_argument(
        "--gateway",
        choices=["stripe", "bench"],
        default=None,
        help="checkout through the Stripe adapter (the official SDK; the "
        "default) or through bench/gateway.py (plain requests), both "
        "against bench/fake_gateway.py",
    )
    args = parser.parse_args(argv)
    serving.USE_STRIPE = (args.gateway == "stripe") if args.gateway else serving.stripe_available()
    if not postgres_available():
        print("bench: PostgreSQL is not reachable (set BENCH_DATABASE_URL)", file=sys.stderr)
        return 2
    names = [n for n in (args.only.split(",") if args.only else BENCHES) if n]
    sizes = serving.Sizes(full=not args.quick)
    if args.payments is not None:
        dashboard.PAYMENTS_OVERRIDE = args.payments
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.time()
    machine_info = machine()
    results: list[dict[str, Any]] = []
    db = Database.create("app")
    try:
        db.migrate_and_seed_demo()
        for name in names:
            t0 = time.monotonic()
            load_before = os.getloadavg()[0]
            print(f"== {name} ...", flush=True)
            try:
                result = BENCHES[name](db, sizes)
            except Exception as exc:  # noqa: BLE001 - report it and run the next one
                traceback.print_exc()
                result = {"name": name, "error": f"{type(exc).__name__}: {exc}"}
            result["bench_seconds"] = round(time.monotonic() - t0, 1)
            # Other work on the machine skews everything: say how busy it was.
            result["load_average_1min"] = {
                "before": round(load_before, 2),
                "after": round(os.getloadavg()[0], 2),
            }
            results.append(result)
            print(headline(result), flush=True)
    finally:
        serving.stop_shared()
        db.drop()
    payload = {
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "machine": machine_info,
        "results": results,
    }
    machine_info[REFERENCE_LABEL.format(when="at the end")] = str(reference_work_ms())
    for result in results:
        result["run_started"] = payload["started"]
    out = OUT / ("results-quick.json" if args.quick else "results.json")
    if not args.quick and args.only and out.exists():
        # A partial full run replaces its benchmarks in the last full results, keeps the rest.
        previous = json.loads(out.read_text())
        fresh = {r["name"] for r in results}
        kept = [r for r in previous.get("results", []) if r["name"] not in fresh]
        order = list(BENCHES)
        payload["results"] = sorted(kept + results, key=lambda r: order.index(r["name"]))
        payload["started"] = f"{previous.get('started')} (updated {payload['started']})"
    out.write_text(json.dumps(payload, indent=2, default=str))
    if not args.quick:
        write_report(payload, ROOT / "bench" / "RESULTS.md")
        print(f"wrote {ROOT / 'bench' / 'RESULTS.md'}")
    print(f"wrote {out}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
