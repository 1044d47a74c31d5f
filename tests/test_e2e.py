"""End to end over real loopback HTTP: the CLI against the embedded sandbox, faults included.

Each test starts its own sandbox on a free 127.0.0.1 port and always stops it, then checks
the sandbox's own audit against results.csv: every succeeded row changed its order exactly
once on the server, and no request was made for an invalid or duplicate row.
"""

from __future__ import annotations

import json
import random
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
import pytest
from click.testing import CliRunner

from batch.cli import cli
from batch.sandbox.api import SANDBOX_KEY, SANDBOX_SECRET, SandboxSettings
from batch.sandbox.faults import FaultSettings
from batch.sandbox.server import BackgroundSandbox

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


@contextmanager
def sandbox(**faults):
    token_ttl = faults.pop("token_ttl", 1800.0)
    settings = SandboxSettings(token_ttl=token_ttl, faults=FaultSettings(**faults))
    with BackgroundSandbox(settings) as server:
        yield server


def run(server: BackgroundSandbox, input_path: Path, out: Path, *options: str):
    args = ["run", str(input_path), "--api-url", server.url, "--out", str(out), *options]
    env = {"IMP_KEY": SANDBOX_KEY, "IMP_SECRET": SANDBOX_SECRET, "IAMPORT_API_URL": None}
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    results = pd.read_csv(
        out / "results.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig"
    )
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return result, results, summary


def audit(server: BackgroundSandbox) -> tuple[dict, dict[str, dict]]:
    stats = httpx.get(f"{server.url}/__sandbox__/stats").json()
    orders = httpx.get(f"{server.url}/__sandbox__/orders").json()["orders"]
    return stats, {order["imp_uid"]: order for order in orders}


def paid_orders(tmp_path: Path, count: int, seed: int = 7) -> Path:
    """`count` rows moving fresh PAID orders (ids not ending in 0, 404 or 777) to DELIVERY_START."""
    rng = random.Random(seed)
    ids: list[str] = []
    while len(ids) < count:
        imp_uid = f"imp_{rng.randrange(10**11, 10**12)}"
        if not imp_uid.endswith(("0", "404", "777")) and imp_uid not in ids:
            ids.append(imp_uid)
    path = tmp_path / "paid.csv"
    path.write_text(
        "imp_uid,status\n" + "".join(f"{i},DELIVERY_START\n" for i in ids), encoding="utf-8"
    )
    return path


def assert_audit_agrees(results: pd.DataFrame, orders: dict[str, dict]) -> None:
    """The server saw exactly the rows that were sent, and each success changed its order once."""
    sent = results[results["attempts"].astype(int) > 0]
    assert set(orders) == set(sent["imp_uid"].str.strip())
    for row in sent.itertuples():
        order = orders[row.imp_uid.strip()]
        # every attempt of the row reached the server (a dropped or hung one included)
        assert order["requests"] == int(row.attempts), row
        if row.outcome == "succeeded":
            changes = [event for event in order["history"] if event["kind"] == "changed"]
            assert len(changes) == 1, order
            assert order["state"] == row.applied_status


def test_sample_orders_all_succeed(tmp_path):
    with sandbox() as server:
        result, results, summary = run(
            server, SAMPLES / "orders.csv", tmp_path / "o", "--rate", "0"
        )
        stats, orders = audit(server)
    assert result.exit_code == 0, result.output
    assert len(results) == 50 and set(results["outcome"]) == {"succeeded"}
    assert list(results["row"].astype(int)) == list(range(2, 52))
    assert stats["state_changes"] == 50 and stats["no_ops"] == 0
    assert stats["requests_by_path"]["/payco/orders/status"] == {"200": 50}
    assert stats["tokens_issued"] == 1
    assert summary["requests"]["total"] == 50
    assert_audit_agrees(results, orders)


def test_sample_with_errors_explains_every_failure(tmp_path):
    with sandbox() as server:
        result, results, summary = run(
            server, SAMPLES / "orders_with_errors.csv", tmp_path / "o", "--rate", "0"
        )
        stats, orders = audit(server)
    assert result.exit_code == 1
    assert summary["outcomes"] == {
        "succeeded": 6,
        "failed": 2,
        "unknown": 0,
        "invalid": 8,
        "duplicate": 1,
        "not_sent": 0,
    }
    not_ok = results[results["outcome"] != "succeeded"]
    assert (not_ok["reason"] != "").all()
    failed = results[results["outcome"] == "failed"].set_index("row")
    assert set(failed["error_kind"]) == {"business", "not_found"}
    # nothing was asked of the server for invalid or duplicate rows
    unsent = results[results["outcome"].isin(["invalid", "duplicate"])]
    assert (unsent["attempts"] == "0").all()
    assert stats["requests_by_path"]["/payco/orders/status"] == {"200": 7, "404": 1}
    assert_audit_agrees(results, orders)


