"""Sending the valid rows: a pool of asyncio workers, retries with backoff, an outcome per row.

The concurrency cap is the number of workers; the rate limit lives in the client, shared by
all of them. Each row's outcome is handed to `record` the moment it is known, and `intent`
is called just before each request leaves, so the caller can journal both at once instead of
holding a million results in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

from batch.client import AUTH_FAILED_MESSAGE, Answer, IamportClient
from batch.clock import Clock
from batch.errors import AuthenticationError, TokenUnavailableError
from batch.outcomes import AUTH, FAILED, SUCCEEDED, TRANSIENT_KINDS, UNKNOWN, RowOutcome
from batch.retry import BackoffPolicy
from batch.safeguards import ErrorBudget

# (spreadsheet row number, imp_uid, status code)
Row = tuple[int, str, str]


class StopSignal:
    """A request to stop starting rows (Ctrl-C, SIGTERM...), safe to raise from a signal handler.

    Rows in flight finish; rows waiting to retry give up their wait at once. `quit_now` (a
    second Ctrl-C) abandons the rows in flight too.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.aborting = False  # stopped by a safeguard (exit 3), not by the operator (130)
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None

    def stop(self, reason: str, *, abort: bool = False) -> None:
        if self.reason is None:
            self.reason = reason
            self.aborting = abort
        if self._loop is not None and self._event is not None:
            self._loop.call_soon_threadsafe(self._event.set)

    def quit_now(self) -> bool:
        """Abandon the requests in flight: cancel the sending task (from a signal handler).

        Cancelling rather than raising KeyboardInterrupt in whatever code the signal lands in
        lets every task end cleanly (asyncio would otherwise report the KeyboardInterrupt
        as a task's never-retrieved exception, with a traceback). Returns False when no
        event loop is running, i.e. nothing is being sent: the caller then raises
        KeyboardInterrupt itself.
        """
        loop, task = self._loop, self._task
        if loop is None or not loop.is_running():
            return False
        if task is not None and not task.done():
            loop.call_soon_threadsafe(task.cancel)
        return True

    def bind(self) -> None:
        """Attach to the running event loop and task, so that `stop` can wake sleepers and
        `quit_now` can cancel the sending."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._event = asyncio.Event()
        if self.reason is not None:
            self._event.set()

    async def sleep(self, clock: Clock, seconds: float) -> None:
        """Sleep on `clock`, cut short by a stop."""
        if self.reason is not None:
            return
        if self._event is None:
            await clock.sleep(seconds)
            return
        sleeper = asyncio.ensure_future(clock.sleep(seconds))
        waker = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()


@dataclass
class SendReport:
    """What happened while sending, beyond the per-row outcomes."""

    rows_finished: int = 0
    requests: int = 0
    rate_limited: int = 0
    seconds: float = 0.0
    aborted_because: str | None = None
    stopped_because: str | None = None
    rate_cuts: int = 0
    lowest_rate: float | None = None


async def authenticate(
    client: IamportClient, *, max_attempts: int, backoff: BackoffPolicy, clock: Clock
) -> None:
    """Get the run's first token, retrying passing troubles like any request.

    Raises AuthenticationError at once for refused credentials, and TokenUnavailableError
    when the last try fails or the failure is not one to retry (e.g. a wrong URL).
    """
    for attempt in range(1, max(1, max_attempts) + 1):
        try:
            await client.authenticate()
            return
        except TokenUnavailableError as error:
            if attempt >= max_attempts or error.kind not in TRANSIENT_KINDS:
                raise
            await clock.sleep(backoff.delay(attempt))


async def send_rows(
    rows: Iterable[Row],
    client: IamportClient,
    *,
    concurrency: int,
    max_attempts: int,
    backoff: BackoffPolicy,
    clock: Clock,
    record: Callable[[RowOutcome], None],
    intent: Callable[[int, int], None] = lambda row, attempt: None,
    stop: StopSignal | None = None,
    resent: Collection[int] = (),
    budget: ErrorBudget | None = None,
    deadline_in: float | None = None,
    deadline_label: str = "",
) -> SendReport:
    """Send every row with at most `concurrency` in flight; call `record` with each outcome.

    Stops taking new rows when authentication fails for good or `stop` is raised; rows never
    started get no outcome (the reports call them not_sent). `resent` names rows that an
    earlier run sent without learning their fate; their outcomes are flagged. `budget` and
    `deadline_in` (seconds from now) stop the run as a safeguard: `stop.aborting` is then set.
    """
    stop = stop or StopSignal()
    stop.bind()
    sender = _Sender(
        client, max_attempts, backoff, clock, record, intent, stop, set(resent), budget
    )
    started = clock.monotonic()
    queue = iter(rows)
    watch = None
    if deadline_in is not None:
        watch = asyncio.ensure_future(_stop_at_deadline(stop, clock, deadline_in, deadline_label))
    try:
        await asyncio.gather(*(sender.work(queue) for _ in range(max(1, concurrency))))
    finally:
        if watch is not None:
            watch.cancel()
        sender.report.seconds = clock.monotonic() - started
        sender.report.stopped_because = stop.reason
    return sender.report


async def _stop_at_deadline(stop: StopSignal, clock: Clock, seconds: float, label: str) -> None:
    await clock.sleep(seconds)
    stop.stop(
        f"the deadline {label} was reached" if label else "the deadline was reached", abort=True
    )


class _NotSent(Exception):
    """A row given up before its first request left: it stays not_sent."""


class _Sender:
    def __init__(
        self,
        client: IamportClient,
        max_attempts: int,
        backoff: BackoffPolicy,
        clock: Clock,
        record: Callable[[RowOutcome], None],
        intent: Callable[[int, int], None],
        stop: StopSignal,
        resent: set[int],
        budget: ErrorBudget | None,
    ) -> None:
        self._client = client
        self._max_attempts = max(1, max_attempts)
        self._backoff = backoff
        self._clock = clock
        self._record = record
        self._intent = intent
        self._stop = stop
        self._resent = resent
        self._budget = budget
        self.report = SendReport()

    def _stopping(self) -> bool:
        return self.report.aborted_because is not None or self._stop.reason is not None

    async def work(self, queue: Iterator[Row]) -> None:
        # One shared iterator: asyncio runs one worker at a time between awaits, so next()
        # hands each row to exactly one worker.
        for row in queue:
            if self._stopping():
                return
            await self._send(*row)

    async def _send(self, row: int, imp_uid: str, status: str) -> None:
        started = self._clock.monotonic()
        attempts = rate_limited = tries = 0
        in_doubt = False  # a request may have landed, and nothing definitive came after it
        final = True
        answer: Answer | None = None

        def before_send() -> None:
            nonlocal attempts
            if not attempts and self._stopping():
                # Stopped while this row waited for its rate-limit slot: it never left.
                raise _NotSent
            attempts += 1
            self._intent(row, attempts)

        while True:
            tries += 1
            try:
                answer = await self._client.change_status(imp_uid, status, before_send)
            except _NotSent:
                return
            except AuthenticationError as error:
                self.report.aborted_because = str(error)
                if not attempts:
                    return  # never sent: not_sent
                answer = Answer(False, AUTH, 401, api_message=AUTH_FAILED_MESSAGE)
                final = False
                break
            rate_limited += answer.http_status == 429
            if self._budget is not None:
                spent = self._budget.record(answer.error_kind)
                if spent is not None:
                    self._stop.stop(spent, abort=True)
            if answer.maybe_applied:
                in_doubt = True
            elif answer.succeeded or not answer.retryable:
                in_doubt = False  # the server answered for good
            if answer.succeeded or not answer.retryable or tries >= self._max_attempts:
                break
            if self._stopping():
                final = False  # retries left: a resume sends it again
                break
            await self._stop.sleep(self._clock, self._backoff.delay(tries, answer.retry_after))
            if self._stopping():
                final = False
                break

        if answer.succeeded:
            outcome = SUCCEEDED
        else:
            outcome = UNKNOWN if in_doubt else FAILED
        self.report.rows_finished += 1
        self.report.requests += attempts
        self.report.rate_limited += rate_limited
        self._record(
            RowOutcome(
                row=row,
                imp_uid=imp_uid,
                status=status,
                outcome=outcome,
                error_kind=answer.error_kind,
                http_status=answer.http_status,
                api_code=answer.api_code,
                api_message=answer.api_message,
                applied_status=answer.applied_status,
                attempts=attempts,
                rate_limited=rate_limited,
                elapsed_ms=round((self._clock.monotonic() - started) * 1000, 1),
                finished_at=self._clock.now().isoformat(timespec="milliseconds"),
                final=final,
                resent=row in self._resent,
            )
        )
