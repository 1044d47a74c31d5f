"""One run, end to end, without any printing or exiting: the core the CLI calls.

`prepare` reads and judges the input and picks the output folder, so the CLI can show the
plan and ask before anything is sent; `execute` sends, journals and writes the reports.
"""

from __future__ import annotations

import asyncio
import gc
import shlex
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd

from batch import __version__
from batch.client import Credentials, IamportClient, open_http_client
from batch.clock import Clock, SystemClock
from batch.config import DEFAULT_REPORTS_FOLDER, RunConfig
from batch.errors import (
    AuthenticationError,
    OutputFolderError,
    StrictValidationError,
    TokenUnavailableError,
)
from batch.exit_codes import ExitCode, exit_code_for
from batch.inputs import OrdersFile, load_orders
from batch.journal import (
    JOURNAL_NAME,
    SYNC_INTERVAL,
    Journal,
    JournalContents,
    read_journal,
)
from batch.outcomes import RowOutcome
from batch.ratelimit import RateLimiter
from batch.reports import (
    FAILURES_NAME,
    RESULTS_NAME,
    SUMMARY_JSON_NAME,
    SUMMARY_MD_NAME,
    RunFacts,
    build_results,
    summarize,
    write_reports,
    write_summary_json,
    write_summary_md,
)
from batch.resume import (
    DoubleSubmissionError,
    check_same_input,
    find_complete_run,
    open_previous_run,
    rows_to_send,
)
from batch.retry import BackoffPolicy
from batch.runner import SendReport, StopSignal, authenticate, send_rows
from batch.safeguards import ErrorBudget
from batch.sandbox.api import SANDBOX_KEY, SANDBOX_SECRET
from batch.validation import INVALID, Validation, validate_orders

if TYPE_CHECKING:
    from batch.sandbox.server import BackgroundSandbox


@dataclass(frozen=True)
class Plan:
    """A checked job, ready to send: what will be sent, and where the reports go."""

    config: RunConfig
    orders: OrdersFile
    validation: Validation
    out_dir: Path
    rows: pd.DataFrame  # the valid rows this run sends (fewer than all when resuming)
    previous: dict[str, Any] | None = None  # the header of the run this one resumes
    resent: frozenset[int] = frozenset()  # rows an earlier run left in flight

    @property
    def rows_to_send(self) -> int:
        return len(self.rows)

    @property
    def resuming(self) -> bool:
        return self.previous is not None

    @property
    def resume_command(self) -> str:
        return f"payco-batch resume {shlex.quote(str(self.out_dir))}"


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    summary: dict[str, Any]
    exit_code: ExitCode


def check_file(
    input_path: Path, encoding: str | None = None, delimiter: str | None = None
) -> tuple[OrdersFile, Validation]:
    """Load and validate a file without preparing a run (`payco-batch validate`)."""
    orders = load_orders(input_path, encoding, delimiter)
    return orders, validate_orders(orders)


def prepare(config: RunConfig, clock: Clock | None = None) -> Plan:
    """Check the options, load and validate the input, and choose the output folder.

    An --out folder that holds a run's journal is resumed: the input must be the same file.
    Raises ConfigError, InputError, StrictValidationError, OutputFolderError or
    DoubleSubmissionError; sends nothing.
    """
    clock = clock or SystemClock()
    config.check()
    orders = load_orders(config.input_path, config.encoding, config.delimiter)
    validation = validate_orders(orders)
    if config.strict and validation.count(INVALID):
        first = validation.errors[0]
        raise StrictValidationError(
            f"{validation.count(INVALID)} rows are invalid and --strict is set, so nothing was "
            f"sent; the first is row {first.row}: {first.reason}."
        )
    out_dir = config.out_dir or _default_out_dir(orders.path, clock)
    previous = open_previous_run(out_dir, validation.frame.index)
    if previous is not None:
        if config.dry_run:
            raise OutputFolderError(
                f"{out_dir} holds a run already; a dry run cannot continue it. "
                "Choose another --out."
            )
        check_same_input(previous, orders, out_dir)
    elif not (config.dry_run or config.force) and config.changes_real_orders:
        earlier = find_complete_run(out_dir.parent, orders.sha256, config.target, exclude=out_dir)
        if earlier is not None:
            raise DoubleSubmissionError(
                f"{orders.path} was already sent in full by the run in {earlier} (same "
                "SHA-256, every row succeeded); pass --force to send it again."
            )
    rows, resent = rows_to_send(validation.to_send, previous, config.retry_failed)
    header = previous.header if previous is not None else None
    return Plan(config, orders, validation, out_dir, rows, header, frozenset(resent))


