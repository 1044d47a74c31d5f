"""What a person at a terminal sees of a run: invalid rows, the progress bar, signals, the summary.

Part of the command line: the core never prints. These take what they show as arguments.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from tqdm import tqdm

from batch.client import HTTP_LOGGER
from batch.inputs import OrdersFile
from batch.job import Plan, RunResult
from batch.outcomes import SUCCEEDED, RowOutcome
from batch.runner import StopSignal
from batch.validation import DUPLICATE, INVALID, SEND, Validation

# How many invalid rows are listed on the terminal before "... and N more": a few before a
# run (the rest are in failures.csv), a screenful for `validate`.
MAX_ERRORS_SHOWN = 10
MAX_ROWS_LISTED = 50


def show_validation(orders: OrdersFile, validation: Validation) -> None:
    """`payco-batch validate`: every invalid row (up to a screenful), then the counts."""
    errors = validation.errors
    for error in errors[:MAX_ROWS_LISTED]:
        click.echo(f"row {error.row}: {error.reason}")
    if len(errors) > MAX_ROWS_LISTED:
        click.echo(f"... and {len(errors) - MAX_ROWS_LISTED} more invalid rows.")
    to_send = ", ".join(f"{n} {s}" for s, n in validation.status_counts().items() if n)
    parts = [f"{validation.count(SEND)} to send" + (f" ({to_send})" if to_send else "")]
    parts.append(f"{validation.count(INVALID)} invalid")
    if validation.count(DUPLICATE):
        parts.append(f"{validation.count(DUPLICATE)} duplicates (not sent)")
    if orders.blank_rows:
        parts.append(f"{orders.blank_rows} blank rows ignored")
    click.echo(f"{orders.path}: {len(orders.frame)} rows: {', '.join(parts)}.")


def show_invalid_rows(plan: Plan) -> None:
    errors = plan.validation.errors
    for error in errors[:MAX_ERRORS_SHOWN]:
        click.echo(f"row {error.row}: {error.reason}", err=True)
    if len(errors) > MAX_ERRORS_SHOWN:
        click.echo(f"... and {len(errors) - MAX_ERRORS_SHOWN} more invalid rows.", err=True)


@contextmanager
def stop_on_signals(stop: StopSignal) -> Iterator[None]:
    """First Ctrl-C or SIGTERM: stop starting rows, finish those in flight. Second: quit now."""

    def handle(signum: int, frame: object) -> None:
        if stop.reason is not None:
            if not stop.quit_now():
                raise KeyboardInterrupt  # not sending (writing the reports): stop right here
            return
        stop.stop(f"{signal.Signals(signum).name} received")
        click.echo(
            "\npayco-batch: stopping: finishing the requests in flight "
            "(press Ctrl-C again to quit at once; the journal keeps every row's fate).",
            err=True,
        )

    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be caught in the main thread (e.g. some test runners)
        return
    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def progress_bar(plan: Plan, enabled: bool) -> Iterator[Callable[[RowOutcome], None] | None]:
    """A tqdm bar on stderr, only when stderr is a terminal; yields the per-outcome callback."""
    if not (enabled and plan.rows_to_send and sys.stderr.isatty()):
        yield None
        return
    counts = {"ok": 0, "failed": 0}
    requests = 0
    started = time.monotonic()
    with tqdm(total=plan.rows_to_send, unit="row", file=sys.stderr, dynamic_ncols=True) as bar:

        def advance(outcome: RowOutcome) -> None:
            nonlocal requests
            counts["ok" if outcome.outcome == SUCCEEDED else "failed"] += 1
            requests += outcome.attempts
            # Rows per second is tqdm's own rate; requests differ from rows by the retries.
            rate = requests / max(time.monotonic() - started, 1e-9)
            bar.set_postfix(counts | {"req/s": f"{rate:.1f}"}, refresh=False)
            bar.update(1)

        yield advance


def human_summary(result: RunResult) -> str:
    summary = result.summary
    counts = summary["outcomes"]
    parts = [f"{counts[name]} {name.replace('_', ' ')}" for name in counts if counts[name]]
    head = "dry run, nothing sent: " if summary["dry_run"] else ""
    lines = [f"{head}{summary['input']['rows']} rows: {', '.join(parts) or 'none'}."]
    if summary["input"]["blank_rows_ignored"]:
        lines.append(f"{summary['input']['blank_rows_ignored']} blank rows ignored.")
    lines.append(f"Reports: {result.out_dir}/ (results.csv, failures.csv, summary.md)")
    return "\n".join(lines)


def log_requests() -> None:
    """--verbose: one line on stderr per HTTP request (method, path, answer, time).

    The client logs no header and no body, so neither the secret nor the token can appear.
    """
    logger = logging.getLogger(HTTP_LOGGER)
    for old in [h for h in logger.handlers if h.get_name() == _VERBOSE_HANDLER]:
        logger.removeHandler(old)  # a second run in the same process (tests) replaces it
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_VERBOSE_HANDLER)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


_VERBOSE_HANDLER = "payco-batch --verbose"
