"""The run's journal: an append-only JSON Lines file, one record per event, on disk at once.

- `header`: the first line: input SHA-256, tool version, target, options without secrets.
- `resume`: a later run continuing this one (same fields as the header).
- `intent`: written just before each status request is sent.
- `outcome`: a row's fate, as soon as it is known.

Every record is flushed at once, so a killed process loses nothing the OS was given, and
the file is fsync'd at least once a second and at the end, so a power cut loses at most the
last second. The reports are built from the journal alone (with the input), so they can
always be rebuilt, and a later run can resume where this one stopped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from batch.outcomes import RowOutcome

JOURNAL_NAME = "journal.jsonl"
# Built once: json.dumps with any option builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False)
SYNC_INTERVAL = 1.0


class JournalError(ValueError):
    """The journal cannot be read as one: no header, or a line in the middle is not JSON."""


class EmptyJournalError(JournalError):
    """Not even the header is complete: the run died before it could send anything."""


class Journal:
    """Appends records to `path`; use as a context manager so the file is always closed."""

    def __init__(self, path: Path, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._monotonic = monotonic
        # Unbuffered binary: each record is one write() straight to the OS, the cheapest way
        # to have it survive this process (about 2 records per row, so it is on the hot path).
        self._fd: int | None = None
        self._synced_at = 0.0

    def __enter__(self) -> Journal:
        _cut_torn_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        self._synced_at = self._monotonic()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None

    def write_header(self, header: dict[str, Any], *, resuming: bool = False) -> None:
        self._append({"type": "resume" if resuming else "header", **header})

    def intent(self, row: int, attempt: int) -> None:
        """About to send a request for `row`: if no outcome follows, it may have landed."""
        # Two ints: formatted directly, at a fraction of json.dumps' cost on the hot path.
        self._write(f'{{"type": "intent", "row": {int(row)}, "attempt": {int(attempt)}}}\n')

    def record(self, outcome: RowOutcome) -> None:
        self._append(outcome.to_record())

    def sync(self) -> None:
        """fsync now: what was written survives a power cut."""
        if self._fd is not None:
            os.fsync(self._fd)
            self._synced_at = self._monotonic()

    def sync_if_due(self) -> None:
        if self._monotonic() - self._synced_at >= SYNC_INTERVAL:
            self.sync()

    def _append(self, record: dict[str, Any]) -> None:
        self._write(_ENCODER.encode(record) + "\n")

    def _write(self, line: str) -> None:
        if self._fd is None:
            raise RuntimeError("the journal is not open")
        data = line.encode("utf-8")
        # Written at once, not buffered: the OS has it even if this process dies the next
        # instant. A regular file takes it all in one write but for a full disk or a signal.
        while data:
            data = data[os.write(self._fd, data) :]
        self.sync_if_due()


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line cut short by a crash, so that appending does not glue onto it."""
    try:
        with path.open("rb+") as file:
            size = file.seek(0, os.SEEK_END)
            if size == 0:
                return
            file.seek(size - 1)
            if file.read(1) == b"\n":
                return
            # Find the last complete line's end; reading the tail is enough in practice.
            start = max(0, size - 1_048_576)
            file.seek(start)
            tail = file.read()
            cut = tail.rfind(b"\n")
            file.truncate(start + cut + 1 if cut >= 0 else start)
    except FileNotFoundError:
        return


# The fields of an outcome record that take a handful of values in a whole run. A row keeps
# one number for their combination: kept as a dict per row, outcomes took about 2 KB a row
# (docs/benchmarks.md), and the reports need every row's outcome at once.
ANSWER_FIELDS = (
    "outcome",
    "error_kind",
    "http_status",
    "api_code",
    "api_message",
    "applied_status",
    "rate_limited",
    "final",
    "resent",
)
# Records parsed before they are put in place; the batch is all the reader holds per record.
BATCH = 10_000
# finished_at is one value per row, but its first 19 characters (date and second) take one
# value per second of the run and the rest (milliseconds and UTC offset) at most a thousand
# per offset: each part is coded like the answer fields.
SECOND = 19


