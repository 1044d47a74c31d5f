"""Resuming a run from its journal, and finding an earlier complete run of the same input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from batch.errors import InputError, OutputFolderError
from batch.inputs import load_orders
from batch.journal import JOURNAL_NAME, Journal, JournalContents, read_journal
from batch.outcomes import (
    BUSINESS,
    CLIENT_ERROR,
    FAILED,
    NETWORK,
    NOT_FOUND,
    RATE_LIMITED,
    SERVER_ERROR,
    SUCCEEDED,
    TIMEOUT,
    UNKNOWN,
    RowOutcome,
)
from batch.resume import (
    check_same_input,
    find_complete_run,
    input_of,
    open_previous_run,
    rows_to_send,
)

SHA = "ab" * 32
ROWS = pd.Index(range(2, 10), name="row")
OPTIONS = {"concurrency": 4, "retry_failed": False}


def header(**fields) -> dict:
    return {
        "input": "/data/orders.csv",
        "input_sha256": SHA,
        "target": "sandbox",
        "options": OPTIONS,
        **fields,
    }


def outcome(row: int, result: str = SUCCEEDED, error_kind: str = "", final=True) -> RowOutcome:
    return RowOutcome(
        row=row,
        imp_uid=f"imp_{row}",
        status="DELIVERY_START",
        outcome=result,
        error_kind=error_kind,
        http_status=200,
        api_code=0,
        api_message=None,
        applied_status=None,
        attempts=1,
        rate_limited=0,
        elapsed_ms=10.0,
        finished_at="2026-12-04T18:00:01+09:00",
        final=final,
    )


def write_journal(folder: Path, *events, **header_fields) -> Path:
    """events: ("intent", row) or a RowOutcome, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / JOURNAL_NAME
    with Journal(path) as journal:
        journal.write_header(header(**header_fields))
        for event in events:
            if isinstance(event, RowOutcome):
                journal.record(event)
            else:
                journal.intent(event[1], 1)
    return path


def previous_run(tmp_path: Path, *events) -> JournalContents:
    return read_journal(write_journal(tmp_path / "run", *events), ROWS)


@pytest.fixture
def to_send() -> pd.DataFrame:
    rows = range(2, 10)
    return pd.DataFrame(
        {"imp_uid": [f"imp_{r}" for r in rows], "status": ["DELIVERY_START"] * len(rows)},
        index=pd.Index(rows, name="row"),
    )


def sent_rows(frame: pd.DataFrame) -> list[int]:
    return frame.index.tolist()


# open_previous_run


@pytest.mark.parametrize("make", [lambda p: None, lambda p: p.mkdir()], ids=["missing", "empty"])
def test_a_missing_or_empty_folder_holds_no_previous_run(tmp_path, make):
    out = tmp_path / "out"
    make(out)
    assert open_previous_run(out, ROWS) is None


def test_a_non_empty_folder_without_a_journal_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("hello")
    with pytest.raises(OutputFolderError, match="already exists and is not empty"):
        open_previous_run(out, ROWS)


def test_a_file_given_as_the_output_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    out.write_text("not a folder")
    with pytest.raises(OutputFolderError, match="is a file"):
        open_previous_run(out, ROWS)


def test_a_folder_with_a_journal_gives_its_contents(tmp_path):
    out = tmp_path / "out"
    write_journal(out, ("intent", 2), outcome(2))

    previous = open_previous_run(out, ROWS)
    assert isinstance(previous, JournalContents)
    assert previous.header["input_sha256"] == SHA
    assert list(previous.outcomes().index) == [2]


def test_a_broken_journal_cannot_be_resumed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / JOURNAL_NAME).write_text('{"type": "intent", "row": 2, "attempt": 1}\n')
    with pytest.raises(OutputFolderError, match=r"^cannot resume: .*run header"):
        open_previous_run(out, ROWS)


# check_same_input


def test_the_same_input_file_passes(tmp_path, write_csv):
    orders = load_orders(write_csv("imp_uid,status\nimp_1,DELIVERY_START\n"))
    previous = read_journal(write_journal(tmp_path / "out", input_sha256=orders.sha256), ROWS)
    check_same_input(previous, orders, tmp_path / "out")  # no exception


def test_a_different_input_file_is_refused_naming_both_files(tmp_path, write_csv):
    original = load_orders(write_csv("imp_uid,status\nimp_1,DELIVERY_START\n", "first.csv"))
    other = load_orders(write_csv("imp_uid,status\nimp_2,DELIVERY_START\n", "second.csv"))
    previous = read_journal(
        write_journal(tmp_path / "out", input=str(original.path), input_sha256=original.sha256),
        ROWS,
    )
    with pytest.raises(InputError) as raised:
        check_same_input(previous, other, tmp_path / "out")
    message = str(raised.value)
    assert str(other.path) in message
    assert str(original.path) in message
    assert "SHA-256 differ" in message


# rows_to_send


def test_without_a_previous_run_every_row_is_sent(to_send):
    rows, resent = rows_to_send(to_send, None, retry_failed=False)
    assert sent_rows(rows) == list(range(2, 10))
    assert resent == set()


@pytest.mark.parametrize(
    ("result", "kind"), [(SUCCEEDED, ""), (FAILED, NOT_FOUND), (FAILED, BUSINESS)]
)
def test_rows_with_a_final_outcome_are_not_sent_again(tmp_path, to_send, result, kind):
    previous = previous_run(tmp_path, ("intent", 3), outcome(3, result, kind))
    rows, resent = rows_to_send(to_send, previous, retry_failed=False)
    assert sent_rows(rows) == [2, 4, 5, 6, 7, 8, 9]
    assert resent == set()


