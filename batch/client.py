"""The iamport API client: access tokens, the status call, and what each answer means.

One `IamportClient` per run, over one `httpx.AsyncClient`. Every HTTP request it makes first
takes a slot from the run's rate limiter. It never raises for a failed status change: it
returns an `Answer` saying what happened and whether another try could help. It raises only
when the run cannot go on (`AuthenticationError`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from batch import __version__
from batch.clock import Clock
from batch.errors import AuthenticationError, TokenUnavailableError
from batch.outcomes import (
    AUTH,
    BUSINESS,
    CLIENT_ERROR,
    NETWORK,
    NOT_FOUND,
    RATE_LIMITED,
    SERVER_ERROR,
    STATUS_MISMATCH,
    TIMEOUT,
    TRANSIENT_KINDS,
)
from batch.ratelimit import RateLimiter
from batch.retry import RETRYABLE_HTTP_STATUSES, parse_retry_after
from batch.transport import open_transport

REAL_API_URL = "https://api.iamport.kr"
TOKEN_PATH = "/users/getToken"
STATUS_PATH = "/payco/orders/status/{imp_uid}"
USER_AGENT = f"payco-batch/{__version__}"
CONNECT_TIMEOUT = 10.0

# Refresh a token this long before it expires, so that no request carries a token that dies
# on the way; tokens that live less than twice this are refreshed at half their life.
TOKEN_REFRESH_MARGIN = 60.0

HTTP_LOGGER = "payco_batch.http"
_log = logging.getLogger(HTTP_LOGGER)

# Answers that mean "too fast": the run slows down.
THROTTLE_STATUSES = frozenset({429, 503})

AUTH_FAILED_MESSAGE = "authentication failed: check IMP_KEY and IMP_SECRET"


@dataclass(frozen=True)
class Credentials:
    imp_key: str
    imp_secret: str = field(repr=False)


@dataclass(frozen=True)
class Answer:
    """What one status change came to: the HTTP and API facts, and whether to try again."""

    succeeded: bool
    error_kind: str = ""
    http_status: int | None = None
    api_code: int | None = None
    api_message: str | None = None
    applied_status: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    requests: int = 1  # status requests sent for this answer: 2 after a 401 and a new token
    # The request left but no answer came back (a read timeout, a dropped connection): the
    # server may have applied it. Failing to connect at all is no such doubt.
    maybe_applied: bool = False


def open_http_client(
    api_url: str,
    *,
    concurrency: int,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The run's HTTP client: explicit timeouts, one connection per worker, our User-Agent.

    TLS certificates are always verified, redirects are never followed, and a request bound
    for any host but the api-url's is refused before it leaves: the Authorization header goes
    nowhere else. Requests go over aiohttp's connection pool (batch/transport.py says why)
    unless the tests pass a `transport`.
    """
    host = httpx.URL(api_url).host

    async def only_to_the_api(request: httpx.Request) -> None:
        if request.url.host != host:
            raise httpx.UnsupportedProtocol(f"refusing to send a request to {request.url.host}")

    return httpx.AsyncClient(
        base_url=api_url,
        timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        headers={"User-Agent": USER_AGENT},
        transport=transport or open_transport(connections=concurrency),
        verify=True,
        follow_redirects=False,
        event_hooks={"request": [only_to_the_api]},
        # The environment's proxy settings would send payment calls somewhere unexpected.
        trust_env=False,
    )


