"""Continuing a run from its journal, and refusing to send the same file twice by mistake.

A run folder's journal says which rows reached a final outcome. Resuming sends the others:
rows never started, rows whose request was in flight when the run died (flagged `resent`),
and rows stopped before their retries were used up. `--retry-failed` also sends again the
rows that failed for a reason that may pass (server_error, timeout, network, rate_limited)
and those whose outcome is unknown.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from batch.errors import InputError, OutputFolderError, PaycoBatchError
from batch.inputs import OrdersFile
from batch.journal import (
    JOURNAL_NAME,
    EmptyJournalError,
    JournalContents,
    JournalError,
    read_header,
    read_journal,
)
from batch.outcomes import FAILED, TRANSIENT_KINDS, UNKNOWN


class DoubleSubmissionError(PaycoBatchError):
    """The same input already succeeded in full in an earlier run; --force sends it again."""


def open_previous_run(out_dir: Path, rows: pd.Index) -> JournalContents | None:
    """The journal of the run in `out_dir`, read for the input's `rows`; None if it has none.

    Raises OutputFolderError for a folder that is neither empty nor a run folder.
    """
    journal = _journal_of(out_dir)
    if journal is None:
        return None
    try:
        return read_journal(journal, rows)
    except EmptyJournalError:
        # The run died before its header was complete, so before any request: it can
        # simply start again in the same folder (the torn header is cut off on opening).
        return None
    except JournalError as error:
        raise OutputFolderError(f"cannot resume: {error}") from None


def _journal_of(out_dir: Path) -> Path | None:
    """The journal file in `out_dir`; None when the folder is missing or empty."""
    if not out_dir.exists():
        return None
    if not out_dir.is_dir():
        raise OutputFolderError(f"{out_dir} is a file, not a folder; choose another --out.")
    journal = out_dir / JOURNAL_NAME
    if not journal.exists():
        if any(out_dir.iterdir()):
            raise OutputFolderError(
                f"{out_dir} already exists and is not empty; choose another --out."
            )
        return None
    return journal


def check_same_input(previous: JournalContents, orders: OrdersFile, out_dir: Path) -> None:
    """Refuse to continue a run with a file other than the one it started with."""
    if previous.header.get("input_sha256") != orders.sha256:
        raise InputError(
            f"{orders.path} is not the file the run in {out_dir} was started with "
            f"({previous.header.get('input', 'unknown')}): their SHA-256 differ; "
            "give that file, or choose another --out."
        )


def rows_to_send(
    to_send: pd.DataFrame, previous: JournalContents | None, retry_failed: bool
) -> tuple[pd.DataFrame, set[int]]:
    """The valid rows this run sends, and those among them that an earlier run left in doubt."""
    if previous is None:
        return to_send, set()
    outcome = previous.column("outcome")
    in_doubt = previous.rows.isin(list(previous.in_doubt))
    final = previous.column("final").astype(object).fillna(False).astype(bool).to_numpy()
    worth_retrying = (outcome == UNKNOWN) | (
        (outcome == FAILED) & previous.column("error_kind").isin(TRANSIENT_KINDS)
    )
    done = previous.answered & final & ~in_doubt
    if retry_failed:
        done &= ~worth_retrying.to_numpy()
    remaining = to_send[~to_send.index.isin(previous.rows[done])]
    # Sent before with no definitive answer: the earlier request may have landed.
    maybe_landed = in_doubt | (outcome == UNKNOWN).to_numpy()
    resent = remaining.index[remaining.index.isin(previous.rows[maybe_landed])]
    return remaining, set(resent.tolist())


def find_complete_run(reports_root: Path, sha256: str, target: str, exclude: Path) -> Path | None:
    """An earlier run folder under `reports_root` that sent this input to `target` in full."""
    if not reports_root.is_dir():
        return None
    for summary_path in sorted(reports_root.glob("*/summary.json")):
        if summary_path.parent.resolve() == exclude.resolve():
            continue
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(summary, dict) or not isinstance(summary.get("input"), dict):
            continue  # not a summary this tool wrote
        if (
            summary["input"].get("sha256") == sha256
            and summary.get("target") == target
            and not summary.get("dry_run")
            and summary.get("exit_code") == 0
        ):
            return summary_path.parent
    return None


def input_of(run_folder: Path) -> tuple[Path, dict]:
    """The input file and the options a run folder's journal was started with."""
    journal = _journal_of(run_folder)
    try:
        header = read_header(journal) if journal is not None else None
    except EmptyJournalError:
        header = None
    except JournalError as error:
        raise OutputFolderError(f"cannot resume: {error}") from None
    if header is None:
        raise OutputFolderError(
            f"{run_folder} holds no payco-batch run that sent anything; start it with "
            f"payco-batch run INPUT --out {run_folder}."
        )
    return Path(header["input"]), dict(header.get("options") or {})
