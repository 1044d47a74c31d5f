"""What every benchmark here shares: pinned processes on 127.0.0.1, measured children, figures.

- `Server`: a server process (the sandbox, a baseline) on 127.0.0.1, pinned to one CPU,
  always stopped; `start_sandbox` starts `python -m batch sandbox` that way.
- `run_measured`: runs a command through `benchmarks/launcher.py`, pinned to one CPU and
  bounded in time, and returns its wall time, CPU time, peak RSS and a sampled timeline of
  its CPU and RSS. The launcher is a tiny process of its own, so the peak RSS is the
  command's, not this (possibly big) process's (Linux carries a parent's RSS into a forked
  child's ru_maxrss).
- `Figure`, `Goal`, `CaseResult`: what a case reports, and the table it is printed as.
- Input files of fresh PAID orders (ids never ending in 0, 404 or 777).

Every process started here is in a session of its own (Ctrl-C reaches the benchmark only,
which stops them) and is stopped on every path out.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from batch.sandbox.api import SANDBOX_KEY, SANDBOX_SECRET

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # never anything else: nothing here is meant to be reachable
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
LAUNCHER = Path(__file__).resolve().with_name("launcher.py")
SANDBOX_ENV = {"IMP_KEY": SANDBOX_KEY, "IMP_SECRET": SANDBOX_SECRET}


class BenchmarkError(Exception):
    """The benchmark could not run; the message says why."""


# ---------------------------------------------------------------------------------------
# Processes


def pinned_to(cpu: int | None):
    """A preexec_fn pinning the child to `cpu` (None: no pinning)."""
    if cpu is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def choose_cpus() -> tuple[int | None, int | None]:
    """(server CPU, client CPU): two different ones when there are two."""
    if not hasattr(os, "sched_setaffinity"):
        print("warning: cannot pin processes to CPUs on this platform", file=sys.stderr)
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("warning: one CPU only: the servers and the clients share it", file=sys.stderr)
        return cpus[0], cpus[0]
    return cpus[0], cpus[1]


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process, from /proc (None if unreadable)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields 14 and 15 of the file (utime, stime); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A server process on HOST:port, pinned to one CPU; `stop` always ends it."""

    def __init__(self, name: str, argv: list[str], port: int, cpu: int | None, logs: Path):
        self.name, self.argv, self.port, self.cpu = name, argv, port, cpu
        self.url = f"http://{HOST}:{port}"
        self._log_path = logs / f"{name}.log"
        self._log = None
        self.process: subprocess.Popen | None = None

    def start(self, ready_path: str) -> Server:
        self._log = self._log_path.open("wb")
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned_to(self.cpu),
            start_new_session=True,  # Ctrl-C reaches the benchmark only; it stops the server
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise BenchmarkError(
                    f"the {self.name} exited with code {self.process.returncode}:\n{self.log()}"
                )
            try:
                http_json("GET", self.url + ready_path, timeout=1.0)
                return self
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise BenchmarkError(
                        f"the {self.name} did not answer within {STARTUP_TIMEOUT:g} s:\n"
                        f"{self.log()}"
                    ) from None
                time.sleep(0.05)

    def cpu_seconds(self) -> float | None:
        return None if self.process is None else process_cpu_seconds(self.process.pid)

    def log(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def stop_process(process: subprocess.Popen, *, group: bool = False) -> None:
    """Terminate, wait, kill if need be; never leaves the process behind.

    `group`: the process leads a session of its own (start_new_session) whose other members
    must go too: signal the whole process group.
    """

    def send(sig: int) -> None:
        try:
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
        except ProcessLookupError:
            pass

    if process.poll() is None:
        send(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            process.wait(STOP_TIMEOUT)
    elif group:
        send(signal.SIGKILL)  # the leader is gone; anything it left in its group goes too


def http_json(method: str, url: str, body: dict | None = None, timeout: float = 5.0) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def start_sandbox(scratch: Path, cpu: int | None, *options: str, name: str = "sandbox") -> Server:
    """`python -m batch sandbox` on a free 127.0.0.1 port, pinned to `cpu`, answering."""
    port = free_port()
    argv = [sys.executable, "-m", "batch", "sandbox", "--host", HOST, "--port", str(port)]
    return Server(name, [*argv, *options], port, cpu, scratch).start("/__sandbox__/stats")


def sandbox_stats(url: str) -> dict:
    return http_json("GET", url + "/__sandbox__/stats")


@dataclass
class Measurement:
    """One command run under the launcher."""

    argv: list[str]
    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_kib: int
    stdout: str
    stderr: str
    started_at: float  # time.time() when the command started
    samples: list[tuple[float, float, int]]  # (time.time(), CPU seconds so far, RSS KiB)

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    @property
    def maxrss_mib(self) -> float:
        return self.maxrss_kib / 1024

    def result(self) -> dict:
        """The JSON object a worker prints as its last line of stdout."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        raise BenchmarkError(f"no result from {self.describe()}:\n{self.tail()}")

    def describe(self) -> str:
        shown = [Path(a).name if a == sys.executable else a for a in self.argv[:6]]
        return " ".join(shown) + (" ..." if len(self.argv) > 6 else "")

    def tail(self) -> str:
        return (self.stdout[-1000:] + "\n" + self.stderr[-2000:]).strip()

    def cpu_between(self, start: float, end: float) -> float | None:
        """CPU seconds used between two time.time() instants, from the samples."""
        if len(self.samples) < 2 or end <= start:
            return None
        return _interpolate(self.samples, end) - _interpolate(self.samples, start)

    def max_rss_between(self, start: float, end: float) -> int | None:
        inside = [rss for t, _, rss in self.samples if start <= t <= end]
        return max(inside) if inside else None


def _interpolate(samples: Sequence[tuple[float, float, int]], at: float) -> float:
    if at <= samples[0][0]:
        return samples[0][1]
    for (t0, c0, _), (t1, c1, _) in zip(samples, samples[1:], strict=False):
        if t0 <= at <= t1:
            return c0 if t1 == t0 else c0 + (c1 - c0) * (at - t0) / (t1 - t0)
    return samples[-1][1]


def run_measured(
    argv: list[str],
    *,
    cpu: int | None,
    timeout: float,
    scratch: Path,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    interval: float = 0.05,
    expect: Iterable[int] = (0,),
) -> Measurement:
    """Run `argv` pinned to `cpu`, stopped after `timeout` seconds; measure it.

    Raises BenchmarkError when it exits with a code not in `expect` or runs out of time.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.monotonic_ns()}-{random.randrange(1 << 30)}"
    report = scratch / f"measure-{stamp}.json"
    out_path, err_path = scratch / f"out-{stamp}.txt", scratch / f"err-{stamp}.txt"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("IAMPORT_API_URL", None)
    launcher = [sys.executable, "-S", str(LAUNCHER), str(report), str(interval), "--", *argv]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            launcher,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            preexec_fn=pinned_to(cpu),
            start_new_session=True,
        )
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise BenchmarkError(
                f"{' '.join(argv[:4])} ... did not finish in {timeout:.0f} s; stopped"
            ) from None
        finally:
            stop_process(process, group=True)
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    try:
        facts = json.loads(report.read_text())
    except (OSError, ValueError):
        raise BenchmarkError(f"the launcher left no report:\n{stderr[-2000:]}") from None
    for path in (report, out_path, err_path):
        path.unlink(missing_ok=True)
    measurement = Measurement(
        argv=argv,
        returncode=facts["returncode"],
        wall_s=facts["wall_s"],
        user_s=facts["user_s"],
        sys_s=facts["sys_s"],
        maxrss_kib=facts["maxrss_kib"],
        stdout=stdout,
        stderr=stderr,
        started_at=facts["started_at"],
        samples=[tuple(s) for s in facts["samples"]],
    )
    if measurement.returncode not in set(expect):
        raise BenchmarkError(
            f"{measurement.describe()} exited with {measurement.returncode}:\n{measurement.tail()}"
        )
    return measurement


