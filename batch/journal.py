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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass
class JournalContents:
    """What a journal says: its header, each row's last outcome, and the requests per row."""

    header: dict[str, Any]
    outcomes: dict[int, dict[str, Any]] = field(default_factory=dict)
    intents: Counter[int] = field(default_factory=Counter)
    # Rows with an intent after their last outcome (or with no outcome): sent, fate unknown.
    in_doubt: set[int] = field(default_factory=set)
    runs: int = 0
    torn_tail: bool = False  # the last line was cut short by a crash and was ignored


def read_journal(path: Path) -> JournalContents:
    """Read a journal, tolerating a last line torn by a crash in the middle of a write."""
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as error:
        raise JournalError(f"{path} cannot be read: {error.strerror}.") from None

    # A complete file ends with "\n", so the last piece is empty. Anything else there is a
    # record whose write was cut short (maybe inside a multi-byte character): it never
    # happened. Lines are decoded one by one, after that piece is set aside.
    torn = lines.pop() != b""
    contents: JournalContents | None = None
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise JournalError(f"{path} line {number} is not a journal record.") from None
        kind = record.get("type") if isinstance(record, dict) else None
        if contents is None:
            if kind != "header":
                raise JournalError(f"{path} does not start with a run header.")
            contents = JournalContents(header=record, runs=1)
        elif kind == "intent":
            contents.intents[record["row"]] += 1
            contents.in_doubt.add(record["row"])
        elif kind == "outcome":
            contents.outcomes[record["row"]] = record
            contents.in_doubt.discard(record["row"])
        elif kind == "resume":
            contents.runs += 1
    if contents is None:
        raise EmptyJournalError(f"{path} is empty: the run stopped before it sent anything.")
    contents.torn_tail = torn
    return contents