def execute(
    plan: Plan,
    *,
    clock: Clock | None = None,
    on_outcome: Callable[[RowOutcome], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    backoff: BackoffPolicy | None = None,
    stop: StopSignal | None = None,
) -> RunResult:
    """Send the plan's rows (unless a dry run), journal every outcome, write the reports.

    `stop` (raised by the CLI on the first Ctrl-C or SIGTERM) stops starting rows and lets
    the requests in flight finish; a KeyboardInterrupt (the second Ctrl-C) abandons them.
    Either way the reports are written from the journal, unsent rows `not_sent`.
    """
    clock = clock or SystemClock()
    stop = stop or StopSignal()
    config = plan.config
    started_at = clock.now()
    try:
        plan.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputFolderError(f"{plan.out_dir} cannot be created: {error.strerror}.") from None

    journal_path = plan.out_dir / JOURNAL_NAME
    send_report = SendReport()
    interrupted = False
    target = _Target(config.api_url or "", config.credentials, config.target)
    with ExitStack() as stack, Journal(journal_path) as journal:
        if config.uses_sandbox and plan.rows_to_send:
            target = _Target.of(stack.enter_context(_sandbox()))
        journal.write_header(
            {
                "tool_version": __version__,
                "input": str(plan.orders.path.resolve()),
                "input_sha256": plan.orders.sha256,
                "target": target.name,
                "started_at": started_at.isoformat(timespec="seconds"),
                "options": config.public_options(),
            },
            resuming=plan.resuming,
        )

        def record(outcome: RowOutcome) -> None:
            journal.record(outcome)
            if on_outcome is not None:
                on_outcome(outcome)

        if not config.dry_run and plan.rows_to_send:
            try:
                with _garbage_collection_of_new_objects_only():
                    send_report = asyncio.run(
                        _send(
                            plan,
                            target,
                            clock,
                            journal,
                            record,
                            transport,
                            backoff or BackoffPolicy(),
                            stop,
                        )
                    )
            except (KeyboardInterrupt, asyncio.CancelledError):
                # A second Ctrl-C: the sending was cancelled (StopSignal.quit_now), or the
                # interrupt landed while the loop was not running.
                interrupted = True
        if send_report.stopped_because is not None:
            if stop.aborting:
                send_report.aborted_because = send_report.stopped_because
            else:
                interrupted = True

    return _write_reports(plan, target.name, send_report, interrupted, started_at, clock)


def _write_reports(
    plan: Plan,
    target: str,
    send_report: SendReport,
    interrupted: bool,
    started_at: datetime,
    clock: Clock,
) -> RunResult:
    """Build every report from the journal (all runs of it) and write them."""
    config = plan.config
    contents = read_journal(plan.out_dir / JOURNAL_NAME, plan.validation.frame.index)
    if config.dry_run:
        not_sent_reason = "dry run: not sent"
    elif send_report.aborted_because:
        not_sent_reason = f"not sent: the run stopped because {send_report.aborted_because}"
    else:
        not_sent_reason = "not sent: the run was interrupted; a resume sends it"

    results = build_results(plan.orders, plan.validation, contents, not_sent_reason=not_sent_reason)
    finished_at = clock.now()
    facts = RunFacts(
        target=target,
        dry_run=config.dry_run,
        started_at=started_at.isoformat(timespec="seconds"),
        finished_at=finished_at.isoformat(timespec="seconds"),
        duration_s=(finished_at - started_at).total_seconds(),
        options=config.public_options(),
        sending_s=send_report.seconds,
        aborted_because=send_report.aborted_because,
        interrupted=interrupted,
        runs=contents.runs,
        rate_cuts=send_report.rate_cuts,
        lowest_rate=send_report.lowest_rate,
    )
    summary = summarize(plan.orders, plan.validation, results, facts)
    exit_code = exit_code_for(
        summary["outcomes"],
        failed_duplicates=summary["duplicates_of_failed_rows"],
        dry_run=config.dry_run,
        aborted=send_report.aborted_because is not None,
        interrupted=interrupted,
    )
    summary["exit_code"] = int(exit_code)
    summary["out_dir"] = str(plan.out_dir)
    unfinished = summary["outcomes"]["not_sent"] or not _complete(contents)
    summary["resume_command"] = (
        plan.resume_command if not config.dry_run and unfinished and exit_code != 0 else None
    )

    write_reports(
        plan.orders,
        results,
        contents,
        plan.out_dir / RESULTS_NAME,
        plan.out_dir / FAILURES_NAME,
        config.output_encoding,
    )
    write_summary_json(summary, plan.out_dir / SUMMARY_JSON_NAME)
    write_summary_md(summary, plan.out_dir / SUMMARY_MD_NAME)
    return RunResult(plan.out_dir, summary, exit_code)


def _complete(contents: JournalContents) -> bool:
    """No row in doubt and no row stopped before its retries were used up."""
    final = contents.answers["final"].to_numpy(dtype=bool)
    return not contents.in_doubt and bool(final[contents.answer[contents.answered]].all())


@dataclass(frozen=True)
class _Target:
    """Where the rows go: the URL, the credentials for it, and its name in the reports."""

    url: str
    credentials: Credentials | None
    name: str

    @classmethod
    def of(cls, sandbox: BackgroundSandbox) -> _Target:
        return cls(
            sandbox.url, Credentials(SANDBOX_KEY, SANDBOX_SECRET), f"sandbox ({sandbox.url})"
        )


@contextmanager
def _garbage_collection_of_new_objects_only() -> Iterator[None]:
    """While sending, the collector skips what was made before (the input, the libraries).

    A full collection walks every object in the process and stops the event loop meanwhile:
    measured at --rate 200, one took 21 ms and the requests waiting behind it left together,
    so the server counted 204 in one second. Frozen objects are never collected, so the
    garbage made so far is collected first.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _sandbox() -> BackgroundSandbox:
    # Imported here: a run against a real API never loads the server stack.
    from batch.sandbox.server import BackgroundSandbox

    return BackgroundSandbox()


async def _send(
    plan: Plan,
    target: _Target,
    clock: Clock,
    journal: Journal,
    record: Callable[[RowOutcome], None],
    transport: httpx.AsyncBaseTransport | None,
    backoff: BackoffPolicy,
    stop: StopSignal,
) -> SendReport:
    config = plan.config
    assert target.credentials is not None  # config.check() saw to it
    limiter = RateLimiter(config.rate, clock)
    async with open_http_client(
        target.url,
        concurrency=config.concurrency,
        timeout=config.timeout,
        transport=transport,
    ) as http:
        client = IamportClient(http, target.credentials, limiter, clock, config.tier_code)
        try:
            await authenticate(
                client, max_attempts=config.max_attempts, backoff=backoff, clock=clock
            )
        except (AuthenticationError, TokenUnavailableError) as error:
            return SendReport(aborted_because=str(error))
        to_send = plan.rows
        # Taken one at a time as workers free up, not as lists of every row for the whole
        # run. Iterating an Index and Series gives plain Python ints and strs, which the JSON
        # journal needs (numpy scalars would not go in).
        rows = zip(to_send.index, to_send["imp_uid"], to_send["status"], strict=True)
        deadline_in = None
        if config.deadline is not None:
            deadline_in = max(0.0, (config.deadline - clock.now()).total_seconds())
        # fsync the journal at least once a second even when nothing is written for a while
        # (requests hanging): the intents written just before must survive a power cut too.
        syncer = asyncio.ensure_future(_sync_every_second(journal))
        try:
            report = await send_rows(
                rows,
                client,
                concurrency=config.concurrency,
                max_attempts=config.max_attempts,
                backoff=backoff,
                clock=clock,
                record=record,
                intent=journal.intent,
                stop=stop,
                resent=plan.resent,
                budget=ErrorBudget(config.max_errors),
                deadline_in=deadline_in,
                deadline_label=f"{config.deadline:%H:%M}" if config.deadline else "",
            )
        finally:
            syncer.cancel()
        report.rate_cuts, report.lowest_rate = limiter.cuts, limiter.lowest_rate
        return report


async def _sync_every_second(journal: Journal) -> None:
    # Real time, not the injected clock: this is housekeeping for the disk, not run logic.
    while True:
        await asyncio.sleep(SYNC_INTERVAL)
        journal.sync()


def _default_out_dir(input_path: Path, clock: Clock) -> Path:
    """reports/<YYYYMMDD-HHMMSS>-<input stem>, with -2, -3... if two runs start in one second."""
    base = DEFAULT_REPORTS_FOLDER / f"{clock.now():%Y%m%d-%H%M%S}-{input_path.stem}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate
