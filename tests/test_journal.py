"""The journal: JSON Lines written and flushed per record, fsync'd by the second, read back."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from batch.journal import Journal, JournalError, read_header, read_journal
from batch.outcomes import BUSINESS, FAILED, SUCCEEDED, TIMEOUT, RowOutcome

HEADER = {"input": "/data/orders.csv", "input_sha256": "ab" * 32, "target": "sandbox"}
# The input's rows the journal is read for (spreadsheet row numbers).
ROWS = pd.Index(range(2, 10), name="row")


def outcome(row: int, result: str = SUCCEEDED, error_kind: str = "", **fields) -> RowOutcome:
    values = {
        "row": row,
        "imp_uid": f"imp_{row}",
        "status": "DELIVERY_START",
        "outcome": result,
        "error_kind": error_kind,
        "http_status": 200,
        "api_code": 0,
        "api_message": None,
        "applied_status": "DELIVERY_START" if result == SUCCEEDED else None,
        "attempts": 1,
        "rate_limited": 0,
        "elapsed_ms": 12.5,
        "finished_at": "2026-12-04T18:00:01+09:00",
    }
    values.update(fields)
    return RowOutcome(**values)


def lines_of(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def write_lines(path: Path, *records: dict, tail: bytes = b"") -> Path:
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    path.write_bytes(body.encode("utf-8") + tail)
    return path


@pytest.fixture
def fsyncs(monkeypatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr("batch.journal.os.fsync", lambda fd: calls.append(fd))
    return calls


# Writing


def test_header_intents_and_outcomes_are_json_lines_in_order(tmp_path):
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.write_header(HEADER)
        journal.intent(2, 1)
        journal.record(outcome(2))

    header, intent, result = lines_of(path)
    assert header == {"type": "header", **HEADER}
    assert intent == {"type": "intent", "row": 2, "attempt": 1}
    assert result["type"] == "outcome"
    assert result["row"] == 2 and result["outcome"] == SUCCEEDED and result["final"] is True


def test_resuming_header_is_written_as_a_resume_record(tmp_path):
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.write_header(HEADER, resuming=True)

    assert lines_of(path) == [{"type": "resume", **HEADER}]


def test_korean_text_is_written_as_utf8_not_escaped(tmp_path):
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.record(outcome(3, FAILED, BUSINESS, api_message="이미 배송된 주문입니다"))

    raw = path.read_bytes()
    assert "이미 배송된 주문입니다".encode() in raw
    assert b"\\u" not in raw


def test_each_record_is_on_disk_before_the_journal_closes(tmp_path):
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.write_header(HEADER)
        assert [r["type"] for r in lines_of(path)] == ["header"]
        journal.intent(2, 1)
        assert [r["type"] for r in lines_of(path)] == ["header", "intent"]
        journal.record(outcome(2))
        assert [r["type"] for r in lines_of(path)] == ["header", "intent", "outcome"]


def test_writing_to_a_journal_that_is_not_open_raises(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    with pytest.raises(RuntimeError, match="not open"):
        journal.intent(2, 1)


# fsync


def test_appends_within_a_second_do_not_fsync(tmp_path, clock, fsyncs):
    with Journal(tmp_path / "journal.jsonl", monotonic=clock.monotonic) as journal:
        journal.write_header(HEADER)
        clock.advance(0.5)
        journal.intent(2, 1)
        clock.advance(0.49)
        journal.record(outcome(2))
        assert fsyncs == []


def test_an_append_a_second_after_the_last_fsync_fsyncs(tmp_path, clock, fsyncs):
    with Journal(tmp_path / "journal.jsonl", monotonic=clock.monotonic) as journal:
        journal.write_header(HEADER)
        clock.advance(1.0)
        journal.intent(2, 1)
        assert len(fsyncs) == 1
        clock.advance(0.5)  # the interval starts again from that fsync
        journal.record(outcome(2))
        assert len(fsyncs) == 1


def test_closing_the_journal_always_fsyncs(tmp_path, clock, fsyncs):
    with Journal(tmp_path / "journal.jsonl", monotonic=clock.monotonic) as journal:
        journal.write_header(HEADER)
        assert fsyncs == []
    assert len(fsyncs) == 1


# Reading


def test_read_journal_keeps_the_header_and_the_last_outcome_of_each_row(tmp_path):
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.write_header(HEADER)
        journal.intent(2, 1)
        journal.record(outcome(2, FAILED, "timeout", final=False))
        journal.intent(2, 2)
        journal.record(outcome(2, SUCCEEDED, attempts=2, elapsed_ms=30.0))
        journal.intent(3, 1)
        journal.record(outcome(3, FAILED, BUSINESS))

    contents = read_journal(path, ROWS)
    assert contents.header == {"type": "header", **HEADER}
    outcomes = contents.outcomes()
    assert list(outcomes.index) == [2, 3]
    assert outcomes.loc[2, "outcome"] == SUCCEEDED
    assert outcomes.loc[2, "elapsed_ms"] == 30.0
    assert bool(outcomes.loc[2, "final"]) is True
    assert outcomes.loc[3, "error_kind"] == BUSINESS


def test_read_journal_counts_intents_per_row(tmp_path):
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.write_header(HEADER)
        for row, attempt in [(2, 1), (3, 1), (2, 2), (2, 3)]:
            journal.intent(row, attempt)

    assert list(read_journal(path, ROWS).intents) == [3, 1, 0, 0, 0, 0, 0, 0]


def test_rows_with_an_intent_after_their_last_outcome_are_in_doubt(tmp_path):
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.write_header(HEADER)
        journal.intent(2, 1)
        journal.record(outcome(2))  # settled
        journal.intent(3, 1)  # never answered
        journal.intent(4, 1)
        journal.record(outcome(4, FAILED, "timeout"))
        journal.intent(4, 1)  # sent again by a later run, then the crash

    assert read_journal(path, ROWS).in_doubt == {3, 4}


def test_runs_is_one_plus_the_resume_records(tmp_path):
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.write_header(HEADER)
        journal.write_header(HEADER, resuming=True)
        journal.intent(2, 1)
        journal.write_header(HEADER, resuming=True)

    assert read_journal(path, ROWS).runs == 3


def test_a_torn_last_line_is_ignored(tmp_path):
    torn = b'{"type": "outcome", "row": 2, "outc'
    path = write_lines(
        tmp_path / "journal.jsonl",
        {"type": "header", **HEADER},
        {"type": "intent", "row": 2, "attempt": 1},
        tail=torn,
    )

    contents = read_journal(path, ROWS)
    assert contents.torn_tail is True
    assert contents.outcomes().empty
    assert contents.in_doubt == {2}


def test_a_complete_journal_has_no_torn_tail(tmp_path):
    path = write_lines(tmp_path / "journal.jsonl", {"type": "header", **HEADER})
    assert read_journal(path, ROWS).torn_tail is False


def test_a_last_line_torn_inside_a_korean_character_is_ignored(tmp_path):
    record = json.dumps({"type": "outcome", "row": 2, "api_message": "배송"}, ensure_ascii=False)
    raw = record.encode("utf-8")
    cut = raw.index("배".encode()) + 1  # in the middle of a 3-byte character
    path = write_lines(tmp_path / "journal.jsonl", {"type": "header", **HEADER}, tail=raw[:cut])

    contents = read_journal(path, ROWS)
    assert contents.torn_tail is True
    assert contents.outcomes().empty


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"type": "intent", "row": 2, "attempt": 1}\n', "does not start with a run header"),
        (b"", "is empty"),
        (
            b'{"type": "header"}\n{"type": "intent", "row": 2, "attempt": 1}\nnot json\n'
            b'{"type": "intent", "row": 3, "attempt": 1}\n',
            "line 3 is not a journal record",
        ),
    ],
    ids=["no-header", "empty", "middle-line-not-json"],
)
def test_a_malformed_journal_raises_naming_the_problem(tmp_path, content, message):
    path = tmp_path / "journal.jsonl"
    path.write_bytes(content)
    with pytest.raises(JournalError, match=message):
        read_journal(path, ROWS)


def test_a_missing_journal_raises(tmp_path):
    with pytest.raises(JournalError, match="cannot be read"):
        read_journal(tmp_path / "journal.jsonl", ROWS)


# Reopening after a crash


def test_opening_cuts_a_torn_last_line_so_appends_start_on_a_fresh_line(tmp_path):
    path = write_lines(
        tmp_path / "journal.jsonl",
        {"type": "header", **HEADER},
        {"type": "intent", "row": 2, "attempt": 1},
        tail=b'{"type": "outcome", "row": 2, "out',
    )
    with Journal(path) as journal:
        journal.write_header(HEADER, resuming=True)
        journal.intent(2, 1)

    assert [r["type"] for r in lines_of(path)] == ["header", "intent", "resume", "intent"]
    contents = read_journal(path, ROWS)
    assert contents.torn_tail is False
    assert contents.runs == 2
    assert contents.intents[ROWS.get_loc(2)] == 2


def test_opening_leaves_a_file_ending_in_a_newline_untouched(tmp_path):
    path = write_lines(
        tmp_path / "journal.jsonl",
        {"type": "header", **HEADER},
        {"type": "intent", "row": 2, "attempt": 1},
    )
    before = path.read_bytes()
    with Journal(path):
        pass

    assert path.read_bytes() == before


# Reading as columns


def test_the_last_outcome_of_a_row_wins_within_and_across_batches(tmp_path, monkeypatch):
    monkeypatch.setattr("batch.journal.BATCH", 3)
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.write_header(HEADER)
        for row, result, elapsed in [
            (2, FAILED, 1.0),
            (3, FAILED, 2.0),
            (2, FAILED, 3.0),  # same batch as the first record of row 2
            (4, SUCCEEDED, 4.0),
            (3, SUCCEEDED, 5.0),  # a later batch than the first record of row 3
            (2, SUCCEEDED, 6.0),
            (5, FAILED, 7.0),
        ]:
            journal.record(
                outcome(row, result, "" if result == SUCCEEDED else TIMEOUT, elapsed_ms=elapsed)
            )

    outcomes = read_journal(path, ROWS).outcomes()
    assert outcomes["outcome"].to_dict() == {2: SUCCEEDED, 3: SUCCEEDED, 4: SUCCEEDED, 5: FAILED}
    assert outcomes["elapsed_ms"].to_dict() == {2: 6.0, 3: 5.0, 4: 4.0, 5: 7.0}


def test_rows_sharing_an_answer_share_one_entry_of_answers(tmp_path):
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.write_header(HEADER)
        for row in ROWS:
            journal.record(outcome(row, elapsed_ms=float(row)))
        journal.record(outcome(9, FAILED, BUSINESS, api_message="이미 취소된 주문"))

    contents = read_journal(path, ROWS)
    assert len(contents.answers) == 2
    assert list(contents.answer) == [0] * 7 + [1]
    assert list(contents.elapsed_ms) == [float(row) for row in ROWS[:-1]] + [12.5]


def test_finished_at_comes_back_exactly_and_empty_for_rows_without_an_outcome(tmp_path):
    stamps = {2: "2026-12-04T18:00:01.123+09:00", 3: "2026-12-04T18:00:01.999-05:30", 5: "오늘"}
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.write_header(HEADER)
        for row, stamp in stamps.items():
            journal.record(outcome(row, finished_at=stamp))

    contents = read_journal(path, ROWS)
    assert list(contents.finished_at()) == [stamps[2], stamps[3], "", stamps[5], "", "", "", ""]
    assert list(contents.finished_at(slice(1, 3))) == [stamps[3], ""]


def test_a_column_is_categorical_with_its_values_and_missing_where_no_outcome(tmp_path):
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.write_header(HEADER)
        journal.record(outcome(2, http_status=404))
        journal.record(outcome(4, FAILED, TIMEOUT, http_status=None))

    status = read_journal(path, ROWS).column("http_status")
    assert list(status.index) == list(ROWS)
    assert status.astype(object).where(status.notna(), None).tolist()[:3] == [404, None, None]
    assert status.to_csv(index=False, header=False).splitlines()[0] == "404"  # not 404.0


def test_records_of_rows_the_input_does_not_have_are_left_out(tmp_path):
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.write_header(HEADER)
        journal.intent(99, 1)
        journal.record(outcome(99))
        journal.intent(2, 1)

    contents = read_journal(path, ROWS)
    assert contents.outcomes().empty
    assert contents.in_doubt == {2}
    assert contents.intents.sum() == 1


def test_read_header_reads_the_first_line_only(tmp_path):
    path = write_lines(tmp_path / "journal.jsonl", {"type": "header", **HEADER}, tail=b"{torn")
    assert read_header(path) == {"type": "header", **HEADER}
