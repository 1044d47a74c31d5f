"""Crash drills: real `payco-batch` processes killed or interrupted mid-run, then resumed.

The sandbox runs in this test process (a thread, on a free 127.0.0.1 port) so that it
outlives the killed client and its audit can be checked afterwards. Each drill uses its own
imp_uids, so one sandbox serves the whole module.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from batch.sandbox.api import SANDBOX_KEY, SANDBOX_SECRET, SandboxSettings
from batch.sandbox.faults import FaultSettings
from batch.sandbox.server import BackgroundSandbox

ROWS = 150
DRILLS = 20
# Every wait in this module is bounded: no drill can hang the suite.
PROCESS_TIMEOUT = 60


@pytest.fixture(scope="module")
def server():
    # Latency keeps several requests in flight at any instant, so that kills land mid-request.
    faults = FaultSettings(latency_ms=30, jitter_ms=20, seed=1)
    with BackgroundSandbox(SandboxSettings(faults=faults)) as sandbox:
        yield sandbox


def make_input(tmp_path: Path, seed: int, rows: int = ROWS) -> Path:
    """Fresh PAYCO orders in PAID (ids not ending in 0, 404 or 777), unique to this seed."""
    rng = random.Random(seed)
    ids: set[str] = set()
    while len(ids) < rows:
        imp_uid = f"imp_{seed:03d}{rng.randrange(10**8, 10**9)}"
        if not imp_uid.endswith(("0", "404", "777")):
            ids.add(imp_uid)
    path = tmp_path / f"orders-{seed}.csv"
    path.write_text(
        "imp_uid,status\n" + "".join(f"{i},DELIVERY_START\n" for i in sorted(ids)),
        encoding="utf-8",
    )
    return path


def start(args: list[str]) -> subprocess.Popen:
    env = os.environ | {"IMP_KEY": SANDBOX_KEY, "IMP_SECRET": SANDBOX_SECRET}
    env.pop("IAMPORT_API_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "batch", *args, "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=PROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"payco-batch did not finish in {PROCESS_TIMEOUT} s: {err}")
    return process.returncode, out, err


def outcomes_written(out: Path) -> int:
    journal = out / "journal.jsonl"
    if not journal.exists():
        return 0
    return journal.read_text(encoding="utf-8", errors="replace").count('"type": "outcome"')


def wait_for_outcomes(out: Path, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while outcomes_written(out) < count:
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the run ended or stalled before {count} outcomes")
        time.sleep(0.02)


def results_of(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")


def assert_every_row_once_and_applied_once(server, input_path: Path, out: Path) -> None:
    """Every input row is in results.csv once, succeeded; no order changed twice."""
    results = results_of(out)
    expected = pd.read_csv(input_path, dtype=str)["imp_uid"].tolist()
    assert results["imp_uid"].tolist() == expected
    assert set(results["outcome"]) == {"succeeded"}, results["outcome"].value_counts()
    orders = {
        o["imp_uid"]: o for o in httpx.get(f"{server.url}/__sandbox__/orders").json()["orders"]
    }
    for row in results.itertuples():
        order = orders[row.imp_uid]
        changes = [e for e in order["history"] if e["kind"] == "changed"]
        assert len(changes) == 1, order
        # The journal notes a request before it leaves: the server saw at most that many,
        # and exactly that many for a row no crash left in doubt.
        if row.resent == "True":
            assert order["requests"] <= int(row.attempts)
        else:
            assert order["requests"] == int(row.attempts), (row, order)


@pytest.mark.parametrize("drill", range(DRILLS))
def test_kill_9_at_a_random_moment_then_resume(server, tmp_path, drill):
    input_path = make_input(tmp_path, seed=drill)
    out = tmp_path / "run"
    rng = random.Random(1000 + drill)
    process = start(
        ["run", str(input_path), "--api-url", server.url, "--out", str(out), "--rate", "300"]
    )
    # Kill somewhere between start-up and the end of sending: some drills after a number of
    # outcomes are on disk, the others at a random instant (start-up included).
    if drill % 2:
        wait_for_outcomes(out, rng.randrange(1, ROWS), process)
    else:
        time.sleep(rng.uniform(0.2, 1.4))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=PROCESS_TIMEOUT)

    if (out / "journal.jsonl").exists():
        code, _, err = finish(start(["resume", str(out)]))
    else:  # killed before it wrote anything: nothing was sent, so run it again
        code, _, err = finish(
            start(["run", str(input_path), "--api-url", server.url, "--out", str(out)])
        )
    assert code == 0, err
    assert_every_row_once_and_applied_once(server, input_path, out)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_stops_gracefully_and_prints_the_resume_command(server, tmp_path, sig):
    input_path = make_input(tmp_path, seed=100 + sig)
    out = tmp_path / "run"
    process = start(
        ["run", str(input_path), "--api-url", server.url, "--out", str(out), "--rate", "60"]
    )
    wait_for_outcomes(out, 20, process)
    process.send_signal(sig)
    code, _, err = finish(process)
    assert code == 130, err
    assert f"payco-batch resume {out}" in err
    results = results_of(out)
    # a complete report: every row, each either done or not sent (in-flight rows finished)
    assert len(results) == ROWS
    assert set(results["outcome"]) == {"succeeded", "not_sent"}
    assert (results["outcome"] == "not_sent").sum() > 0

    code, _, err = finish(start(["resume", str(out)]))
    assert code == 0, err
    assert_every_row_once_and_applied_once(server, input_path, out)


def test_second_ctrl_c_quits_at_once_and_the_journal_resumes(server, tmp_path):
    input_path = make_input(tmp_path, seed=200)
    out = tmp_path / "run"
    process = start(
        ["run", str(input_path), "--api-url", server.url, "--out", str(out), "--rate", "60"]
    )
    wait_for_outcomes(out, 10, process)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    code, _, err = finish(process)
    assert code == 130, err
    code, _, err = finish(start(["resume", str(out)]))
    assert code == 0, err
    assert_every_row_once_and_applied_once(server, input_path, out)


def test_resume_refuses_a_different_file(server, tmp_path):
    input_path = make_input(tmp_path, seed=300, rows=5)
    out = tmp_path / "run"
    code, _, err = finish(
        start(["run", str(input_path), "--api-url", server.url, "--out", str(out)])
    )
    assert code == 0, err
    other = make_input(tmp_path, seed=301, rows=5)
    code, _, err = finish(start(["run", str(other), "--api-url", server.url, "--out", str(out)]))
    assert code == 2
    assert "is not the file the run in" in err and "SHA-256 differ" in err
    assert "Traceback" not in err
