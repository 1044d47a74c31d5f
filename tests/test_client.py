"""The iamport client: how answers are classified, the token cache, errors, secrets, rate limit."""

from __future__ import annotations

import asyncio
import json
import traceback
from datetime import UTC, datetime

import httpx
import pytest
from conftest import API_URL, SECRET, TOKEN, mock_http

from batch import __version__
from batch.client import (
    Answer,
    Credentials,
    IamportClient,
    classify_answer,
    open_http_client,
)
from batch.errors import AuthenticationError, TokenUnavailableError
from batch.ratelimit import RateLimiter

AUTH_FAILED = "authentication failed: check IMP_KEY and IMP_SECRET"
# iamport's `now` for a token issued at the fake clock's start (2026-12-04 09:00:00 UTC).
SERVER_NOW = int(datetime(2026, 12, 4, 9, 0, 0, tzinfo=UTC).timestamp())
STATUS_PATH = r"^/payco/orders/status/[^/]+$"


# --- helpers ---------------------------------------------------------------------------------


def envelope(code: int = 0, message: str | None = None, response: object = None) -> bytes:
    body = {"code": code, "message": message, "response": response}
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def with_client(clock, body, *, rate: float = 0, tier_code: str | None = None):
    """Run `await body(client)` on a fresh client over the mocked API; return its result."""

    async def main():
        async with open_http_client(API_URL, concurrency=4, timeout=5) as http:
            client = IamportClient(
                http,
                Credentials("key", SECRET),
                RateLimiter(rate, clock),
                clock,
                tier_code=tier_code,
            )
            return await body(client)

    return asyncio.run(main())


def change_one(client: IamportClient):
    return client.change_status("imp_1", "DELIVERY_START")


def two_changes(clock, apart: float):
    """A client body: change one order, let `apart` seconds pass, change it again."""

    async def body(client):
        await change_one(client)
        clock.advance(apart)
        return await change_one(client)

    return body


@pytest.fixture
def api():
    with mock_http(base_url=API_URL, assert_all_called=False) as router:
        yield router


