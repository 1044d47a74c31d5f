"""(d) Naive baseline: payco-batch against a loop written like the official iamport client.

The official iamport Python client asks for a token (POST /users/getToken) before every
call and sends one call at a time. The naive loop (benchmarks/workers.py `naive`) does that
with an httpx.Client (one keep-alive connection): for each of 200 rows, getToken then the
status call. payco-batch's CLI, at its defaults except `--rate 0 --concurrency 50`, sends
ten times as many rows (2,000), so that its run is not dominated by its start. Both against
a fresh sandbox with `--latency 50`, in every run.

Compared as status changes per second while sending (rows per second; every row is one
status call for both): the naive loop's rows over its loop's wall time, payco-batch's
summary.json requests.per_second. Goal: payco-batch at least 45 times faster.
"""

from __future__ import annotations

from benchmarks.common import (
    BenchmarkError,
    CaseResult,
    Context,
    at_least,
    ratios,
    read_summary,
    write_orders,
)

CASE = "d"
NAME = "naive"
TITLE = "Naive baseline: a new token before every call, one at a time, --latency 50"
LATENCY_MS = 50
ROWS = {"full": (200, 2000), "quick": (10, 100)}  # (naive loop, payco-batch)
GOAL = 45.0


def run(ctx: Context) -> CaseResult:
    naive_rows, payco_rows = ROWS["quick" if ctx.quick else "full"]
    result = CaseResult(
        CASE,
        TITLE,
        {
            "latency_ms": LATENCY_MS,
            "naive_rows": naive_rows,
            "payco_batch_rows": payco_rows,
            "payco_batch_options": "--rate 0 --concurrency 50, other options at their defaults",
            "naive": "httpx.Client, sequential, POST /users/getToken before every status call",
            "compared": "rows (status changes) per second while sending",
        },
    )
    for i in range(ctx.runs):
        folder = ctx.folder(f"d{i}")
        naive_input = write_orders(folder / "naive.csv", naive_rows)
        payco_input = write_orders(folder / "payco.csv", payco_rows)
        with ctx.sandbox("--latency", str(LATENCY_MS)) as sandbox:
            naive = ctx.worker(
                "naive",
                {"input": str(naive_input), "api_url": sandbox.url},
                timeout=60 + naive_rows * 0.5,
            ).result()
        if naive["failed"]:
            raise BenchmarkError(f"the naive loop had {naive['failed']} failed rows")
        out = folder / "out"
        with ctx.sandbox("--latency", str(LATENCY_MS)) as sandbox:
            ctx.payco_batch(
                payco_input,
                out,
                "--rate",
                "0",
                "--concurrency",
                "50",
                api_url=sandbox.url,
                timeout=120 + payco_rows / 50,
            )
        summary = read_summary(out)
        figures = {
            "naive_rows_per_s": naive["per_second"],
            "naive_ms_per_row": naive["send_wall_s"] / naive_rows * 1000,
            "payco_rows_per_s": summary["requests"]["per_second"],
            "payco_succeeded": summary["outcomes"]["succeeded"],
        }
        result.runs.append(figures)
        ctx.log(
            f"  (d) run {i + 1}/{ctx.runs}: naive {figures['naive_rows_per_s']:.2f} rows/s, "
            f"payco-batch {figures['payco_rows_per_s']:,.0f} rows/s"
        )

    per = {key: [r[key] for r in result.runs] for key in result.runs[0]}
    result.add("naive loop rows/s", per["naive_rows_per_s"], "rows/s")
    result.add(
        "naive loop ms per row",
        per["naive_ms_per_row"],
        "ms",
        note="two round trips of 50 ms each, plus the client's time",
    )
    result.add("payco-batch rows/s", per["payco_rows_per_s"], "rows/s")
    result.add(
        "speed-up payco-batch / naive",
        ratios(per["payco_rows_per_s"], per["naive_rows_per_s"]),
        "x",
        at_least(GOAL),
    )
    return result
