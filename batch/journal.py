"""The run's journal: an append-only JSON Lines file, one record per event, on disk at once.

Line 1 is the run header; then one `outcome` record per sent row as soon as its fate is
final. The reports are built from it, so a run that dies part-way still leaves on disk the
fate of every row that finished.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from batch.outcomes import RowOutcome

JOURNAL_NAME = "journal.jsonl"


class Journal:
    """Appends records to `path`; use as a context manager so the file is always closed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def __enter__(self) -> Journal:
        self._file = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write_header(self, header: dict[str, Any]) -> None:
        self._append({"type": "header", **header})

    def record(self, outcome: RowOutcome) -> None:
        self._append(outcome.to_record())

    def _append(self, record: dict[str, Any]) -> None:
        if self._file is None:
            raise RuntimeError("the journal is not open")
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        # Flushed per record: the OS has it even if this process dies the next instant.
        self._file.flush()


def read_outcomes(path: Path) -> Iterator[dict[str, Any]]:
    """The outcome records of a journal, in the order they were written."""
    with path.open(encoding="utf-8") as file:
        for line in file:
            if not line.endswith("\n"):
                return  # a last line cut short by a crash carries no complete outcome
            record = json.loads(line)
            if record.get("type") == "outcome":
                yield record