# ---------------------------------------------------------------------------------------
# Inputs

# Columns of sample_data/orders.csv: what a finance export looks like.
CSV_HEADER = "imp_uid,status,merchant_uid,buyer_name,product,amount\n"
# Last digits that make a fresh PAYCO order in PAID: never 0 (shipped), 4 (…404, no such
# payment) or 7 (…777, not PAYCO).
_LAST_DIGITS = "1235689"


def write_orders(
    path: Path, rows: int, *, status: str = "DELIVERY_START", minimal: bool = False
) -> Path:
    """`rows` valid rows moving distinct fresh PAID orders to `status`.

    The ids carry a random prefix, so two files never name the same order. `minimal`: only
    the imp_uid and status columns; otherwise the columns of sample_data/orders.csv.
    """
    prefix = random.randrange(10000, 100000)
    with path.open("w", encoding="utf-8", newline="") as file:
        if minimal:
            file.write("imp_uid,status\n")
            for start in range(0, rows, 10000):
                file.write(
                    "".join(
                        f"imp_{prefix}{i:08d}{_LAST_DIGITS[i % 7]},{status}\n"
                        for i in range(start, min(rows, start + 10000))
                    )
                )
        else:
            file.write(CSV_HEADER)
            for start in range(0, rows, 10000):
                file.write(
                    "".join(
                        f"imp_{prefix}{i:08d}{_LAST_DIGITS[i % 7]},{status},"
                        f"ORD-20261204-{i:08d},오승민,유기농 현미 10kg,{12900 + i % 1000 * 100}\n"
                        for i in range(start, min(rows, start + 10000))
                    )
                )
    return path