class IamportClient:
    """Changes PAYCO order statuses through iamport, with a cached, early-refreshed token."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        credentials: Credentials,
        limiter: RateLimiter,
        clock: Clock,
        tier_code: str | None = None,
    ) -> None:
        self._http = http
        self._limiter = limiter
        self._clock = clock
        self._tier_code = tier_code
        self._tokens = _TokenCache(self, credentials, clock)

    async def authenticate(self) -> None:
        """Get the first token: bad credentials or a wrong URL stop the run before any row."""
        await self._tokens.get()

    async def change_status(
        self, imp_uid: str, status: str, before_send: Callable[[], None] | None = None
    ) -> Answer:
        """Ask iamport to move order `imp_uid` to `status`; say what came of it.

        `before_send` is called just before each status request leaves (after its rate-limit
        slot), so that the journal can note a request that might land.
        """
        try:
            token = await self._tokens.get()
        except TokenUnavailableError as error:
            return Answer(
                succeeded=False,
                error_kind=error.kind,
                http_status=error.http_status,
                api_message=str(error),
                retryable=error.kind in TRANSIENT_KINDS,
                requests=0,
            )
        answer = await self._post_status(imp_uid, status, token, before_send)
        if answer.http_status != 401:
            return answer
        # The token was refused although we thought it fresh (revoked, or the server's clock
        # ran ahead): get another one and try this row once more.
        try:
            token = await self._tokens.renew(rejected=token)
        except TokenUnavailableError:
            return answer
        second = await self._post_status(imp_uid, status, token, before_send)
        return replace(second, requests=2)

    async def _post_status(
        self,
        imp_uid: str,
        status: str,
        token: str,
        before_send: Callable[[], None] | None,
    ) -> Answer:
        headers = {"Authorization": f"Bearer {token}"}
        if self._tier_code:
            headers["Tier"] = self._tier_code
        try:
            response = await self.post(
                STATUS_PATH.format(imp_uid=imp_uid),
                json={"status": status},
                headers=headers,
                before_send=before_send,
            )
        except (httpx.ConnectTimeout, httpx.PoolTimeout):
            return Answer(False, TIMEOUT, api_message="could not connect in time", retryable=True)
        except httpx.TimeoutException:
            return Answer(
                False,
                TIMEOUT,
                api_message="no answer within the timeout",
                retryable=True,
                maybe_applied=True,
            )
        except httpx.ConnectError as error:
            return Answer(False, NETWORK, api_message=_describe(error), retryable=True)
        except (httpx.NetworkError, httpx.RemoteProtocolError) as error:
            return Answer(
                False, NETWORK, api_message=_describe(error), retryable=True, maybe_applied=True
            )
        retry_after = None
        if response.status_code in RETRYABLE_HTTP_STATUSES:  # the only answers it matters for
            retry_after = self._retry_after(response)
        return classify_answer(response.status_code, response.content, status, retry_after)

    async def post(
        self, path: str, *, before_send: Callable[[], None] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Every request goes through here, so that every request counts against the rate limit."""
        await self._limiter.acquire()
        if before_send is not None:
            before_send()
        started = self._clock.monotonic()
        try:
            response = await self._http.post(path, **kwargs)
        except httpx.HTTPError as error:
            _log.debug("POST %s -> %s", path, type(error).__name__)
            raise
        # Method, path and status only: headers and bodies hold the secret and the token.
        _log.debug(
            "POST %s -> %s in %.0f ms",
            path,
            response.status_code,
            (self._clock.monotonic() - started) * 1000,
        )
        # Tell the limiter how the server takes our pace: it slows the whole run down on a
        # 429 or 503 and speeds up again after a streak of other answers.
        if response.status_code in THROTTLE_STATUSES:
            self._limiter.throttled(self._retry_after(response))
        else:
            self._limiter.succeeded()
        return response

    def _retry_after(self, response: httpx.Response) -> float | None:
        header = response.headers.get("Retry-After")
        # The wall clock is read only for a header that holds a date, which is rare.
        return None if header is None else parse_retry_after(header, self._clock.now())


