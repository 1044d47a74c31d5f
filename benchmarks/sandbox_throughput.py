"""How many status calls per second the sandbox answers on one core, against a baseline.

    python -m benchmarks.sandbox_throughput [--runs 3] [--duration 5] [--connections 50]
                                            [--json PATH]

Starts the real sandbox (`python -m batch sandbox`) pinned to one CPU and loads
`POST /payco/orders/status/imp_<random>` with wrk pinned to another: every request names a
new PAYCO order in PAID, so the sandbox creates it and moves it to DELIVERY_START, its
realistic path. As a baseline measured in the same run, a trivial raw ASGI app on the same
uvicorn settings (httptools, uvloop), on the same CPU, loaded the same way. The two are
loaded in turn, `--runs` times each, after a 1 s warm-up each; the medians, their ratio and
PASS/FAIL against the goal are printed. Needs wrk (`apt-get install wrk`); Linux for the
CPU pinning. Every process it starts is stopped before it exits, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from batch.sandbox.api import SANDBOX_KEY, SANDBOX_SECRET
from batch.sandbox.audit import STATUS_PATH
from benchmarks.common import (  # shared with the suite (python -m benchmarks)
    HOST,
    ROOT,
    BenchmarkError,
    Server,
    choose_cpus,
    free_port,
    http_json,
    machine_info,
    pinned_to,
    raise_interrupt,
    stop_process,
)

GOAL = 8000.0  # requests/s, from the issue: the client, not the sandbox, must be the bottleneck
WARMUP_SECONDS = 1

# The baseline: the least a Python ASGI app on uvicorn can do for the same request.
BASELINE_REPLY = b'{"code":0,"message":null,"response":{"status":"DELIVERY_START"}}'
BASELINE_HEADERS = [
    (b"content-type", b"application/json; charset=utf-8"),
    (b"content-length", str(len(BASELINE_REPLY)).encode()),
]


async def baseline_app(scope, receive, send):
    """Read the body, answer a fixed 200 JSON envelope."""
    if scope["type"] != "http":
        return
    more_body = True
    while more_body:
        message = await receive()
        more_body = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": BASELINE_HEADERS})
    await send({"type": "http.response.body", "body": BASELINE_REPLY})


# wrk: one random imp_uid per request. 13 digits, the last never 0 (an order already
# shipped), 4 (…404, no such payment) or 7 (…777, not PAYCO): a fresh PAYCO order in PAID.
LUA_SCRIPT = """\
-- written by benchmarks/sandbox_throughput.py
wrk.method = "POST"
wrk.body = '{"status":"DELIVERY_START"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"

local LAST = {"1", "2", "3", "5", "6", "8", "9"}
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

-- A new seed for every wrk invocation (its argument), or a warm-up and the run after it
-- would ask for the same orders, and the run would meet orders already shipped.
function init(args)
  math.randomseed(tonumber(args[1]) * 64 + thread_no)
end

function request()
  local path = string.format("/payco/orders/status/imp_%%d%%06d%%s",
    math.random(100000, 999999), math.random(0, 999999), LAST[math.random(#LAST)])
  return wrk.format(nil, path)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class Run:
    target: str
    rps: float  # wrk's Requests/sec
    requests: int
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def faults(self) -> int:
        return self.non_2xx + self.socket_errors


# ---------------------------------------------------------------------------------------
# Load


def run_wrk(
    wrk: str, url: str, script: Path, seconds: int, connections: int, cpu: int | None
) -> str:
    """wrk's output for one bounded run (one thread, pinned to `cpu`)."""
    argv = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "2s"]
    argv += ["-s", str(script), url, "--", str(random.randrange(1, 1 << 40))]
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=pinned_to(cpu),
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=seconds + 15)
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"wrk did not finish a {seconds} s run in {seconds + 15} s") from None
    finally:
        stop_process(process)
    if process.returncode != 0:
        raise BenchmarkError(f"wrk failed (exit {process.returncode}):\n{output}")
    return output