@dataclass(frozen=True)
class SplitText:
    """One text per row, as two codes: its first SECOND characters, and the rest (-1: none)."""

    heads: np.ndarray
    head_values: list[str]
    tails: np.ndarray
    tail_values: list[str]

    def take(self, positions: slice | np.ndarray = slice(None)) -> np.ndarray:
        """The texts at `positions`, "" where there is none."""
        heads = np.array(["", *self.head_values], dtype=object).take(self.heads[positions] + 1)
        tails = np.array(["", *self.tail_values], dtype=object).take(self.tails[positions] + 1)
        return heads + tails


@dataclass
class JournalContents:
    """What a journal says, row by row for the rows of an input, as columns of numbers.

    `answer` holds, for each row of `rows`, the number of its last outcome's ANSWER_FIELDS in
    `answers` (-1: no outcome); `elapsed_ms` and `finished` the rest of that outcome;
    `intents` the requests sent for it across runs. `in_doubt`: rows with an intent after
    their last outcome (or with no outcome): sent, fate unknown.
    """

    header: dict[str, Any]
    rows: pd.Index
    answers: pd.DataFrame
    answer: np.ndarray
    elapsed_ms: np.ndarray
    finished: SplitText
    intents: np.ndarray
    in_doubt: set[int] = field(default_factory=set)
    runs: int = 1  # the run that wrote the header and the runs that resumed it
    torn_tail: bool = False  # the last line was cut short by a crash and was ignored

    @property
    def answered(self) -> np.ndarray:
        """Which rows have an outcome."""
        return self.answer >= 0

    def column(self, name: str) -> pd.Series:
        """One of ANSWER_FIELDS for every row (missing where no outcome), as a Categorical."""
        codes, categories = pd.factorize(self.answers[name])
        # The smallest integers that hold the codes: from_codes would copy anything larger.
        dtype = np.int8 if len(categories) < 127 else np.int32
        row_codes = np.full(len(self.rows), -1, dtype=dtype)
        answered = self.answered
        row_codes[answered] = codes.astype(dtype).take(self.answer[answered])
        values = pd.Categorical.from_codes(row_codes, categories)
        return pd.Series(values, index=self.rows, name=name)

    def values(self, name: str, missing: Any) -> np.ndarray:
        """One of ANSWER_FIELDS for every row as a numpy array, `missing` where no outcome."""
        table = self.answers[name].to_numpy()
        values = np.full(len(self.rows), missing, dtype=table.dtype)
        answered = self.answered
        values[answered] = table.take(self.answer[answered])
        return values

    def finished_at(self, positions: slice | np.ndarray = slice(None)) -> np.ndarray:
        """finished_at of the rows at `positions` (of `rows`), "" where no outcome."""
        return self.finished.take(positions)

    def outcomes(self) -> pd.DataFrame:
        """Every field of each answered row's last outcome, indexed by row."""
        answered = self.answered
        frame = self.answers.iloc[self.answer[answered]].set_axis(self.rows[answered])
        frame["elapsed_ms"] = self.elapsed_ms[answered]
        frame["finished_at"] = self.finished_at(answered)
        return frame


def read_journal(path: Path, rows: pd.Index) -> JournalContents:
    """Read a journal for the input rows `rows`, tolerating a last line torn by a crash.

    Records of rows that `rows` lacks are left out: they can only come from another input,
    which a resume refuses by its SHA-256 (resume.check_same_input).
    """
    reader = _Reader(rows)
    header: dict[str, Any] | None = None
    runs = 1
    torn = False
    try:
        with path.open("rb") as file:
            for number, line in enumerate(file, start=1):
                if not line.endswith(b"\n"):
                    # A complete record ends with "\n". Anything else is a record whose
                    # write was cut short (maybe inside a multi-byte character): it never
                    # happened. Only the last line can be so.
                    torn = True
                    break
                try:
                    record = json.loads(line)
                except ValueError:  # UnicodeDecodeError included
                    raise JournalError(f"{path} line {number} is not a journal record.") from None
                kind = record.get("type") if isinstance(record, dict) else None
                if header is None:
                    if kind != "header":
                        raise JournalError(f"{path} does not start with a run header.")
                    header = record
                elif kind == "intent":
                    reader.intent(record["row"])
                elif kind == "outcome":
                    reader.outcome(record)
                elif kind == "resume":
                    runs += 1
    except OSError as error:
        raise JournalError(f"{path} cannot be read: {error.strerror}.") from None
    if header is None:
        raise EmptyJournalError(f"{path} is empty: the run stopped before it sent anything.")
    return reader.contents(header, runs, torn)


