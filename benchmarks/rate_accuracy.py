"""(c) Rate accuracy: does `--rate R` give R requests/s, and never more than R + 1 in a second?

payco-batch's CLI sends about 10 s of rows at `--rate 200` (2,000 rows) and at `--rate 20`
(200 rows), its other options at their defaults, each against a fresh sandbox with no
faults. Achieved rate: summary.json's requests.per_second (status requests over the sending
time); goal 0.98..1.00 of the configured rate, compared at two decimals. The sandbox's own
`max_requests_in_1s` (the most requests it saw in any sliding 1-second window, the getToken
request included), read from /__sandbox__/stats after the run: goal at most R + 1.

Also reported: rows over the time between the first and the last answer, from the journal
(finished_at of each row): how evenly spaced the requests were, the start of the run aside.
"""

from __future__ import annotations

from benchmarks.common import (
    CaseResult,
    Context,
    Goal,
    at_most,
    completion_rate,
    read_summary,
    sandbox_stats,
    write_orders,
)

CASE = "c"
NAME = "rate"
TITLE = "Rate accuracy: --rate 200 and --rate 20, about 10 s each"
# (rate, rows): about 10 s each; quick: half a second each.
RATES = {"full": [(200, 2000), (20, 200)], "quick": [(200, 100), (20, 10)]}


def run(ctx: Context) -> CaseResult:
    plan = RATES["quick" if ctx.quick else "full"]
    result = CaseResult(
        CASE,
        TITLE,
        {
            "rates_and_rows": plan,
            "client": "payco-batch CLI as a subprocess, other options at their defaults "
            "(concurrency 8)",
            "sandbox": "fresh per run, no faults",
        },
    )
    for i in range(ctx.runs):
        figures: dict = {}
        for rate, rows in plan:
            folder = ctx.folder(f"c{i}-{rate}")
            input_path = write_orders(folder / "orders.csv", rows)
            out = folder / "out"
            with ctx.sandbox() as sandbox:
                ctx.payco_batch(
                    input_path,
                    out,
                    "--rate",
                    str(rate),
                    api_url=sandbox.url,
                    timeout=60 + 2 * rows / rate,
                )
                stats = sandbox_stats(sandbox.url)
            summary = read_summary(out)
            achieved = summary["requests"]["per_second"]
            figures[rate] = {
                "rows": rows,
                "achieved_rps": achieved,
                "ratio": achieved / rate,
                "max_requests_in_1s": stats["max_requests_in_1s"],
                "sandbox_requests": stats["requests"],
                "completion_rps": completion_rate(out),
                "succeeded": summary["outcomes"]["succeeded"],
            }
        result.runs.append({str(k): v for k, v in figures.items()})
        ctx.log(
            f"  (c) run {i + 1}/{ctx.runs}: "
            + ", ".join(
                f"--rate {rate}: {f['achieved_rps']:.2f} req/s, "
                f"max {f['max_requests_in_1s']} in 1 s"
                for rate, f in figures.items()
            )
        )

    for rate, _ in plan:
        mine = [r[str(rate)] for r in result.runs]
        result.add(
            f"--rate {rate}: achieved requests/s", [f["achieved_rps"] for f in mine], "req/s"
        )
        result.add(
            f"--rate {rate}: achieved / configured",
            [f["ratio"] for f in mine],
            "x",
            Goal(low=0.98, high=1.0, digits=2),
        )
        result.add(
            f"--rate {rate}: sandbox max_requests_in_1s",
            [f["max_requests_in_1s"] for f in mine],
            "req",
            at_most(rate + 1),
        )
        result.add(
            f"--rate {rate}: first-to-last answer rate",
            [f["completion_rps"] for f in mine],
            "req/s",
            note="(rows - 1) / (last row's finished_at - first's), from the journal",
        )
    return result