def sending_window(out_dir: Path) -> tuple[float, float] | None:
    """(start, end) in time.time() of a run's sending, from its journal's outcomes."""
    start = end = None
    try:
        with (out_dir / "journal.jsonl").open(encoding="utf-8") as journal:
            for line in journal:
                if '"type": "outcome"' not in line and '"type":"outcome"' not in line:
                    continue
                record = json.loads(line)
                finished = datetime.fromisoformat(record["finished_at"]).timestamp()
                began = finished - (record.get("elapsed_ms") or 0) / 1000
                start = began if start is None else min(start, began)
                end = finished if end is None else max(end, finished)
    except OSError:
        return None
    return None if start is None else (start, end)


def completion_rate(out_dir: Path) -> float | None:
    """Rows finished per second between the first and the last row's answer, from the journal.

    With one request per row and an answer that comes at once, this is the rate at which the
    requests left. (A row's `elapsed_ms` cannot date its request: it counts from before the
    row's wait for its rate-limit slot.)
    """
    finished = []
    with (out_dir / "journal.jsonl").open(encoding="utf-8") as journal:
        for line in journal:
            if '"outcome"' in line:
                record = json.loads(line)
                if record.get("type") == "outcome":
                    finished.append(datetime.fromisoformat(record["finished_at"]).timestamp())
    if len(finished) < 2 or max(finished) == min(finished):
        return None
    return (len(finished) - 1) / (max(finished) - min(finished))


def read_summary(out_dir: Path) -> dict:
    return json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------
# Figures, goals, results


@dataclass(frozen=True)
class Goal:
    """A bound on a figure: at least `low`, at most `high`, or both; `digits` to compare at."""

    low: float | None = None
    high: float | None = None
    digits: int | None = None  # compare the figure rounded to this many decimals

    def check(self, value: float | None) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if self.digits is not None:
            value = round(value, self.digits)
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def describe(self, unit: str = "") -> str:
        unit = "x" if unit == "x" else f" {unit}" if unit else ""

        def num(x: float) -> str:
            return f"{x:.{self.digits}f}" if self.digits is not None else _num(x)

        if self.low is not None and self.high is not None:
            return f"{num(self.low)}..{num(self.high)}{unit}"
        if self.low is not None:
            return f">= {num(self.low)}{unit}"
        return f"<= {num(self.high)}{unit}"


def at_least(x: float, digits: int | None = None) -> Goal:
    return Goal(low=x, digits=digits)


def at_most(x: float, digits: int | None = None) -> Goal:
    return Goal(high=x, digits=digits)


def _num(x: float) -> str:
    if x == int(x) and abs(x) >= 10:
        return f"{x:,.0f}"
    return f"{x:g}"


@dataclass
class Figure:
    """One measured figure: its value per run, their median, and a goal if there is one."""

    name: str
    per_run: list[float | None]
    unit: str = ""
    goal: Goal | None = None
    note: str = ""
    value: float | None = None  # the median of per_run, unless given

    def __post_init__(self) -> None:
        if self.value is None:
            self.value = median(self.per_run)

    @property
    def passed(self) -> bool | None:
        return None if self.goal is None else self.goal.check(self.value)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "median": self.value,
            "per_run": self.per_run,
            "goal": self.goal.describe(self.unit) if self.goal else None,
            "passed": self.passed,
            "note": self.note or None,
        }


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratios(tops: Sequence[float | None], bottoms: Sequence[float | None]) -> list[float | None]:
    """Per-run ratios (a run's figure over the baseline measured in the same run)."""
    return [None if a is None or not b else a / b for a, b in zip(tops, bottoms, strict=True)]