def read_header(path: Path) -> dict[str, Any]:
    """The first record of a journal, the run's header."""
    try:
        with path.open("rb") as file:
            line = file.readline()
    except OSError as error:
        raise JournalError(f"{path} cannot be read: {error.strerror}.") from None
    if not line.endswith(b"\n"):
        raise EmptyJournalError(f"{path} is empty: the run stopped before it sent anything.")
    try:
        record = json.loads(line)
    except ValueError:
        raise JournalError(f"{path} line 1 is not a journal record.") from None
    if not isinstance(record, dict) or record.get("type") != "header":
        raise JournalError(f"{path} does not start with a run header.")
    return record


class _Codes(dict):
    """Values numbered in the order they are first seen."""

    def code(self, value: Any) -> int:
        return self.setdefault(value, len(self))


class _Reader:
    """Puts records in place by batches, in columns as long as the input."""

    def __init__(self, rows: pd.Index) -> None:
        self.rows = rows
        size = len(rows)
        self.answer = np.full(size, -1, dtype=np.int32)
        self.elapsed_ms = np.full(size, np.nan)
        self.seconds = np.full(size, -1, dtype=np.int32)
        self.rests = np.full(size, -1, dtype=np.int32)
        self.intents = np.zeros(size, dtype=np.int32)
        self.answer_codes, self.second_codes, self.rest_codes = _Codes(), _Codes(), _Codes()
        self.in_doubt: set[int] = set()
        self.pending: list[tuple[int, int, float, int, int]] = []
        self.pending_intents: list[int] = []

    def intent(self, row: int) -> None:
        self.pending_intents.append(row)
        self.in_doubt.add(row)
        if len(self.pending_intents) >= BATCH:
            self._place_intents()

    def outcome(self, record: dict[str, Any]) -> None:
        answer = tuple(record.get(name) for name in ANSWER_FIELDS[:-3]) + (
            record.get("rate_limited") or 0,
            record.get("final", True) is not False,
            bool(record.get("resent", False)),
        )
        finished = str(record.get("finished_at") or "")
        self.pending.append(
            (
                record["row"],
                self.answer_codes.code(answer),
                record.get("elapsed_ms", np.nan),
                self.second_codes.code(finished[:SECOND]),
                self.rest_codes.code(finished[SECOND:]),
            )
        )
        self.in_doubt.discard(record["row"])
        if len(self.pending) >= BATCH:
            self._place_outcomes()

    def contents(self, header: dict[str, Any], runs: int, torn: bool) -> JournalContents:
        self._place_intents()
        self._place_outcomes()
        answers = pd.DataFrame.from_records(list(self.answer_codes), columns=list(ANSWER_FIELDS))
        answers = answers.astype(
            {"http_status": "Int64", "api_code": "Int64", "rate_limited": np.int32}
        ).astype({"final": bool, "resent": bool})
        return JournalContents(
            header=header,
            rows=self.rows,
            answers=answers,
            answer=self.answer,
            elapsed_ms=self.elapsed_ms,
            finished=SplitText(
                self.seconds, list(self.second_codes), self.rests, list(self.rest_codes)
            ),
            intents=self.intents,
            in_doubt={row for row in self.in_doubt if row in self.rows},
            runs=runs,
            torn_tail=torn,
        )

    def _place_intents(self) -> None:
        positions = self.rows.get_indexer(self.pending_intents)
        np.add.at(self.intents, positions[positions >= 0], 1)
        self.pending_intents = []

    def _place_outcomes(self) -> None:
        if not self.pending:
            return
        rows, answers, elapsed, seconds, rests = zip(*self.pending, strict=True)
        self.pending = []
        positions = self.rows.get_indexer(rows)
        # A row's last outcome wins: within a batch, keep each row's last record only.
        keep = (positions >= 0) & ~pd.Index(positions).duplicated(keep="last")
        positions = positions[keep]
        self.answer[positions] = np.asarray(answers)[keep]
        self.elapsed_ms[positions] = np.asarray(elapsed, dtype=float)[keep]
        self.seconds[positions] = np.asarray(seconds)[keep]
        self.rests[positions] = np.asarray(rests)[keep]
