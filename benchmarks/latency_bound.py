"""(a) Latency-bound: does payco-batch keep `concurrency` requests in flight?

Against a sandbox answering every request after 50 ms, `--concurrency 50 --rate 0` can at
best do 50 / 0.05 = 1,000 requests/s. payco-batch's CLI sends 5,000 fresh PAID rows
(`payco-batch run FILE --api-url URL --concurrency 50 --rate 0`); its achieved rate is
summary.json's requests/total over the sending time (requests.per_second). Goal: at least
0.95 of the ideal.

Also measured, as evidence: the CPU the payco-batch process used during its sending window
(sampled from /proc, window from its journal) over that window's length, i.e. how busy its
one core was, and the sandbox's; and, as references in the same run, the bare httpx loop
and the bare aiohttp loop (benchmarks/workers.py) on the same rows and settings, each
against a fresh sandbox: what each HTTP client alone reaches on the same core.
"""

from __future__ import annotations

from benchmarks.common import (
    CaseResult,
    Context,
    at_least,
    median,
    ratios,
    read_summary,
    sending_window,
    write_orders,
)

CASE = "a"
NAME = "latency"
TITLE = "Latency-bound: sandbox --latency 50, --concurrency 50 --rate 0"
LATENCY_MS = 50
CONCURRENCY = 50
ROWS = {"full": 5000, "quick": 300}
GOAL = 0.95


def run(ctx: Context) -> CaseResult:
    rows = ROWS["quick" if ctx.quick else "full"]
    ideal = CONCURRENCY / (LATENCY_MS / 1000)
    result = CaseResult(
        CASE,
        TITLE,
        {
            "rows": rows,
            "latency_ms": LATENCY_MS,
            "concurrency": CONCURRENCY,
            "rate": 0,
            "ideal_rps": ideal,
            "client": "payco-batch CLI as a subprocess (python -m batch run), on the client CPU",
            "references": "bare httpx loop (open_http_client) and bare aiohttp "
            "loop: same rows and concurrency, fresh sandbox each",
        },
    )
    timeout = 120 + rows / 50
    for i in range(ctx.runs):
        folder = ctx.folder(f"a{i}")
        input_path = write_orders(folder / "orders.csv", rows)
        out = folder / "out"
        with ctx.sandbox("--latency", str(LATENCY_MS)) as sandbox:
            cpu_before = sandbox.cpu_seconds()
            m = ctx.payco_batch(
                input_path,
                out,
                "--concurrency",
                str(CONCURRENCY),
                "--rate",
                "0",
                api_url=sandbox.url,
                timeout=timeout,
            )
            sandbox_cpu = _delta(cpu_before, sandbox.cpu_seconds())
        summary = read_summary(out)
        requests = summary["requests"]["total"]
        sending_s = requests / summary["requests"]["per_second"]
        window = sending_window(out)
        client_busy = None
        if window is not None:
            used = m.cpu_between(*window)
            client_busy = None if used is None else used / (window[1] - window[0])
        refs = {}
        for kind in ("httpx", "aiohttp"):
            with ctx.sandbox("--latency", str(LATENCY_MS)) as sandbox:
                refs[kind] = ctx.worker(
                    kind,
                    {"input": str(input_path), "api_url": sandbox.url, "concurrency": CONCURRENCY},
                    timeout=timeout,
                ).result()
        ref = refs["httpx"]
        run_figures = {
            "rps": summary["requests"]["per_second"],
            "requests": requests,
            "succeeded": summary["outcomes"]["succeeded"],
            "sending_s": sending_s,
            "process_wall_s": m.wall_s,
            "rows_per_wall_s": rows / m.wall_s,
            "process_cpu_s": m.cpu_s,
            "client_cpu_busy": client_busy,
            "sandbox_cpu_busy": None if sandbox_cpu is None else sandbox_cpu / sending_s,
            "latency_p50_ms": summary["latency_ms"]["p50"],
            "bare_httpx_rps": ref["per_second"],
            "bare_httpx_cpu_busy": ref["send_cpu_s"] / ref["send_wall_s"],
            "bare_aiohttp_rps": refs["aiohttp"]["per_second"],
            "bare_aiohttp_cpu_busy": refs["aiohttp"]["send_cpu_s"] / refs["aiohttp"]["send_wall_s"],
        }
        result.runs.append(run_figures)
        ctx.log(
            f"  (a) run {i + 1}/{ctx.runs}: payco-batch {run_figures['rps']:,.0f} req/s "
            f"(client core {_pct(client_busy)} busy), bare httpx {ref['per_second']:,.0f} req/s"
        )

    per = {key: [r[key] for r in result.runs] for key in result.runs[0]}
    result.add(
        "payco-batch requests/s", per["rps"], "req/s", note="summary.json requests.per_second"
    )
    result.add(
        "achieved / ideal (50/0.05 s = 1,000/s)",
        [r / ideal for r in per["rps"]],
        "x",
        at_least(GOAL),
    )
    result.add(
        "payco-batch row latency p50",
        per["latency_p50_ms"],
        "ms",
        note="a row's start to its outcome (summary.json): the sandbox's 50 ms plus what both "
        "sides add; the ideal assumes they add nothing",
    )
    result.add("rows / process wall time", per["rows_per_wall_s"], "rows/s")
    result.add(
        "payco-batch CPU busy while sending",
        [None if b is None else 100 * b for b in per["client_cpu_busy"]],
        "%",
        note="its CPU time in the sending window / the window; 100% = one core saturated",
    )
    result.add(
        "sandbox CPU busy while sending",
        [None if b is None else 100 * b for b in per["sandbox_cpu_busy"]],
        "%",
    )
    result.add("reference: bare httpx requests/s", per["bare_httpx_rps"], "req/s")
    result.add(
        "reference: bare httpx / ideal",
        [r / ideal for r in per["bare_httpx_rps"]],
        "x",
        note="the same loop without payco-batch: what httpx alone reaches on one core",
    )
    result.add(
        "reference: bare httpx CPU busy",
        [100 * b for b in per["bare_httpx_cpu_busy"]],
        "%",
    )
    result.add("payco-batch / bare httpx", ratios(per["rps"], per["bare_httpx_rps"]), "x")
    result.add(
        "reference: bare aiohttp / ideal",
        [r / ideal for r in per["bare_aiohttp_rps"]],
        "x",
        note="the same loop on aiohttp, same core: CPU busy "
        + " · ".join(f"{100 * b:.0f}" for b in per["bare_aiohttp_cpu_busy"])
        + " %",
    )
    busy = median(per["client_cpu_busy"])
    if busy is not None and busy > 0.9 and (median(per["rps"]) or 0) < GOAL * ideal:
        result.notes.append(
            f"payco-batch's core was {busy:.0%} busy while sending: CPU-bound on one core, "
            "not waiting on the sandbox"
        )
    return result


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{value:.0%}"