def token_route(api, *, lifetime: float = 1800, server_now: int = SERVER_NOW):
    """getToken answering TOKEN first, then "tok-2", "tok-3"...; yields once while in flight."""
    issued: list[str] = []

    async def issue(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # let other workers run while this token is on its way
        token = TOKEN if not issued else f"tok-{len(issued) + 1}"
        issued.append(token)
        response = {"access_token": token, "now": server_now, "expired_at": server_now + lifetime}
        return httpx.Response(200, content=envelope(0, None, response))

    return api.post("/users/getToken").mock(side_effect=issue)


def echo_status(request: httpx.Request) -> httpx.Response:
    status = json.loads(request.content)["status"]
    return httpx.Response(200, content=envelope(0, None, {"status": status}))


def status_route(api, *effects):
    """The status call: echoes the requested status, or plays `effects` in order."""
    route = api.post(path__regex=STATUS_PATH)
    return route.mock(side_effect=list(effects) if effects else echo_status)


def bearer(route, index: int = -1) -> str:
    return route.calls[index].request.headers["Authorization"]


# --- classify_answer -------------------------------------------------------------------------


def test_classify_200_with_code_0_and_requested_status_succeeds():
    answer = classify_answer(200, envelope(0, None, {"status": "DELIVERY_START"}), "DELIVERY_START")
    assert answer == Answer(True, "", 200, 0, None, "DELIVERY_START")


def test_classify_200_with_code_0_and_another_status_is_status_mismatch():
    body = envelope(0, None, {"status": "PURCHASE_DECISION"})
    answer = classify_answer(200, body, "DELIVERY_START")
    assert (answer.succeeded, answer.error_kind) == (False, "status_mismatch")
    assert answer.applied_status == "PURCHASE_DECISION"
    assert answer.retryable is False


def test_classify_200_with_nonzero_code_is_business_with_message_verbatim():
    message = "배송중 상태로 변경할 수 없는 주문입니다."
    answer = classify_answer(200, envelope(1, message), "DELIVERY_START")
    assert (answer.succeeded, answer.error_kind) == (False, "business")
    assert (answer.api_code, answer.api_message) == (1, message)
    assert answer.retryable is False


@pytest.mark.parametrize(
    "body",
    [b"", b"<html><body>OK</body></html>", b'{"message": "ok", "response": {}}', b"[0]"],
    ids=["empty", "html", "json-without-code", "json-list"],
)
def test_classify_unreadable_200_body_is_server_error_not_retryable(body):
    answer = classify_answer(200, body, "DELIVERY_START")
    assert (answer.succeeded, answer.error_kind) == (False, "server_error")
    assert answer.api_message == "unreadable response body"
    assert answer.retryable is False


def test_classify_401_is_auth():
    answer = classify_answer(401, envelope(-1, "Unauthorized"), "DELIVERY_START")
    assert (answer.error_kind, answer.http_status, answer.retryable) == ("auth", 401, False)


def test_classify_404_envelope_is_not_found_with_code_and_message():
    message = "존재하지 않는 결제정보입니다."
    answer = classify_answer(404, envelope(-1, message), "DELIVERY_START")
    assert (answer.error_kind, answer.http_status) == ("not_found", 404)
    assert (answer.api_code, answer.api_message) == (-1, message)
    assert answer.retryable is False


@pytest.mark.parametrize("http_status", [400, 403, 409, 422])
def test_classify_other_4xx_is_client_error_not_retryable(http_status):
    answer = classify_answer(http_status, envelope(-1, "bad request"), "DELIVERY_START")
    assert (answer.error_kind, answer.retryable) == ("client_error", False)
    assert answer.http_status == http_status


def test_classify_429_is_rate_limited_retryable_with_retry_after():
    answer = classify_answer(429, b"", "DELIVERY_START", retry_after=3.0)
    assert (answer.error_kind, answer.retryable) == ("rate_limited", True)
    assert answer.retry_after == 3.0


@pytest.mark.parametrize("http_status", [500, 502, 503, 504])
def test_classify_transient_5xx_is_server_error_retryable(http_status):
    answer = classify_answer(http_status, envelope(-1, "oops"), "DELIVERY_START")
    assert (answer.error_kind, answer.retryable) == ("server_error", True)


def test_classify_501_is_server_error_not_retryable():
    answer = classify_answer(501, b"", "DELIVERY_START")
    assert (answer.error_kind, answer.retryable) == ("server_error", False)


@pytest.mark.parametrize("body", [b"", b"<html><h1>502 Bad Gateway</h1></html>"])
@pytest.mark.parametrize(
    "http_status, kind", [(401, "auth"), (404, "not_found"), (502, "server_error")]
)
def test_classify_error_body_empty_or_html_has_no_api_message(http_status, kind, body):
    answer = classify_answer(http_status, body, "DELIVERY_START")
    assert answer.error_kind == kind
    assert (answer.api_code, answer.api_message) == (None, None)


# --- the token and the status request --------------------------------------------------------


def test_first_call_asks_for_a_token_with_key_and_secret(api, clock):
    tokens = token_route(api)
    status_route(api)
    with_client(clock, change_one)
    assert tokens.call_count == 1
    assert json.loads(tokens.calls.last.request.content) == {"imp_key": "key", "imp_secret": SECRET}


def test_status_request_carries_token_status_and_user_agent(api, clock):
    token_route(api)
    statuses = status_route(api)
    answer = with_client(clock, change_one)
    request = statuses.calls.last.request
    assert answer.succeeded
    assert request.url.path == "/payco/orders/status/imp_1"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {"status": "DELIVERY_START"}
    assert request.headers["User-Agent"] == f"payco-batch/{__version__}"


@pytest.mark.parametrize("tier_code, expected", [(None, None), ("", None), ("AB1", "AB1")])
def test_tier_header_only_when_tier_code_set(api, clock, tier_code, expected):
    token_route(api)
    statuses = status_route(api)
    with_client(clock, change_one, tier_code=tier_code)
    assert statuses.calls.last.request.headers.get("Tier") == expected


def test_token_is_cached_across_calls(api, clock):
    tokens = token_route(api)
    statuses = status_route(api)

    async def body(client):
        return [await client.change_status(f"imp_{i}", "CANCELED") for i in range(10)]

    answers = with_client(clock, body)
    assert all(answer.succeeded for answer in answers)
    assert tokens.call_count == 1
    assert {bearer(statuses, i) for i in range(10)} == {f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    "lifetime, elapsed, token_requests",
    [(1800, 1739, 1), (1800, 1741, 2), (60, 29, 1), (60, 31, 2)],
    ids=["1800s-cached", "1800s-margin-60", "60s-cached", "60s-half-life"],
)
def test_token_is_refreshed_early(api, clock, lifetime, elapsed, token_requests):
    tokens = token_route(api, lifetime=lifetime)
    statuses = status_route(api)

    assert with_client(clock, two_changes(clock, apart=elapsed)).succeeded
    assert tokens.call_count == token_requests
    assert bearer(statuses) == ("Bearer " + (TOKEN if token_requests == 1 else "tok-2"))


@pytest.mark.parametrize(
    "server_now", [1_000_000_000, SERVER_NOW, 4_102_444_800], ids=["2001", "now", "2100"]
)
@pytest.mark.parametrize("elapsed, token_requests", [(1739, 1), (1741, 2)])
def test_token_lifetime_comes_from_server_now_not_local_time(
    api, clock, server_now, elapsed, token_requests
):
    tokens = token_route(api, lifetime=1800, server_now=server_now)
    status_route(api)

    assert with_client(clock, two_changes(clock, apart=elapsed)).succeeded
    assert tokens.call_count == token_requests


def test_concurrent_calls_on_empty_cache_fetch_one_token(api, clock):
    tokens = token_route(api)
    statuses = status_route(api)

    async def body(client):
        calls = [client.change_status(f"imp_{i}", "DELIVERY_START") for i in range(20)]
        return await asyncio.gather(*calls)

    answers = with_client(clock, body)
    assert all(answer.succeeded for answer in answers)
    assert tokens.call_count == 1
    assert statuses.call_count == 20


def test_status_401_gets_a_new_token_and_retries_the_row_once(api, clock):
    tokens = token_route(api)
    statuses = status_route(
        api,
        httpx.Response(401, content=envelope(-1, "Unauthorized")),
        echo_status,
    )
    answer = with_client(clock, change_one)
    assert answer.succeeded
    assert answer.requests == 2
    assert tokens.call_count == 2
    assert [bearer(statuses, 0), bearer(statuses, 1)] == [f"Bearer {TOKEN}", "Bearer tok-2"]


def test_second_401_after_refresh_is_auth_error(api, clock):
    tokens = token_route(api)
    unauthorized = httpx.Response(401, content=envelope(-1, "Unauthorized"))
    statuses = status_route(api, unauthorized, unauthorized)
    answer = with_client(clock, change_one)
    assert (answer.succeeded, answer.error_kind, answer.http_status) == (False, "auth", 401)
    assert answer.requests == 2
    assert (tokens.call_count, statuses.call_count) == (2, 2)


BAD_CREDENTIALS = [
    httpx.Response(401, content=envelope(-1, "Unauthorized")),
    httpx.Response(200, content=envelope(-1, "아임포트 API 키가 올바르지 않습니다.")),
]


@pytest.mark.parametrize("response", BAD_CREDENTIALS, ids=["http-401", "code-minus-1"])
@pytest.mark.parametrize("call", ["authenticate", "change_status"])
def test_refused_credentials_raise_authentication_error(api, clock, response, call):
    api.post("/users/getToken").mock(return_value=response)
    statuses = status_route(api)

    async def body(client):
        if call == "authenticate":
            return await client.authenticate()
        return await change_one(client)

    with pytest.raises(AuthenticationError) as raised:
        with_client(clock, body)
    assert str(raised.value) == AUTH_FAILED
    assert not statuses.called


TOKEN_TROUBLES = [
    ("server_error", httpx.Response(500, content=b"<html>Internal Server Error</html>")),
    ("network", httpx.ConnectError("connection refused")),
    ("timeout", httpx.ConnectTimeout("timed out")),
    ("rate_limited", httpx.Response(429)),
]
TOKEN_TROUBLE_IDS = [kind for kind, _ in TOKEN_TROUBLES]


@pytest.mark.parametrize("kind, effect", TOKEN_TROUBLES, ids=TOKEN_TROUBLE_IDS)
def test_authenticate_raises_token_unavailable_when_gettoken_fails(api, clock, kind, effect):
    api.post("/users/getToken").mock(side_effect=[effect])
    with pytest.raises(TokenUnavailableError) as raised:
        with_client(clock, lambda client: client.authenticate())
    assert raised.value.kind == kind


@pytest.mark.parametrize(
    ("status_code", "body"), [(404, b"<html>Not Found</html>"), (200, b"<html>welcome</html>")]
)
def test_gettoken_answer_that_is_not_iamport_points_at_the_url(api, clock, status_code, body):
    api.post("/users/getToken").mock(return_value=httpx.Response(status_code, content=body))
    with pytest.raises(TokenUnavailableError) as raised:
        with_client(clock, lambda client: client.authenticate())
    assert str(raised.value) == (
        f"could not get an access token: {API_URL}/users/getToken answered HTTP {status_code} "
        "without an iamport response; check --api-url"
    )
    # a row that needs the token then is not retried: another try would meet the same page
    api.post("/users/getToken").mock(return_value=httpx.Response(status_code, content=body))
    answer = with_client(clock, change_one)
    assert (answer.error_kind, answer.retryable, answer.requests) == ("client_error", False, 0)


@pytest.mark.parametrize("kind, effect", TOKEN_TROUBLES, ids=TOKEN_TROUBLE_IDS)
def test_change_status_answers_retryable_when_gettoken_fails(api, clock, kind, effect):
    api.post("/users/getToken").mock(side_effect=[effect])
    statuses = status_route(api)
    answer = with_client(clock, change_one)
    assert (answer.succeeded, answer.error_kind) == (False, kind)
    assert answer.requests == 0
    assert answer.retryable is True
    assert not statuses.called


@pytest.mark.parametrize(
    "error, kind",
    [
        (httpx.ReadTimeout, "timeout"),
        (httpx.ConnectTimeout, "timeout"),
        (httpx.ConnectError, "network"),
        (httpx.ReadError, "network"),
        (httpx.RemoteProtocolError, "network"),
    ],
)
def test_transport_error_on_status_call_is_retryable(api, clock, error, kind):
    token_route(api)
    status_route(api, error)
    answer = with_client(clock, change_one)
    assert (answer.succeeded, answer.error_kind, answer.http_status) == (False, kind, None)
    assert answer.retryable is True


@pytest.mark.parametrize(
    "header, expected",
    [("7", 7.0), ("Fri, 04 Dec 2026 09:00:10 GMT", 10.0), (None, None)],
    ids=["seconds", "http-date", "absent"],
)
def test_retry_after_on_429_is_parsed_into_answer(api, clock, header, expected):
    token_route(api)
    headers = {"Retry-After": header} if header is not None else {}
    status_route(api, httpx.Response(429, headers=headers))
    answer = with_client(clock, change_one)
    assert (answer.error_kind, answer.retryable) == ("rate_limited", True)
    assert answer.retry_after == expected


# --- secrets ---------------------------------------------------------------------------------


def _unauthorized(api):
    token_route(api)
    status_route(api, httpx.Response(401), httpx.Response(401))


def _status_unreachable(api):
    token_route(api)
    status_route(api, httpx.ConnectError(f"cannot reach {API_URL}"))


def _token_refused(api):
    api.post("/users/getToken").mock(return_value=httpx.Response(401))


def _token_code_minus_1(api):
    api.post("/users/getToken").mock(return_value=httpx.Response(200, content=envelope(-1)))


def _token_server_error(api):
    api.post("/users/getToken").mock(return_value=httpx.Response(503))


def _token_unreachable(api):
    api.post("/users/getToken").mock(side_effect=httpx.ConnectError("connection refused"))


def _token_without_expiry(api):
    body = envelope(0, None, {"access_token": TOKEN})
    api.post("/users/getToken").mock(return_value=httpx.Response(200, content=body))


SECRET_SCENARIOS = [
    lambda api: (token_route(api), status_route(api)),
    _unauthorized,
    _status_unreachable,
    _token_refused,
    _token_code_minus_1,
    _token_server_error,
    _token_unreachable,
    _token_without_expiry,
]
SECRET_SCENARIO_IDS = [
    "success",
    "status-401-twice",
    "status-unreachable",
    "token-401",
    "token-code-minus-1",
    "token-503",
    "token-unreachable",
    "token-without-expiry",
]


def _texts(result: object) -> list[str]:
    if isinstance(result, BaseException):
        return [
            str(result),
            repr(result),
            *map(str, result.args),
            *traceback.format_exception(result),
        ]
    assert isinstance(result, Answer)
    return [repr(result), *(str(value) for value in vars(result).values())]


@pytest.mark.parametrize("scenario", SECRET_SCENARIOS, ids=SECRET_SCENARIO_IDS)
def test_no_answer_or_exception_shows_the_secret_or_token(api, clock, scenario):
    scenario(api)

    async def body(client):
        results: list[object] = []
        for call in (client.authenticate, lambda: change_one(client)):
            try:
                results.append(await call())
            except (AuthenticationError, TokenUnavailableError) as error:
                results.append(error)
        return [result for result in results if result is not None]

    results = with_client(clock, body)
    assert results  # at least an answer or an exception to look at
    texts = [text for result in results for text in _texts(result)]
    assert not [text for text in texts if SECRET in text or TOKEN in text]


def test_client_reprs_do_not_show_the_secret_or_token(api, clock):
    token_route(api)
    status_route(api)

    async def body(client):
        await change_one(client)  # a token is now cached
        return [repr(client), repr(vars(client)), repr(Credentials("key", SECRET))]

    for text in with_client(clock, body):
        assert SECRET not in text
        assert TOKEN not in text


# --- rate limit ------------------------------------------------------------------------------


def test_every_request_including_gettoken_waits_for_the_rate_limiter(api, clock):
    tokens = token_route(api)
    statuses = status_route(api)

    async def body(client):
        return [await client.change_status(f"imp_{i}", "DELIVERY_START") for i in range(5)]

    assert all(answer.succeeded for answer in with_client(clock, body, rate=10))
    requests = tokens.call_count + statuses.call_count
    assert requests == 6
    assert clock.sleeps == pytest.approx([0.1] * (requests - 1))
    assert clock.t == pytest.approx((requests - 1) / 10)


def test_token_refresh_after_401_also_waits_for_the_rate_limiter(api, clock):
    token_route(api)
    status_route(api, httpx.Response(401), echo_status)
    answer = with_client(clock, change_one, rate=10)
    assert answer.succeeded
    # getToken, status (401), getToken, status: four slots, 0.1 s apart.
    assert clock.sleeps == pytest.approx([0.1] * 3)
    assert clock.t == pytest.approx(0.3)


def test_the_http_client_refuses_any_host_but_the_api():
    async def main():
        async with open_http_client(API_URL, concurrency=1, timeout=1) as http:
            with mock_http(assert_all_called=False) as mock:
                route = mock.route()
                with pytest.raises(httpx.UnsupportedProtocol, match="evil.example"):
                    await http.post("https://evil.example/users/getToken", json={})
                assert not route.called

    asyncio.run(main())