def parse_wrk(target: str, output: str) -> Run:
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", output, re.M)
    summary = re.search(r"^WRK_JSON (\{.*\})$", output, re.M)
    if rps is None or summary is None:
        raise BenchmarkError(f"cannot read wrk's output:\n{output}")
    done = json.loads(summary.group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return Run(
        target=target,
        rps=float(rps.group(1)),
        requests=done["requests"],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(done[k] for k in ("connect", "read", "write", "timeout")),
        p50_ms=done["p50_us"] / 1000,
        p99_ms=done["p99_us"] / 1000,
    )


# ---------------------------------------------------------------------------------------
# Report


def check_stats(stats: dict, sent: int) -> list[str]:
    """What is wrong with the sandbox's own account of the load, if anything."""
    problems = []
    if stats.get("requests", 0) < sent:
        problems.append(f"the sandbox counted {stats.get('requests')} requests, wrk {sent}")
    changes = stats.get("state_changes", 0)
    if not changes:
        problems.append("no order changed state")
    # Every status call should have met a fresh order: the path this benchmark claims to measure.
    answered_ok = stats.get("requests_by_path", {}).get(STATUS_PATH, {}).get("200", 0)
    if changes < 0.99 * answered_ok:
        problems.append(f"only {changes} of {answered_ok} status calls changed an order's state")
    for path, codes in stats.get("requests_by_path", {}).items():
        errors = {code: n for code, n in codes.items() if code.startswith("5")}
        if errors:
            problems.append(f"5xx answers on {path}: {errors}")
    return problems


def print_table(runs: list[Run], summary: dict) -> None:
    print()
    print(f"{'target':<10} {'median req/s':>13}   per run (req/s)")
    for target in ("sandbox", "baseline"):
        per_run = [r.rps for r in runs if r.target == target]
        numbers = "  ".join(f"{x:,.0f}" for x in per_run)
        print(f"{target:<10} {summary[target]['median_rps']:>13,.0f}   {numbers}")
    ratios = "  ".join(f"{x:.2f}" for x in summary["pair_ratios"])
    print(f"ratio sandbox/baseline: {summary['ratio']:.2f} (per pair: {ratios})")
    latency = summary["sandbox"]
    print(
        f"sandbox latency (median of runs): p50 {latency['median_p50_ms']:.1f} ms, "
        f"p99 {latency['median_p99_ms']:.1f} ms"
    )
    stats = summary["sandbox_stats"]
    print(
        f"sandbox stats: {stats.get('requests')} requests, "
        f"{stats.get('state_changes')} state changes, {stats.get('no_ops')} no-ops"
    )
    for problem in summary["problems"]:
        print(f"problem: {problem}")
    verdict = "PASS" if summary["passed"] else "FAIL"
    print(
        f"{verdict}: sandbox median {summary['sandbox']['median_rps']:,.0f} req/s, "
        f"goal {summary['goal_rps']:,.0f} req/s"
    )


# ---------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sandbox_throughput",
        description="The sandbox's status-call rate on one core, against a raw ASGI baseline.",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per target (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (default 5)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    parser.add_argument("--goal", type=float, default=GOAL, help=f"req/s to pass ({GOAL:g})")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.duration < 1 or args.connections < 1:
        parser.error("--runs, --duration and --connections must be at least 1")
    return args


def benchmark(args: argparse.Namespace, wrk: str, scratch: Path) -> dict:
    server_cpu, wrk_cpu = choose_cpus()
    sandbox_port = free_port()
    sandbox = Server(
        "sandbox",
        [sys.executable, "-m", "batch", "sandbox", "--host", HOST, "--port", str(sandbox_port)],
        sandbox_port,
        server_cpu,
        scratch,
    )
    baseline_port = free_port()
    baseline = Server(
        "baseline",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.sandbox_throughput:baseline_app",
            "--app-dir",
            str(ROOT),
            "--host",
            HOST,
            "--port",
            str(baseline_port),
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--lifespan",
            "off",
            "--no-access-log",
            "--log-level",
            "warning",
            "--backlog",
            "2048",
        ],  # fmt: skip
        baseline_port,
        server_cpu,
        scratch,
    )
    try:
        sandbox.start("/__sandbox__/stats")
        baseline.start("/")
        token_reply = http_json(
            "POST",
            sandbox.url + "/users/getToken",
            {"imp_key": SANDBOX_KEY, "imp_secret": SANDBOX_SECRET},
        )
        token = token_reply["response"]["access_token"]
        script = scratch / "status.lua"
        script.write_text(LUA_SCRIPT % {"token": token})
        path = "/payco/orders/status"  # wrk needs a URL; the script sets each request's path
        sent_to_sandbox = 0
        runs: list[Run] = []
        for i in range(args.runs):
            for server in (sandbox, baseline):
                url = server.url + path
                warmup = parse_wrk(
                    server.name,
                    run_wrk(wrk, url, script, WARMUP_SECONDS, args.connections, wrk_cpu),
                )
                run = parse_wrk(
                    server.name,
                    run_wrk(wrk, url, script, args.duration, args.connections, wrk_cpu),
                )
                if server is sandbox:
                    sent_to_sandbox += warmup.requests + run.requests
                runs.append(run)
                print(
                    f"run {i + 1}/{args.runs} {server.name:<8} {run.rps:>9,.0f} req/s  "
                    f"p50 {run.p50_ms:.1f} ms  p99 {run.p99_ms:.1f} ms  "
                    f"non-2xx {run.non_2xx}  socket errors {run.socket_errors}",
                    flush=True,
                )
        time.sleep(0.2)  # let the last requests wrk gave up on finish
        stats = http_json("GET", sandbox.url + "/__sandbox__/stats")
    finally:
        sandbox.stop()
        baseline.stop()

    problems = check_stats(stats, sent_to_sandbox)
    for run in runs:
        if run.faults:
            problems.append(
                f"{run.target}: {run.non_2xx} non-2xx answers, {run.socket_errors} socket errors"
            )

    def summarize(target: str) -> dict:
        mine = [r for r in runs if r.target == target]
        return {
            "median_rps": statistics.median(r.rps for r in mine),
            "median_p50_ms": statistics.median(r.p50_ms for r in mine),
            "median_p99_ms": statistics.median(r.p99_ms for r in mine),
            "runs": [asdict(r) for r in mine],
        }

    sandbox_summary, baseline_summary = summarize("sandbox"), summarize("baseline")
    pair_ratios = [
        s.rps / b.rps
        for s, b in zip(
            [r for r in runs if r.target == "sandbox"],
            [r for r in runs if r.target == "baseline"],
            strict=True,
        )
    ]
    passed = sandbox_summary["median_rps"] >= args.goal and not problems
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "settings": {
            "runs": args.runs,
            "duration_s": args.duration,
            "warmup_s": WARMUP_SECONDS,
            "connections": args.connections,
            "wrk_threads": 1,
            "server_cpu": server_cpu,
            "wrk_cpu": wrk_cpu,
            "request": "POST /payco/orders/status/imp_<random> {'status': 'DELIVERY_START'}",
        },
        "machine": machine_info(wrk),
        "goal_rps": args.goal,
        "sandbox": sandbox_summary,
        "baseline": baseline_summary,
        "ratio": sandbox_summary["median_rps"] / baseline_summary["median_rps"],
        "pair_ratios": pair_ratios,
        "sandbox_stats": stats,
        "problems": problems,
        "passed": passed,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        print(
            "error: wrk is not installed; install it with `apt-get install wrk` "
            "(or your system's package manager) and run again.",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="sandbox-throughput-") as scratch:
            summary = benchmark(args, wrk, Path(scratch))
    except BenchmarkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; every process started was stopped.", file=sys.stderr)
        return 130
    print_table([Run(**r) for t in ("sandbox", "baseline") for r in summary[t]["runs"]], summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.json}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
