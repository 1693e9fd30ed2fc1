"""bench/RESULTS.md from a full run's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


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
