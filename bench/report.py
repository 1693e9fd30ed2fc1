"""bench/RESULTS.md from a full run's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


AGAINST = {
    "checkout": "the same checkouts with the gateway at 0 ms (rate at 250 ms / rate at 0 ms)",
    "api_checkout": "the storefront form's checkout on the same server (API rate / form rate)",
    "webhooks": "bare Flask on the same gunicorn settings (Kassa's intake rate / bare rate)",
    "processing": "the 1,000 applied events/s target (best applied rate / 1,000)",
    "journey": "journeys started (paid and checked / started; 1.0 = none lost)",
    "instances": "one instance of 2 workers, both behind HAProxy (2 x 1 worker / 1 x 2)",
    "dashboard": "the 50 ms budget (worst list p95 / 50 ms)",
    "page": "the 50 KB budget (bytes transferred / 50 KB)",
    "memory": "RSS after boot (RSS after N requests / at boot)",
    "streams": "checkout without streams (rate with 1,000 idle streams / without)",
    "deliveries": "the 500/s target (deliveries/s / 500)",
}


def _cpu_text(cpu: dict[str, Any] | None) -> str:
    if not cpu:
        return "not measured"
    parts = [f"{k[:-3]} {v}" for k, v in cpu.items() if k.endswith("_ms") and v is not None]
    return ", ".join(parts)


def _ratio_row(result: dict[str, Any]) -> list[Any]:
    name = result["name"]
    cpu_ratio = result.get("cpu_ratio", "")
    if name == "checkout":
        slow_key = next((k for k in result if k.startswith("latency_")), "")
        text = (
            f"0 ms: {_cpu_text(result['baseline_0ms'].get('cpu_ms_per_op'))}; latency: "
            f"{_cpu_text(result.get(slow_key, {}).get('cpu_ms_per_op'))}"
        )
    elif name == "api_checkout":
        api = result["api"].get("server_cpu_ms_per_op")
        form = result["form"].get("server_cpu_ms_per_op")
        text = f"API: server {api}; form: server {form}"
        if api and form:
            cpu_ratio = round(api / form, 3)
    elif name == "webhooks":
        text = (
            f"Kassa: {_cpu_text(result['kassa'].get('cpu_ms_per_op'))}; bare: "
            f"{_cpu_text(result['baseline_bare_flask'].get('cpu_ms_per_op'))}"
        )
    elif name == "processing":
        text = "; ".join(
            f"{m}: {_cpu_text(result[m].get('cpu_ms_per_applied_event'))}"
            for m in ("inproc", "redis", "rabbitmq")
            if isinstance(result.get(m), dict) and "cpu_ms_per_applied_event" in result[m]
        )
    elif name == "journey":
        text = _cpu_text(result.get("cpu_ms_per_journey"))
    elif name == "instances":
        text = "; ".join(
            f"{k}: {_cpu_text(v.get('cpu_ms_per_op'))}"
            for k, v in result.items()
            if isinstance(v, dict) and "rate" in v
        )
    elif name == "streams":
        text = (
            f"with streams: {_cpu_text(result['checkout_with_streams'].get('cpu_ms_per_op'))}; "
            f"without: {_cpu_text(result['checkout_without_streams'].get('cpu_ms_per_op'))}"
        )
    elif name in ("deliveries", "page", "memory"):
        text = _cpu_text(result.get("cpu_ms_per_op"))
    elif name == "dashboard":
        text = (
            f"per query: {_cpu_text(result.get('cpu_ms_per_op'))}; CSV per 1,000 rows: "
            f"{_cpu_text(result.get('csv', {}).get('cpu_ms_per_1000_rows'))}"
        )
    else:
        text = "not measured"
    return [name, result.get("ratio"), AGAINST.get(name, ""), cpu_ratio, text]


def write_report(payload: dict[str, Any], path: Path) -> None:
    from bench.__main__ import headline

    out = [
        "# Kassa benchmark results",
        "",
        (
            f"Run started {payload['started']} with `python -m bench` (full mode). Regenerate "
            "with `make bench`; numbers are from one run on the machine below, the app and "
            "its load generator sharing its CPUs."
        ),
        "",
        "## Ratios first (same-run baselines) and CPU per operation",
        "",
        (
            "Rates depend on the machine and on what else runs on it; these do much less. "
            "Each ratio compares two measurements of the same run; CPU ms per operation is "
            "the app's processes' CPU time (from /proc: gunicorn workers, Celery workers and "
            "this run's PostgreSQL backends, separately) over the operations done."
        ),
        "",
        _table(
            ["benchmark", "ratio", "against", "CPU ratio", "CPU ms/op (workers, PostgreSQL)"],
            [_ratio_row(r) for r in payload["results"] if "error" not in r],
        ),
        "",
        "## Machine",
        "",
        _table(["", ""], [[k, v] for k, v in payload["machine"].items()]),
        "",
        "## Summary",
        "",
    ]
    for result in payload["results"]:
        out.append(f"- {headline(result)}")
    for result in payload["results"]:
        name = result["name"]
        out += ["", f"## {name}", ""]
        if "load_average_1min" in result:
            la = result["load_average_1min"]
            out.append(
                f"Run {result.get('run_started', '')}; took {result.get('bench_seconds')}"
                f" s; 1-minute load average {la['before']} before, {la['after']} after "
                "(2 CPUs)."
            )
            out.append("")
        if "error" in result:
            out.append(f"Failed: `{result['error']}`")
            continue
        if name == "api_checkout":
            runs = [(k, v) for k, v in result.items() if isinstance(v, dict) and "rate" in v]
            out.append(
                _table(
                    ["run", "ok", "errors", "per second", "p50 ms", "p99 ms", "CPU ms/op"],
                    [
                        [
                            k,
                            v["ok"],
                            v["errors"],
                            v["rate"],
                            v["p50_ms"],
                            v["p99_ms"],
                            v.get("server_cpu_ms_per_op"),
                        ]
                        for k, v in runs
                    ],
                )
            )
            out.append("")
            out.append(
                f"Setup: {result.get('setup')}. Ratio (API rate / form rate, one run): "
                f"{result.get('ratio')}."
            )
        elif name in ("checkout", "webhooks"):
            runs = [(k, v) for k, v in result.items() if isinstance(v, dict) and "rate" in v]
            out.append(
                _table(
                    [
                        "run",
                        "ok",
                        "errors",
                        "seconds",
                        "per second",
                        "p50 ms",
                        "p95 ms",
                        "p99 ms",
                        "max ms",
                    ],
                    [
                        [
                            k,
                            v["ok"],
                            v["errors"],
                            v["seconds"],
                            v["rate"],
                            v["p50_ms"],
                            v["p95_ms"],
                            v["p99_ms"],
                            v["max_ms"],
                        ]
                        for k, v in runs
                    ],
                )
            )
            out.append("")
            out.append(f"Setup: {result.get('setup')}. Ratio: {result.get('ratio')}.")
            if name == "webhooks":
                for key in ("kassa", "kassa_with_broker"):
                    if key in result:
                        r = result[key]
                        out += [
                            "",
                            (
                                f"{key}: stored {r['stored']} (every acknowledged event: "
                                f"{r['all_acked_events_in_inbox']}); unprocessed after the wait:"
                                f" {r['unprocessed_after_wait']}; all processed "
                                f"{r['all_processed_after_s']} s after the first send "
                                f"({r['processed_per_s']}/s); outcomes {r['outcomes']}."
                            ),
                        ]
        elif name == "processing":
            rows = []
            for mode in ("inproc", "redis", "rabbitmq"):
                r = result.get(mode)
                if not isinstance(r, dict):
                    continue
                if "check" not in r:
                    rows.append([mode, r.get("skipped") or r.get("error")] + [""] * 8)
                    continue
                c, i = r["cpu_ms_per_applied_event"], r["intake"]
                rows.append(
                    [
                        mode,
                        r["stored"],
                        r["applied_per_s"],
                        i["rate"],
                        i["p99_ms"],
                        i["errors"],
                        c.get("web workers_ms"),
                        c.get("celery workers_ms"),
                        c.get("postgres backends_ms"),
                        r["check"]["payments_as_expected"],
                    ]
                )
            out.append(
                _table(
                    [
                        "mode",
                        "events stored",
                        "applied/s",
                        "intake/s",
                        "intake p99 ms",
                        "errors",
                        "CPU ms/event web",
                        "CPU ms/event celery",
                        "CPU ms/event PostgreSQL",
                        "payments as expected",
                    ],
                    rows,
                )
            )
            out += ["", f"Setup: {result.get('setup')}."]
            for mode in ("inproc", "redis", "rabbitmq"):
                r = result.get(mode)
                if isinstance(r, dict) and "check" in r:
                    out += [
                        "",
                        f"{mode}: rows {r['check']}; load at start {r.get('load_average_1min_at_start')}.",
                    ]
        elif name == "dashboard":
            out.append(f"{result['payments']} payments seeded in {result['seed_seconds']} s.")
            out.append("")
            out.append(f"Measured: {result.get('measured', 'SQL')}.")
            out.append("")
            out.append(
                _table(
                    ["payments list (page of 50)", "rows", "p50 ms", "p95 ms"],
                    [
                        [q["query"], q["rows"], q["p50_ms"], q["p95_ms"]]
                        for q in result["list_queries"]
                    ],
                )
            )
            ov = result["overview"]
            out += [
                "",
                (f"90-day overview ({ov['rows']}): p50 {ov['p50_ms']} ms, p95 {ov['p95_ms']} ms."),
                "",
                f"CSV export: {result['csv']}",
            ]
        elif name == "page":
            out.append(
                _table(
                    [
                        "resource",
                        "kind",
                        "status",
                        "uncompressed bytes",
                        "transferred bytes",
                        "encoding",
                        "render-blocking",
                    ],
                    [
                        [
                            i["url"],
                            i["kind"],
                            i["status"],
                            i["raw"],
                            i["transferred"],
                            i["encoding"],
                            i["blocking"],
                        ]
                        for i in result["items"]
                    ],
                )
            )
            out += [
                "",
                (
                    f"Total {result['total_transferred_bytes']} B transferred, "
                    f"{result['total_raw_bytes']} B uncompressed ({result['total_gzip_bytes']} B"
                    " if a proxy gzipped everything, pages included); render-blocking requests "
                    f"to other sites: {result['third_party_render_blocking'] or 'none'}; "
                    f"missing: {result['missing'] or 'none'}. Static files are gzipped by the "
                    "app (STATIC_GZIP); pages are not (BREACH)."
                ),
            ]
        elif name == "memory":
            out.append(
                f"After boot: {result['rss_mb_after_boot']} MB per worker; after "
                f"{result['requests']} requests ({result['errors']} errors): "
                f"{result['rss_mb_after_requests']} MB; worker class "
                f"{result.get('worker_class', 'gthread')}."
            )
    notes = path.parent / "NOTES.md"
    if notes.exists():
        out += ["", notes.read_text().strip()]
    path.write_text("\n".join(out) + "\n")