def test_rows_never_started_are_sent(tmp_path, to_send):
    previous = previous_run(tmp_path, ("intent", 2), outcome(2), ("intent", 3), outcome(3))
    rows, _ = rows_to_send(to_send, previous, retry_failed=False)
    assert sent_rows(rows) == [4, 5, 6, 7, 8, 9]


def test_rows_in_flight_when_the_run_stopped_are_sent_and_flagged_resent(tmp_path, to_send):
    previous = previous_run(tmp_path, ("intent", 2), outcome(2), ("intent", 5))
    rows, resent = rows_to_send(to_send, previous, retry_failed=False)
    assert 5 in sent_rows(rows)
    assert resent == {5}


def test_a_row_stopped_before_its_retries_ran_out_is_sent_but_not_resent(tmp_path, to_send):
    previous = previous_run(tmp_path, ("intent", 4), outcome(4, FAILED, SERVER_ERROR, final=False))
    rows, resent = rows_to_send(to_send, previous, retry_failed=False)
    assert 4 in sent_rows(rows)
    assert resent == set()


RETRYABLE = [
    (FAILED, SERVER_ERROR),
    (FAILED, TIMEOUT),
    (FAILED, NETWORK),
    (FAILED, RATE_LIMITED),
    (UNKNOWN, TIMEOUT),
]


@pytest.mark.parametrize(("result", "kind"), RETRYABLE)
def test_without_retry_failed_passing_failures_are_not_sent_again(tmp_path, to_send, result, kind):
    previous = previous_run(tmp_path, ("intent", 6), outcome(6, result, kind))
    rows, _ = rows_to_send(to_send, previous, retry_failed=False)
    assert 6 not in sent_rows(rows)


@pytest.mark.parametrize(("result", "kind"), RETRYABLE)
def test_retry_failed_sends_passing_failures_again(tmp_path, to_send, result, kind):
    previous = previous_run(tmp_path, ("intent", 6), outcome(6, result, kind))
    rows, resent = rows_to_send(to_send, previous, retry_failed=True)
    assert 6 in sent_rows(rows)
    # an unknown row's earlier request may have landed: flagged; a failed one's did not
    assert resent == ({6} if result == "unknown" else set())


@pytest.mark.parametrize("kind", [NOT_FOUND, BUSINESS, CLIENT_ERROR])
def test_retry_failed_still_skips_failures_that_will_not_pass(tmp_path, to_send, kind):
    previous = previous_run(tmp_path, ("intent", 7), outcome(7, FAILED, kind))
    rows, _ = rows_to_send(to_send, previous, retry_failed=True)
    assert 7 not in sent_rows(rows)


def test_a_settled_row_sent_again_by_a_later_run_that_crashed_is_resent(tmp_path, to_send):
    previous = previous_run(tmp_path, ("intent", 8), outcome(8, SUCCEEDED), ("intent", 8))
    rows, resent = rows_to_send(to_send, previous, retry_failed=False)
    assert 8 in sent_rows(rows)
    assert resent == {8}


# find_complete_run


def write_summary(root: Path, name: str, **changes) -> Path:
    summary = {
        "input": {"path": "/data/orders.csv", "sha256": SHA},
        "target": "sandbox",
        "dry_run": False,
        "exit_code": 0,
    }
    summary.update(changes)
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return folder


def test_an_earlier_complete_run_of_the_same_input_and_target_is_found(tmp_path):
    earlier = write_summary(tmp_path, "run-1")
    assert find_complete_run(tmp_path, SHA, "sandbox", exclude=tmp_path / "run-2") == earlier


@pytest.mark.parametrize(
    "changes",
    [
        {"dry_run": True},
        {"exit_code": 1},
        {"target": "production"},
        {"input": {"path": "/data/orders.csv", "sha256": "cd" * 32}},
    ],
    ids=["dry-run", "exit-code-1", "other-target", "other-sha256"],
)
def test_runs_that_did_not_send_this_input_in_full_are_ignored(tmp_path, changes):
    write_summary(tmp_path, "run-1", **changes)
    assert find_complete_run(tmp_path, SHA, "sandbox", exclude=tmp_path / "run-2") is None


def test_the_excluded_folder_itself_is_ignored(tmp_path):
    current = write_summary(tmp_path, "run-1")
    assert find_complete_run(tmp_path, SHA, "sandbox", exclude=current) is None


def test_an_unreadable_summary_is_skipped(tmp_path):
    broken = tmp_path / "run-1"
    broken.mkdir()
    (broken / "summary.json").write_text('{"input": {"sha256": ', encoding="utf-8")
    good = write_summary(tmp_path, "run-2")
    assert find_complete_run(tmp_path, SHA, "sandbox", exclude=tmp_path / "run-3") == good


def test_a_summary_that_is_not_a_json_object_is_skipped(tmp_path):
    odd = tmp_path / "run-1"
    odd.mkdir()
    (odd / "summary.json").write_text("[]", encoding="utf-8")
    assert find_complete_run(tmp_path, SHA, "sandbox", exclude=tmp_path / "run-2") is None


def test_a_missing_reports_root_finds_nothing(tmp_path):
    missing = tmp_path / "nowhere"
    assert find_complete_run(missing, SHA, "sandbox", exclude=missing / "run-1") is None


# input_of


def test_input_of_gives_the_runs_input_file_and_options(tmp_path):
    write_journal(tmp_path / "run", input="/data/orders.csv")
    assert input_of(tmp_path / "run") == (Path("/data/orders.csv"), OPTIONS)


def test_input_of_a_folder_without_a_journal_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(OutputFolderError, match="holds no payco-batch run"):
        input_of(tmp_path / "run")