class _TokenCache:
    """One access token shared by every worker; one refresh at a time.

    The token's lifetime is reckoned from the server's own `now` and `expired_at`, counted on
    the local monotonic clock from when it was requested, so a skewed local clock does no harm.
    """

    def __init__(self, client: IamportClient, credentials: Credentials, clock: Clock) -> None:
        self._client = client
        self._credentials = credentials
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    def __repr__(self) -> str:  # never show the token, even in a debugger or a traceback
        return "<_TokenCache>"

    def _fresh(self) -> str | None:
        if self._token is not None and self._clock.monotonic() < self._refresh_at:
            return self._token
        return None

    async def get(self) -> str:
        token = self._fresh()
        if token is not None:
            return token
        async with self._lock:
            # Another worker may have refreshed it while this one waited for the lock.
            return self._fresh() or await self._fetch()

    async def renew(self, rejected: str) -> str:
        """A new token after `rejected` was refused; workers refused together fetch once."""
        async with self._lock:
            if self._token is not None and self._token != rejected:
                return self._token
            return await self._fetch()

    async def _fetch(self) -> str:
        asked_at = self._clock.monotonic()
        try:
            response = await self._client.post(
                TOKEN_PATH,
                json={
                    "imp_key": self._credentials.imp_key,
                    "imp_secret": self._credentials.imp_secret,
                },
            )
        except httpx.TimeoutException:
            raise TokenUnavailableError(
                "getToken timed out", kind=TIMEOUT, http_status=None
            ) from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as error:
            raise TokenUnavailableError(_describe(error), kind=NETWORK, http_status=None) from None

        envelope = _envelope(response.content)
        if response.status_code in RETRYABLE_HTTP_STATUSES or response.status_code >= 500:
            kind = RATE_LIMITED if response.status_code == 429 else SERVER_ERROR
            raise TokenUnavailableError(
                f"getToken answered HTTP {response.status_code}",
                kind=kind,
                http_status=response.status_code,
            )
        if envelope is None and response.status_code != 401:
            # Not iamport speaking (an HTML error page, a 404 from another server): the URL is
            # more likely wrong than the credentials.
            raise TokenUnavailableError(
                f"{response.request.url} answered HTTP {response.status_code} without an "
                "iamport response; check --api-url",
                kind=CLIENT_ERROR if response.status_code < 500 else SERVER_ERROR,
                http_status=response.status_code,
            )
        if response.status_code != 200 or envelope is None or envelope.get("code") != 0:
            raise AuthenticationError(AUTH_FAILED_MESSAGE)
        payload = envelope.get("response")
        try:
            token = str(payload["access_token"])
            lifetime = float(payload["expired_at"]) - float(payload["now"])
        except (TypeError, KeyError, ValueError):
            raise TokenUnavailableError(
                "getToken answered without a usable token",
                kind=SERVER_ERROR,
                http_status=response.status_code,
            ) from None
        margin = min(TOKEN_REFRESH_MARGIN, max(lifetime, 0.0) / 2)
        self._token = token
        self._refresh_at = asked_at + lifetime - margin
        return token


def classify_answer(
    http_status: int, body: bytes, requested_status: str, retry_after: float | None = None
) -> Answer:
    """Turn an HTTP status and body into an Answer. Pure, so every case is easy to test."""
    envelope = _envelope(body)
    api_code = _int_or_none(envelope.get("code")) if envelope else None
    api_message = _message(envelope)

    def failure(kind: str, retryable: bool = False) -> Answer:
        return Answer(
            False,
            kind,
            http_status,
            api_code,
            api_message,
            retryable=retryable,
            retry_after=retry_after if retryable else None,
        )

    if 200 <= http_status < 300:
        if envelope is None:
            # The server may have applied the change; sending again could not tell either.
            return Answer(False, SERVER_ERROR, http_status, None, "unreadable response body")
        if api_code != 0:
            return failure(BUSINESS)
        payload = envelope.get("response")
        applied = payload.get("status") if isinstance(payload, dict) else None
        applied = None if applied is None else str(applied)
        if applied != requested_status:
            return Answer(False, STATUS_MISMATCH, http_status, api_code, api_message, applied)
        return Answer(True, "", http_status, api_code, api_message, applied)
    if http_status == 401:
        return failure(AUTH)
    if http_status == 404:
        return failure(NOT_FOUND)
    if http_status == 429:
        return failure(RATE_LIMITED, retryable=True)
    if http_status in RETRYABLE_HTTP_STATUSES:
        return failure(SERVER_ERROR, retryable=True)
    if 400 <= http_status < 500:
        return failure(CLIENT_ERROR)
    return failure(SERVER_ERROR)


def _envelope(body: bytes) -> dict | None:
    """The `{code, message, response}` envelope, or None when the body is empty or not one."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) and "code" in parsed else None


def _message(envelope: dict | None) -> str | None:
    if not envelope or envelope.get("message") is None:
        return None
    return str(envelope["message"])


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _describe(error: httpx.HTTPError) -> str:
    # httpx messages name the URL at most, never headers or bodies, so they hold no secret.
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
