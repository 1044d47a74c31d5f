"""The benchmark suite: payco-batch's speed, rate accuracy and memory against its goals.

    python -m benchmarks [--runs 3] [--quick] [--only CASE] [--json PATH]

Cases (one module each; `--only` takes the letter or the name, repeated or comma-separated):

  a latency     latency_bound.py   latency-bound: sandbox --latency 50, concurrency 50, no rate
  b throughput  throughput.py      throughput and CPU overhead against bare httpx and aiohttp
  c rate        rate_accuracy.py   rate accuracy at --rate 200 and --rate 20
  d naive       naive_baseline.py  against a sequential loop getting a token before every call
  e scale       scale.py           1,000,000 rows: load+validate, dry run; RSS of real runs

Every server is the real sandbox (`python -m batch sandbox`) on 127.0.0.1, in its own
process pinned to the first CPU, fresh for each measurement; every client (payco-batch's CLI,
its Python API, the bare loops) runs in a fresh process pinned to the second CPU, as does
this script. Every load is bounded in rows and in time, and every process started is
stopped on every way out, Ctrl-C included. Figures are medians of `--runs` runs; ratios are
taken per run against the baseline measured in that run, and their median reported.

`--quick` runs small sizes (and one run unless --runs says otherwise): a smoke test of the
suite, not figures to quote. Exit code: 0 every goal met, 1 some goal missed, 2 a case
could not run, 130 interrupted. Needs Linux (CPU pinning, /proc).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import latency_bound, naive_baseline, rate_accuracy, scale, throughput
from benchmarks.common import (
    BenchmarkError,
    CaseResult,
    Context,
    choose_cpus,
    fmt,
    machine_info,
    print_case,
    raise_interrupt,
)

CASES = {m.CASE: m for m in (latency_bound, throughput, rate_accuracy, naive_baseline, scale)}
NAMES = {m.NAME: m.CASE for m in CASES.values()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="payco-batch's benchmark suite, against the sandbox on this machine.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="cases: " + "; ".join(f"{m.CASE} ({m.NAME}) {m.TITLE}" for m in CASES.values()),
    )
    parser.add_argument("--runs", type=int, help="runs per measurement (default 3; quick: 1)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument(
        "--only",
        action="append",
        metavar="CASE",
        help="run only these cases: a-e or their names, repeated or comma-separated",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    chosen = []
    for item in ",".join(args.only or CASES).split(","):
        key = item.strip().lower()
        key = NAMES.get(key, key)
        if key not in CASES:
            parser.error(
                f"unknown case {item!r}: choose from {', '.join(CASES)} or {', '.join(NAMES)}"
            )
        if key not in chosen:
            chosen.append(key)
    args.cases = chosen
    return args


def run_suite(args: argparse.Namespace, scratch: Path) -> dict:
    server_cpu, client_cpu = choose_cpus()
    machine = machine_info()  # before this script pins itself, so that it lists every CPU
    if client_cpu is not None:
        # This script waits and reads /proc; keep it off the sandbox's CPU.
        os.sched_setaffinity(0, {client_cpu})
    ctx = Context(args.runs, args.quick, scratch, server_cpu, client_cpu, log=_log)
    started = time.monotonic()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    _log(
        f"payco-batch benchmarks, {date}: {args.runs} run(s) each"
        + (", QUICK sizes (smoke test, not figures to quote)" if args.quick else "")
        + f"; sandbox on CPU {server_cpu}, clients on CPU {client_cpu}; "
        f"{machine['cpu_model']}, Python {machine['python']}"
    )
    results: list[CaseResult] = []
    for key in args.cases:
        module = CASES[key]
        _log(f"\n({key}) {module.TITLE} ...")
        case_started = time.monotonic()
        try:
            result = module.run(ctx)
        except BenchmarkError as error:
            result = CaseResult(key, module.TITLE, {}, error=str(error))
        result.seconds = time.monotonic() - case_started
        print_case(result, _log)
        results.append(result)
    duration = time.monotonic() - started
    return {
        "suite": "payco-batch benchmarks",
        "date": date,
        "quick": args.quick,
        "runs": args.runs,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "machine": machine,
        "duration_s": round(duration, 1),
        "cases": {r.case: r.to_json() for r in results},
        "passed": all(r.passed for r in results),
        "errors": [r.case for r in results if r.error],
    }


def print_summary(report: dict) -> None:
    _log("")
    _log(f"{'case':<5} {'figure':<48} {'median':>10} {'goal':<13} verdict")
    for case in report["cases"].values():
        if case["error"]:
            _log(f"{case['case']:<5} {'(could not run)':<48} {'':>10} {'':<13} ERROR")
            continue
        for f in case["figures"]:
            if f["goal"] is None:
                continue
            verdict = "PASS" if f["passed"] else "FAIL"
            _log(
                f"{case['case']:<5} {f['name']:<48} {fmt(f['median'], f['unit']):>10} "
                f"{f['goal']:<13} {verdict}"
            )
    minutes, seconds = divmod(report["duration_s"], 60)
    _log(f"\nthe suite took {int(minutes)} min {seconds:.0f} s")


def _log(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("error: the benchmarks need Linux (CPU pinning, /proc).", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="payco-benchmarks-") as scratch:
            report = run_suite(args, Path(scratch))
    except KeyboardInterrupt:
        print("interrupted; every process started was stopped.", file=sys.stderr)
        return 130
    print_summary(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        _log(f"wrote {args.json}")
    if report["errors"]:
        return 2
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