@dataclass
class CaseResult:
    case: str  # "a".."e"
    title: str
    settings: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)  # every raw figure, per run
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None  # the case could not run

    @property
    def passed(self) -> bool:
        return self.error is None and all(f.passed is not False for f in self.figures)

    def add(self, *args: Any, **kwargs: Any) -> Figure:
        figure = Figure(*args, **kwargs)
        self.figures.append(figure)
        return figure

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "title": self.title,
            "settings": self.settings,
            "figures": [f.to_json() for f in self.figures],
            "passed": self.passed,
            "error": self.error,
            "notes": self.notes,
            "seconds": round(self.seconds, 1),
            "runs": self.runs,
        }


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit in ("req/s", "rows/s", "MiB", "KiB"):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
    if unit == "x" or unit == "":
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3f}"
    if unit in ("s", "ms", "µs", "%"):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:g}"


def print_case(result: CaseResult, out: Callable[[str], None] = print) -> None:
    out("")
    out(f"({result.case}) {result.title}")
    if result.error:
        out(f"    could not run: {result.error}")
        return
    width = max([len(f.name) for f in result.figures] + [10])
    out(f"    {'figure':<{width}}  {'median':>10} {'unit':<6} {'goal':<12} {'':<4}  per run")
    for f in result.figures:
        verdict = {True: "PASS", False: "FAIL", None: ""}[f.passed]
        goal = f.goal.describe(f.unit) if f.goal else "-"
        per_run = " · ".join(fmt(v, f.unit) for v in f.per_run)
        out(
            f"    {f.name:<{width}}  {fmt(f.value, f.unit):>10} {f.unit:<6} {goal:<12} "
            f"{verdict:<4}  {per_run}"
        )
        if f.note:
            out(f"    {'':<{width}}  ↳ {f.note}")
    for note in result.notes:
        out(f"    note: {note}")
    out(f"    ({result.seconds:.0f} s)")


# ---------------------------------------------------------------------------------------
# The machine


def machine_info(wrk: str | None = None) -> dict:
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    wrk_version = None
    if wrk:
        lines = subprocess.run(
            [wrk, "--version"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()
        wrk_version = lines[0].strip() if lines else None
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "nproc": os.cpu_count(),
        "usable_cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [],
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }
    for package in (
        "payco-batch",
        "uvicorn",
        "httptools",
        "uvloop",
        "httpx",
        "httpx-aiohttp",
        "aiohttp",
        "pandas",
    ):
        info[package] = version(package)
    if wrk:
        info["wrk"] = wrk_version
    return info


def raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that SIGTERM, too, runs the finally blocks


# ---------------------------------------------------------------------------------------
# What a case gets to work with


@dataclass
class Context:
    """The suite's settings and the means to start things pinned and bounded."""

    runs: int
    quick: bool
    scratch: Path
    server_cpu: int | None
    client_cpu: int | None
    log: Callable[[str], None] = print

    def sandbox(self, *options: str) -> Server:
        """A fresh sandbox (its own process, on the server CPU); stop it with `with`."""
        return start_sandbox(self.scratch, self.server_cpu, *options)

    def folder(self, name: str) -> Path:
        """A new empty folder in the scratch space."""
        path = self.scratch / f"{name}-{time.monotonic_ns()}"
        path.mkdir(parents=True)
        return path

    def worker(self, kind: str, args: dict[str, Any], *, timeout: float) -> Measurement:
        """`python -m benchmarks.workers KIND`, pinned to the client CPU."""
        argv = [sys.executable, "-m", "benchmarks.workers", kind, json.dumps(args)]
        return run_measured(argv, cpu=self.client_cpu, timeout=timeout, scratch=self.scratch)

    def payco_batch(
        self,
        input_path: Path,
        out_dir: Path,
        *options: str,
        api_url: str | None = None,
        timeout: float,
        expect: Iterable[int] = (0,),
    ) -> Measurement:
        """`python -m batch run INPUT --out OUT --no-progress [--api-url URL] OPTIONS`."""
        argv = [sys.executable, "-m", "batch", "run", str(input_path), "--out", str(out_dir)]
        argv += ["--no-progress", *(["--api-url", api_url] if api_url else []), *options]
        return run_measured(
            argv,
            cpu=self.client_cpu,
            timeout=timeout,
            scratch=self.scratch,
            env=SANDBOX_ENV,
            expect=expect,
        )
