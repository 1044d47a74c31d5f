"""Sending the valid rows: a pool of asyncio workers, retries with backoff, an outcome per row.

The concurrency cap is the number of workers; the rate limit lives in the client, shared by
all of them. Each row's outcome is handed to `record` the moment it is final, so the caller
can put it on disk at once instead of holding a million results in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from batch.client import AUTH_FAILED_MESSAGE, Answer, IamportClient
from batch.clock import Clock
from batch.errors import AuthenticationError, TokenUnavailableError
from batch.outcomes import AUTH, FAILED, SUCCEEDED, TRANSIENT_KINDS, RowOutcome
from batch.retry import BackoffPolicy

# (spreadsheet row number, imp_uid, status code)
Row = tuple[int, str, str]


@dataclass
class SendReport:
    """What happened while sending, beyond the per-row outcomes."""

    rows_finished: int = 0
    requests: int = 0
    rate_limited: int = 0
    seconds: float = 0.0
    aborted_because: str | None = None


async def send_rows(
    rows: Iterable[Row],
    client: IamportClient,
    *,
    concurrency: int,
    max_attempts: int,
    backoff: BackoffPolicy,
    clock: Clock,
    record: Callable[[RowOutcome], None],
) -> SendReport:
    """Send every row with at most `concurrency` in flight; call `record` with each outcome.

    Stops taking new rows when authentication fails for good; rows never started are left
    without an outcome (the reports call them not_sent).
    """
    sender = _Sender(client, max_attempts, backoff, clock, record)
    started = clock.monotonic()
    queue = iter(rows)
    try:
        await asyncio.gather(*(sender.work(queue) for _ in range(max(1, concurrency))))
    finally:
        sender.report.seconds = clock.monotonic() - started
    return sender.report


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


class _Sender:
    def __init__(
        self,
        client: IamportClient,
        max_attempts: int,
        backoff: BackoffPolicy,
        clock: Clock,
        record: Callable[[RowOutcome], None],
    ) -> None:
        self._client = client
        self._max_attempts = max(1, max_attempts)
        self._backoff = backoff
        self._clock = clock
        self._record = record
        self.report = SendReport()

    async def work(self, queue: Iterator[Row]) -> None:
        # One shared iterator: asyncio runs one worker at a time between awaits, so next()
        # hands each row to exactly one worker.
        for row in queue:
            if self.report.aborted_because is not None:
                return
            await self._send(*row)

    async def _send(self, row: int, imp_uid: str, status: str) -> None:
        started = self._clock.monotonic()
        attempts = rate_limited = tries = 0
        answer: Answer | None = None
        while True:
            tries += 1
            try:
                answer = await self._client.change_status(imp_uid, status)
            except AuthenticationError as error:
                self.report.aborted_because = str(error)
                if attempts:  # sent before, so its fate is no longer "not sent"
                    answer = Answer(False, AUTH, 401, api_message=AUTH_FAILED_MESSAGE)
                    break
                return
            attempts += answer.requests
            rate_limited += answer.http_status == 429
            if answer.succeeded or not answer.retryable or tries >= self._max_attempts:
                break
            if self.report.aborted_because is not None:
                break
            await self._clock.sleep(self._backoff.delay(tries, answer.retry_after))

        self.report.rows_finished += 1
        self.report.requests += attempts
        self.report.rate_limited += rate_limited
        self._record(
            RowOutcome(
                row=row,
                imp_uid=imp_uid,
                status=status,
                outcome=SUCCEEDED if answer.succeeded else FAILED,
                error_kind=answer.error_kind,
                http_status=answer.http_status,
                api_code=answer.api_code,
                api_message=answer.api_message,
                applied_status=answer.applied_status,
                attempts=attempts,
                rate_limited=rate_limited,
                elapsed_ms=round((self._clock.monotonic() - started) * 1000, 1),
                finished_at=self._clock.now().isoformat(timespec="milliseconds"),
            )
        )