@pytest.mark.parametrize(
    ("faults", "options"),
    [
        pytest.param({"error_rate": 0.3, "seed": 3}, ["--max-attempts", "10"], id="errors"),
        pytest.param({"throttle": 15}, [], id="throttle"),
        pytest.param({"latency_ms": 40, "jitter_ms": 20}, [], id="latency"),
        pytest.param(
            {"hang_rate": 0.15, "hang_seconds": 5, "seed": 5},
            ["--timeout", "0.4", "--max-attempts", "10"],
            id="hang",
        ),
        pytest.param({"drop_rate": 0.2, "seed": 11}, ["--max-attempts", "10"], id="drop"),
    ],
)
def test_every_row_succeeds_through_each_fault(tmp_path, faults, options):
    input_path = paid_orders(tmp_path, 30)
    with sandbox(**faults) as server:
        result, results, summary = run(
            server, input_path, tmp_path / "o", "--rate", "0", "--concurrency", "6", *options
        )
        stats, orders = audit(server)
    assert result.exit_code == 0, (result.output, results[results["outcome"] != "succeeded"])
    assert len(results) == 30 and set(results["outcome"]) == {"succeeded"}
    assert stats["state_changes"] == 30
    assert_audit_agrees(results, orders)
    codes = stats["requests_by_path"]["/payco/orders/status"]
    if "throttle" in faults:
        assert summary["requests"]["http_429"] == int(codes.get("429", 0)) > 0
    if "error_rate" in faults:
        assert int(codes.get("500", 0)) + int(codes.get("503", 0)) > 0
    if "hang_rate" in faults:
        # a request that hung was applied; its retry found the order moved already (a no-op)
        assert stats["hung"] > 0 and stats["no_ops"] > 0
    if "drop_rate" in faults:
        assert stats["dropped"] > 0 and stats["no_ops"] == stats["dropped"]
    if "latency_ms" in faults:
        assert summary["latency_ms"]["p50"] >= 20


def test_token_that_expires_mid_run_is_renewed(tmp_path):
    input_path = paid_orders(tmp_path, 30)
    with sandbox(token_ttl=2) as server:
        # 30 rows at 10 per second: 3 s, longer than the token lives
        result, results, _ = run(server, input_path, tmp_path / "o", "--rate", "10")
        stats, orders = audit(server)
    assert result.exit_code == 0, result.output
    assert set(results["outcome"]) == {"succeeded"}
    assert stats["tokens_issued"] >= 2
    assert_audit_agrees(results, orders)


def test_the_run_slows_down_to_what_a_throttling_server_allows(tmp_path):
    input_path = paid_orders(tmp_path, 300)
    with sandbox(throttle=30) as server:
        result, results, summary = run(
            server, input_path, tmp_path / "o", "--rate", "100", "--concurrency", "8"
        )
        stats, orders = audit(server)
    assert result.exit_code == 0, result.output
    assert set(results["outcome"]) == {"succeeded"}
    requests = summary["requests"]
    assert requests["http_429"] < 0.05 * requests["total"]
    # successes per second of sending: at least 80% of the 30 the server allows
    successes_per_second = requests["per_second"] * 300 / requests["total"]
    assert successes_per_second >= 0.8 * 30
    assert requests["slowed_down"] >= 1
    assert_audit_agrees(results, orders)


def test_the_error_budget_stops_a_run_against_a_failing_server(tmp_path):
    input_path = paid_orders(tmp_path, 400)
    with sandbox(error_rate=0.9, seed=2) as server:
        result, results, summary = run(
            server, input_path, tmp_path / "o", "--rate", "0", "--max-attempts", "2"
        )
        _, orders = audit(server)
    assert result.exit_code == 3
    assert "payco-batch: aborted: the error budget is spent" in result.stderr
    assert f"payco-batch resume {tmp_path / 'o'}" in result.stderr
    assert summary["aborted_because"].startswith("the error budget is spent")
    counts = summary["outcomes"]
    assert counts["not_sent"] > 200  # stopped early, not after trying every row
    assert sum(counts.values()) == 400
    assert_audit_agrees(results, orders)


def test_the_deadline_stops_starting_rows(tmp_path):
    input_path = paid_orders(tmp_path, 200)
    with sandbox() as server:
        result, results, summary = run(
            server, input_path, tmp_path / "o", "--rate", "20", "--deadline-in", "1s"
        )
        _, orders = audit(server)
    assert result.exit_code == 3
    assert "payco-batch: aborted: the deadline" in result.stderr
    assert "payco-batch resume" in result.stderr
    counts = summary["outcomes"]
    assert 0 < counts["succeeded"] < 200 and counts["not_sent"] == 200 - counts["succeeded"]
    assert_audit_agrees(results, orders)
