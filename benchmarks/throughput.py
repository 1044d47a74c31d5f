"""(b) Throughput and overhead: payco-batch against the bare loops it is built on.

A sandbox with no latency, 20,000 fresh PAID rows, no rate limit, concurrency 50, for:

- payco-batch, through its Python API (`batch.job.prepare` + `execute`, what the CLI runs)
  in a fresh process pinned to the client CPU: its sending phase (`send_rows`) in wall and
  CPU time, and the whole run (load, validation, journal, reports) as well;
- a bare httpx loop through `batch.client.open_http_client` (same limits and transport), 50
  asyncio workers doing only the POSTs with a fixed token;
- a bare aiohttp loop, the same way (aiohttp is installed with payco-batch, under httpx).

Each against a fresh sandbox, in turn, in every run. Goals: payco-batch's requests/s at
least 0.9 of bare httpx's; its CPU per row at most 1.2 times bare httpx's CPU per request.
payco-batch over bare aiohttp is reported without a goal.
"""

from __future__ import annotations

from benchmarks.common import (
    BenchmarkError,
    CaseResult,
    Context,
    at_least,
    at_most,
    fmt,
    ratios,
    write_orders,
)

CASE = "b"
NAME = "throughput"
TITLE = "Throughput and overhead: no latency, --rate 0, concurrency 50"
CONCURRENCY = 50
ROWS = {"full": 20000, "quick": 500}


def run(ctx: Context) -> CaseResult:
    rows = ROWS["quick" if ctx.quick else "full"]
    result = CaseResult(
        CASE,
        TITLE,
        {
            "rows": rows,
            "concurrency": CONCURRENCY,
            "rate": 0,
            "payco_batch": "Python API (batch.job.prepare + execute) in a fresh process on "
            "the client CPU; sending phase timed around send_rows",
            "event_loop": "asyncio's default loop for all three clients (payco-batch's)",
        },
    )
    timeout = 120 + rows / 50
    for i in range(ctx.runs):
        folder = ctx.folder(f"b{i}")
        input_path = write_orders(folder / "orders.csv", rows)
        figures: dict = {}
        for kind in ("payco", "httpx", "aiohttp"):
            with ctx.sandbox() as sandbox:
                args = {"input": str(input_path), "api_url": sandbox.url}
                args |= {"concurrency": CONCURRENCY, "rate": 0, "out": str(folder / "out")}
                cpu_before = sandbox.cpu_seconds()
                m = ctx.worker(kind, args, timeout=timeout)
                cpu_after = sandbox.cpu_seconds()
            r = m.result()
            requests = r["requests"]
            if kind == "payco" and r["outcomes"]["succeeded"] != rows:
                raise BenchmarkError(f"payco-batch did not succeed on every row: {r['outcomes']}")
            if kind != "payco" and r["failed"]:
                raise BenchmarkError(f"the bare {kind} loop had {r['failed']} failed requests")
            figures[kind] = {
                "rps": requests / r["send_wall_s"],
                "cpu_per_request_us": r["send_cpu_s"] / requests * 1e6,
                "send_wall_s": r["send_wall_s"],
                "send_cpu_s": r["send_cpu_s"],
                "process_wall_s": m.wall_s,
                "process_cpu_s": m.cpu_s,
                "sandbox_cpu_busy": None
                if cpu_before is None or cpu_after is None
                else (cpu_after - cpu_before) / r["send_wall_s"],
            }
            if kind == "payco":
                figures[kind] |= {
                    "end_to_end_rows_per_s": rows / r["total_wall_s"],
                    "prepare_wall_s": r["prepare_wall_s"],
                    "reports_wall_s": r["reports_wall_s"],
                    "process_cpu_per_row_us": m.cpu_s / rows * 1e6,
                }
        result.runs.append(figures)
        ctx.log(
            f"  (b) run {i + 1}/{ctx.runs}: payco-batch {figures['payco']['rps']:,.0f}, "
            f"bare httpx {figures['httpx']['rps']:,.0f}, "
            f"bare aiohttp {figures['aiohttp']['rps']:,.0f} req/s"
        )

    def per(kind: str, key: str) -> list:
        return [r[kind][key] for r in result.runs]

    result.add("payco-batch requests/s (sending)", per("payco", "rps"), "req/s")
    result.add("bare httpx requests/s", per("httpx", "rps"), "req/s")
    result.add("bare aiohttp requests/s", per("aiohttp", "rps"), "req/s")
    result.add(
        "payco-batch / bare httpx (req/s)",
        ratios(per("payco", "rps"), per("httpx", "rps")),
        "x",
        at_least(0.9),
    )
    result.add("payco-batch CPU per row (sending)", per("payco", "cpu_per_request_us"), "µs")
    result.add("bare httpx CPU per request", per("httpx", "cpu_per_request_us"), "µs")
    result.add("bare aiohttp CPU per request", per("aiohttp", "cpu_per_request_us"), "µs")
    result.add(
        "payco-batch CPU/row / bare httpx CPU/request",
        ratios(per("payco", "cpu_per_request_us"), per("httpx", "cpu_per_request_us")),
        "x",
        at_most(1.2),
    )
    result.add(
        "payco-batch / bare aiohttp (req/s)",
        ratios(per("payco", "rps"), per("aiohttp", "rps")),
        "x",
        note="reported, no goal",
    )
    result.add(
        "payco-batch rows/s end to end",
        per("payco", "end_to_end_rows_per_s"),
        "rows/s",
        note="prepare + sending + reports, in-process (interpreter start and imports excluded)",
    )
    result.add(
        "payco-batch process CPU per row",
        per("payco", "process_cpu_per_row_us"),
        "µs",
        note="the whole process: start, imports, load, validation, sending, reports",
    )
    result.add(
        "sandbox CPU busy",
        [_pct(r) for r in per("payco", "sandbox_cpu_busy")],
        "%",
        note="while payco-batch sent; for bare httpx "
        + " · ".join(fmt(_pct(v), "%") for v in per("httpx", "sandbox_cpu_busy"))
        + " %, for bare aiohttp "
        + " · ".join(fmt(_pct(v), "%") for v in per("aiohttp", "sandbox_cpu_busy"))
        + " %",
    )
    return result


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value
