"""The sandbox's behaviour through `Sandbox.handle` and `Sandbox.inspect`, with fake clocks."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from urllib.parse import urlencode

import pytest

from batch.sandbox.api import Reply, Sandbox, SandboxSettings
from batch.sandbox.faults import FaultSettings
from batch.sandbox.orders import Order, OrdersFileError, load_orders_file

TOKEN_PATH = "/users/getToken"
STATUS_PATH = "/payco/orders/status"
CREDENTIALS = {"imp_key": "sandbox_key", "imp_secret": "sandbox_secret"}
START = 1_700_000_000.0
NOT_FOUND = "존재하지 않는 결제정보입니다."
NOT_PAYCO = "PAYCO 결제건이 아닙니다."


class Clocks:
    """A wall clock and a monotonic clock that move only when told to."""

    def __init__(self) -> None:
        self.wall = START
        self.mono = 500.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


def make(clocks: Clocks, faults: FaultSettings | None = None, **settings) -> Sandbox:
    settings = SandboxSettings(faults=faults or FaultSettings(), **settings)
    return Sandbox(settings, wall_clock=lambda: clocks.wall, monotonic=lambda: clocks.mono)


def post(
    sandbox: Sandbox,
    path: str,
    fields: object = None,
    *,
    token: str | None = None,
    form: bool = False,
    method: str = "POST",
) -> Reply:
    headers = {}
    if token is not None:
        headers["authorization"] = token
    if form:
        headers["content-type"] = "application/x-www-form-urlencoded"
        body = urlencode(fields or {}).encode()
    else:
        headers["content-type"] = "application/json"
        body = b"" if fields is None else json.dumps(fields).encode()
    reply = sandbox.handle(method, path, headers, body)
    assert reply is not None
    return reply


def get_token(sandbox: Sandbox) -> str:
    reply = post(sandbox, TOKEN_PATH, CREDENTIALS)
    assert reply.status == 200, reply
    return reply.body["response"]["access_token"]


def set_status(sandbox: Sandbox, imp_uid: str, status: object, token: str, **kw) -> Reply:
    return post(sandbox, f"{STATUS_PATH}/{imp_uid}", {"status": status}, token=token, **kw)


def order_state(sandbox: Sandbox, imp_uid: str) -> str:
    reply = sandbox.inspect("GET", f"/__sandbox__/orders/{imp_uid}")
    assert reply.status == 200, reply
    return reply.body["state"]


# --- getToken ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
@pytest.mark.parametrize("ttl", [1800.0, 60.0])
def test_get_token_answers_the_iamport_envelope(clocks, form, ttl):
    sandbox = make(clocks, token_ttl=ttl)
    reply = post(sandbox, TOKEN_PATH, CREDENTIALS, form=form)
    assert reply.status == 200
    assert reply.body["code"] == 0 and reply.body["message"] is None
    response = reply.body["response"]
    assert set(response) == {"access_token", "now", "expired_at"}
    assert response["access_token"]
    assert response["now"] == int(START)
    assert response["expired_at"] - response["now"] == ttl
    assert sandbox.stats()["tokens_issued"] == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"imp_key": "wrong", "imp_secret": "sandbox_secret"},
        {"imp_key": "sandbox_key", "imp_secret": "wrong"},
        {"imp_key": "sandbox_key"},
        {},
        None,
    ],
    ids=["wrong-key", "wrong-secret", "no-secret", "empty-object", "no-body"],
)
def test_get_token_rejects_bad_credentials(clocks, fields):
    sandbox = make(clocks)
    reply = post(sandbox, TOKEN_PATH, fields)
    assert reply.status == 401
    assert reply.body["code"] == -1 and reply.body["message"] and reply.body["response"] is None
    assert sandbox.stats()["tokens_issued"] == 0


def test_same_token_until_expiry(clocks):
    sandbox = make(clocks)
    first = post(sandbox, TOKEN_PATH, CREDENTIALS).body["response"]
    clocks.advance(1000)
    second = post(sandbox, TOKEN_PATH, CREDENTIALS).body["response"]
    assert second["access_token"] == first["access_token"]
    assert second["expired_at"] == first["expired_at"]
    assert sandbox.stats()["tokens_issued"] == 1


@pytest.mark.parametrize(
    "ttl, window, extension", [(1800.0, 60, 300), (180.0, 6, 30)], ids=["default", "short"]
)
def test_asking_in_the_last_window_extends_the_same_token(clocks, ttl, window, extension):
    sandbox = make(clocks, token_ttl=ttl)
    first = post(sandbox, TOKEN_PATH, CREDENTIALS).body["response"]
    clocks.advance(ttl - window)
    second = post(sandbox, TOKEN_PATH, CREDENTIALS).body["response"]
    assert second["access_token"] == first["access_token"]
    assert second["expired_at"] == first["expired_at"] + extension
    assert sandbox.stats()["tokens_issued"] == 1


def test_asking_just_before_the_last_window_does_not_extend(clocks):
    sandbox = make(clocks)
    first = post(sandbox, TOKEN_PATH, CREDENTIALS).body["response"]
    clocks.advance(1800 - 61)
    second = post(sandbox, TOKEN_PATH, CREDENTIALS).body["response"]
    assert second["expired_at"] == first["expired_at"]


def test_new_token_after_expiry(clocks):
    sandbox = make(clocks)
    old = get_token(sandbox)
    clocks.advance(1800)
    new = get_token(sandbox)
    assert new != old
    assert sandbox.stats()["tokens_issued"] == 2
    assert set_status(sandbox, "imp_11", "CANCELED", old).status == 401
    assert set_status(sandbox, "imp_11", "CANCELED", new).status == 200


# --- the status call ------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["missing", "unknown", "expired"])
def test_status_call_needs_a_live_token(clocks, which):
    sandbox = make(clocks)
    token = get_token(sandbox)
    if which == "expired":
        clocks.advance(1800)
    presented = {"missing": None, "unknown": "Bearer sandbox_nope", "expired": token}[which]
    reply = set_status(sandbox, "imp_11", "CANCELED", presented)
    assert reply.status == 401
    assert reply.body["code"] == -1 and reply.body["response"] is None
    assert sandbox.stats()["state_changes"] == 0
    assert sandbox.inspect("GET", "/__sandbox__/orders/imp_11").body["history"] == []


@pytest.mark.parametrize("prefix", ["Bearer ", ""], ids=["bearer", "bare"])
def test_status_call_takes_bearer_and_bare_tokens(clocks, prefix):
    sandbox = make(clocks)
    token = get_token(sandbox)
    reply = set_status(sandbox, "imp_11", "DELIVERY_START", prefix + token)
    assert reply.status == 200 and reply.body["code"] == 0


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"status": "SHIPPED"},
        {"status": "PAID"},
        {"status": "canceled"},
        {"status": 1},
        {"status": None},
        {"status": ["CANCELED"]},
        {"status": {"v": "CANCELED"}},
    ],
    ids=["missing", "unknown", "paid", "lower-case", "number", "null", "list", "object"],
)
def test_status_call_rejects_a_bad_status(clocks, fields):
    sandbox = make(clocks)
    token = get_token(sandbox)
    reply = post(sandbox, f"{STATUS_PATH}/imp_11", fields, token=token)
    assert reply.status == 400
    assert reply.body["code"] == -1 and reply.body["response"] is None
    assert sandbox.stats()["state_changes"] == 0


def test_status_call_takes_a_form_body(clocks):
    sandbox = make(clocks)
    reply = set_status(sandbox, "imp_11", "CANCELED", get_token(sandbox), form=True)
    assert reply.status == 200
    assert reply.body == {"code": 0, "message": None, "response": {"status": "CANCELED"}}
    assert order_state(sandbox, "imp_11") == "CANCELED"


@pytest.mark.parametrize("imp_uid", ["imp_404", "imp_12404", "imp_abc", "IMP_123", "imp_", "123"])
def test_unknown_payment_is_404(clocks, imp_uid):
    sandbox = make(clocks)
    reply = set_status(sandbox, imp_uid, "CANCELED", get_token(sandbox))
    assert reply.status == 404
    assert reply.body == {"code": -1, "message": NOT_FOUND, "response": None}


def test_id_ending_in_777_is_not_payco(clocks):
    sandbox = make(clocks)
    reply = set_status(sandbox, "imp_1777", "CANCELED", get_token(sandbox))
    assert reply.status == 200
    assert reply.body == {"code": 1, "message": NOT_PAYCO, "response": None}
    assert sandbox.stats()["state_changes"] == 0


@pytest.mark.parametrize(
    "imp_uid, initial, code",
    [("imp_120", "DELIVERY_START", 0), ("imp_121", "PAID", 1), ("imp_9", "PAID", 1)],
)
def test_id_ending_in_0_starts_shipped_others_paid(clocks, imp_uid, initial, code):
    sandbox = make(clocks)
    reply = set_status(sandbox, imp_uid, "PURCHASE_DECISION", get_token(sandbox))
    assert reply.body["code"] == code
    if code:
        assert initial in reply.body["message"]
    history = sandbox.inspect("GET", f"/__sandbox__/orders/{imp_uid}").body["history"]
    assert [event["from"] for event in history] == ([initial] if code == 0 else [])


@pytest.mark.parametrize(
    "steps",
    [
        ["DELIVERY_START"],
        ["CANCELED"],
        ["DELIVERY_START", "PURCHASE_DECISION"],
        ["DELIVERY_START", "CANCELED"],
    ],
    ids="->".join,
)
def test_allowed_transitions_succeed(clocks, steps):
    sandbox = make(clocks)
    token = get_token(sandbox)
    for status in steps:
        reply = set_status(sandbox, "imp_11", status, token)
        assert reply.status == 200
        assert reply.body == {"code": 0, "message": None, "response": {"status": status}}
    assert order_state(sandbox, "imp_11") == steps[-1]
    assert sandbox.stats()["state_changes"] == len(steps)


@pytest.mark.parametrize(
    "steps, forbidden, current",
    [
        ([], "PURCHASE_DECISION", "PAID"),
        (["CANCELED"], "DELIVERY_START", "CANCELED"),
        (["CANCELED"], "PURCHASE_DECISION", "CANCELED"),
        (["DELIVERY_START", "PURCHASE_DECISION"], "CANCELED", "PURCHASE_DECISION"),
        (["DELIVERY_START", "PURCHASE_DECISION"], "DELIVERY_START", "PURCHASE_DECISION"),
    ],
)
def test_forbidden_transition_is_code_1_naming_the_state(clocks, steps, forbidden, current):
    sandbox = make(clocks)
    token = get_token(sandbox)
    for status in steps:
        assert set_status(sandbox, "imp_11", status, token).body["code"] == 0
    reply = set_status(sandbox, "imp_11", forbidden, token)
    assert reply.status == 200
    assert reply.body["code"] == 1 and reply.body["response"] is None
    assert current in reply.body["message"]
    assert order_state(sandbox, "imp_11") == current
    assert sandbox.stats()["state_changes"] == len(steps)


def test_same_status_again_is_a_counted_no_op(clocks):
    sandbox = make(clocks)
    token = get_token(sandbox)
    set_status(sandbox, "imp_11", "DELIVERY_START", token)
    reply = set_status(sandbox, "imp_11", "DELIVERY_START", token)
    assert reply.body == {"code": 0, "message": None, "response": {"status": "DELIVERY_START"}}
    stats = sandbox.stats()
    assert stats["state_changes"] == 1 and stats["no_ops"] == 1
    history = sandbox.inspect("GET", "/__sandbox__/orders/imp_11").body["history"]
    assert [event["kind"] for event in history] == ["changed", "no_op"]


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", f"{STATUS_PATH}/imp_11"),
        ("GET", TOKEN_PATH),
        ("POST", "/payco/orders/other/imp_11"),
        ("POST", f"{STATUS_PATH}/imp_11/extra"),
        ("POST", "/"),
    ],
)
def test_unknown_route_is_404(clocks, method, path):
    sandbox = make(clocks)
    token = get_token(sandbox)
    reply = post(sandbox, path, {"status": "CANCELED", **CREDENTIALS}, token=token, method=method)
    assert reply.status == 404 and reply.body["code"] == -1
    assert sandbox.stats()["state_changes"] == 0
    assert sandbox.stats()["tokens_issued"] == 1


def test_handle_leaves_sandbox_paths_to_inspect(clocks):
    sandbox = make(clocks)
    assert sandbox.handle("GET", "/__sandbox__/stats", {}, b"") is None
    assert sandbox.stats()["requests"] == 0


# --- --orders preload -------------------------------------------------------------------


def test_orders_file_header_is_tolerant(tmp_path):
    path = tmp_path / "orders.csv"
    text = (
        " IMP_UID , Pg ,State \nimp_1404,PAYCO,paid\nimp_11,kcp,DELIVERY_START\nimp_12,,canceled\n"
    )
    path.write_bytes(text.replace("\n", "\r\n").encode("utf-8-sig"))  # BOM, CRLF
    orders = load_orders_file(path)
    got = {uid: (order.pg, order.state) for uid, order in orders.items()}
    assert got == {
        "imp_1404": ("payco", "PAID"),
        "imp_11": ("kcp", "DELIVERY_START"),
        "imp_12": ("payco", "CANCELED"),
    }


@pytest.mark.parametrize(
    "row, status, body",
    [
        ("imp_1404,payco,PAID", "DELIVERY_START", {"code": 0}),  # 404 id, but preloaded
        ("imp_11,kcp,PAID", "DELIVERY_START", {"code": 1, "message": NOT_PAYCO}),
        ("imp_11,payco,CANCELED", "DELIVERY_START", {"code": 1}),
        ("imp_11,payco,DELIVERY_START", "PURCHASE_DECISION", {"code": 0}),
    ],
    ids=["404-id-found", "kcp-not-payco", "canceled-final", "shipped"],
)
def test_preloaded_orders_are_used(clocks, tmp_path, row, status, body):
    path = tmp_path / "orders.csv"
    path.write_text("imp_uid,pg,state\n" + row + "\n", encoding="utf-8")
    sandbox = make(clocks, orders=load_orders_file(path))
    imp_uid, _, state = row.split(",")
    assert sandbox.inspect("GET", f"/__sandbox__/orders/{imp_uid}").body["state"] == state
    reply = set_status(sandbox, imp_uid, status, get_token(sandbox))
    assert reply.status == 200
    assert reply.body.items() >= body.items()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("imp_uid,pg,state\nimp_1,payco,PAID\nimp_2,payco,SHIPPED\n", "line 3"),
        ("imp_uid,pg,state\nimp_x1,payco,PAID\n", "line 2"),
        ("imp_uid,pg\nimp_1,payco\n", "header"),
        ("imp_1,payco,PAID\n", "header"),
        ("", "header"),
    ],
    ids=["bad-state", "bad-imp-uid", "missing-column", "no-header", "empty"],
)
def test_orders_file_errors_say_where(tmp_path, text, expected):
    path = tmp_path / "orders.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(OrdersFileError, match=expected):
        load_orders_file(path)


def test_missing_orders_file_is_an_orders_file_error(tmp_path):
    with pytest.raises(OrdersFileError, match="cannot be read"):
        load_orders_file(tmp_path / "absent.csv")


def test_orders_file_error_line_counts_blank_lines(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("imp_uid,pg,state\n\nimp_1,payco,BOGUS\n", encoding="utf-8")
    with pytest.raises(OrdersFileError, match="line 3"):
        load_orders_file(path)


# --- faults -------------------------------------------------------------------------------


def test_error_rate_one_answers_5xx_and_leaves_the_order_alone(clocks):
    sandbox = make(clocks, FaultSettings(error_rate=1.0, seed=1))
    token, _, _ = sandbox.tokens.issue()
    statuses = set()
    for _ in range(20):
        reply = set_status(sandbox, "imp_11", "CANCELED", token)
        statuses.add(reply.status)
        assert reply.body["code"] == -1 and reply.body["message"]
    assert statuses <= {500, 503} and statuses
    order = sandbox.inspect("GET", "/__sandbox__/orders/imp_11").body
    assert order["state"] == "PAID" and order["history"] == []
    assert order["requests"] == 20
    assert sandbox.stats()["state_changes"] == 0


def token_statuses(clocks, seed: int | None, n: int = 1000) -> list[int]:
    sandbox = make(clocks, FaultSettings(error_rate=0.3, seed=seed))
    return [post(sandbox, TOKEN_PATH, CREDENTIALS).status for _ in range(n)]


def test_error_rate_is_roughly_the_share_asked_for(clocks):
    counts = Counter(token_statuses(clocks, seed=42))
    assert set(counts) <= {200, 500, 503}
    assert 230 <= counts[500] + counts[503] <= 370
    assert counts[500] and counts[503]


def test_same_seed_replays_the_same_faults(clocks):
    first = token_statuses(clocks, seed=7)
    assert token_statuses(clocks, seed=7) == first
    assert token_statuses(clocks, seed=8) != first


def test_throttle_answers_429_beyond_the_rate_until_a_second_passes(clocks):
    sandbox = make(clocks, FaultSettings(throttle=5))
    for _ in range(5):
        assert post(sandbox, TOKEN_PATH, CREDENTIALS).status == 200
        clocks.advance(0.1)
    reply = post(sandbox, TOKEN_PATH, CREDENTIALS)
    assert reply.status == 429 and reply.body["code"] == -1
    assert int(reply.headers["Retry-After"]) >= 1
    clocks.advance(1.0)
    assert post(sandbox, TOKEN_PATH, CREDENTIALS).status == 200


def test_fractional_throttle_spaces_requests(clocks):
    sandbox = make(clocks, FaultSettings(throttle=0.5))
    assert post(sandbox, TOKEN_PATH, CREDENTIALS).status == 200
    clocks.advance(1.0)
    assert post(sandbox, TOKEN_PATH, CREDENTIALS).status == 429


@pytest.mark.parametrize("latency, jitter", [(100, 0), (100, 30), (10, 50), (0, 20)])
def test_latency_and_jitter_set_the_delay(clocks, latency, jitter):
    sandbox = make(clocks, FaultSettings(latency_ms=latency, jitter_ms=jitter, seed=3))
    delays = [post(sandbox, TOKEN_PATH, CREDENTIALS).delay for _ in range(200)]
    low, high = max(0.0, (latency - jitter) / 1000), (latency + jitter) / 1000
    assert all(low <= delay <= high for delay in delays)
    if jitter:
        assert len(set(delays)) > 1
    else:
        assert set(delays) == {latency / 1000}


def test_hang_holds_the_answer_but_changes_the_order(clocks):
    sandbox = make(clocks, FaultSettings(hang_rate=1.0, hang_seconds=7.5))
    token, _, _ = sandbox.tokens.issue()
    reply = set_status(sandbox, "imp_11", "CANCELED", token)
    assert reply.hang and not reply.drop
    assert reply.delay == 7.5
    assert reply.status == 200 and reply.body["code"] == 0
    assert order_state(sandbox, "imp_11") == "CANCELED"
    assert sandbox.stats()["hung"] == 1


def test_drop_changes_the_order(clocks):
    sandbox = make(clocks, FaultSettings(drop_rate=1.0))
    token, _, _ = sandbox.tokens.issue()
    reply = set_status(sandbox, "imp_11", "CANCELED", token)
    assert reply.drop and not reply.hang
    assert order_state(sandbox, "imp_11") == "CANCELED"
    assert sandbox.stats()["state_changes"] == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error_rate": 1.5},
        {"hang_rate": -0.1},
        {"drop_rate": 2},
        {"latency_ms": -1},
        {"jitter_ms": -1},
        {"hang_seconds": -1},
        {"throttle": 0},
        {"throttle": -3},
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_invalid_fault_settings_raise(kwargs):
    with pytest.raises(ValueError):
        FaultSettings(**kwargs)


@pytest.mark.parametrize(
    "settings, expected",
    [
        (FaultSettings(), "none"),
        (FaultSettings(seed=5, hang_seconds=3), "none"),
        (FaultSettings(error_rate=0.1, throttle=5), "error-rate=0.1, throttle=5"),
        (FaultSettings(latency_ms=50, drop_rate=0.2), "latency=50, drop-rate=0.2"),
    ],
)
def test_describe_lists_the_faults_set(clocks, settings, expected):
    assert settings.describe() == expected
    assert make(clocks, settings).stats()["faults"] == expected


# --- the audit ----------------------------------------------------------------------------


def test_requests_by_path_counts_answers_by_status(clocks):
    sandbox = make(clocks)
    replies = [
        post(sandbox, TOKEN_PATH, CREDENTIALS),
        post(sandbox, TOKEN_PATH, {}),
    ]
    token = replies[0].body["response"]["access_token"]
    replies += [
        set_status(sandbox, "imp_11", "CANCELED", token),
        set_status(sandbox, "imp_12", "CANCELED", token),
        set_status(sandbox, "imp_404", "CANCELED", token),
        post(sandbox, "/nowhere", {}),
    ]
    for reply in replies:
        sandbox.audit.answered(reply.path, reply.status)
    stats = sandbox.stats()
    assert stats["requests"] == 6
    assert stats["requests_by_path"] == {
        TOKEN_PATH: {"200": 1, "401": 1},
        STATUS_PATH: {"200": 2, "404": 1},
        "other": {"404": 1},
    }
    assert stats["state_changes"] == 2


def test_max_requests_in_1s_is_the_busiest_second(clocks):
    sandbox = make(clocks)
    for _ in range(10):
        post(sandbox, TOKEN_PATH, CREDENTIALS)
        clocks.advance(0.05)
    clocks.advance(2.0)
    for _ in range(10):
        post(sandbox, TOKEN_PATH, CREDENTIALS)
        clocks.advance(0.15)
    stats = sandbox.stats()
    assert stats["max_requests_in_1s"] == 10
    assert stats["requests"] == 20


def test_max_in_flight_counts_requests_not_yet_answered(clocks):
    sandbox = make(clocks)
    replies = [post(sandbox, TOKEN_PATH, CREDENTIALS) for _ in range(3)]
    assert sandbox.stats()["in_flight"] == 3
    for reply in replies:
        sandbox.audit.answered(reply.path, reply.status)
    sandbox.audit.answered(post(sandbox, TOKEN_PATH, CREDENTIALS).path, 200)
    stats = sandbox.stats()
    assert stats["max_in_flight"] == 3 and stats["in_flight"] == 0


# --- inspect ------------------------------------------------------------------------------


def test_inspect_stats(clocks):
    sandbox = make(clocks, token_ttl=90.0)
    get_token(sandbox)
    reply = sandbox.inspect("GET", "/__sandbox__/stats")
    assert reply.status == 200
    assert reply.body["tokens_issued"] == 1 and reply.body["token_ttl"] == 90.0
    assert reply.body["requests"] == 1 and reply.body["faults"] == "none"


def test_inspect_order_shows_state_history_and_requests(clocks):
    sandbox = make(clocks)
    token = get_token(sandbox)
    set_status(sandbox, "imp_11", "DELIVERY_START", token)
    clocks.advance(61.5)
    set_status(sandbox, "imp_11", "PAID", token)  # 400: never reaches the order
    set_status(sandbox, "imp_11", "PURCHASE_DECISION", token)
    set_status(sandbox, "imp_11", "DELIVERY_START", token)  # forbidden: no history entry
    body = sandbox.inspect("GET", "/__sandbox__/orders/imp_11/").body
    assert body["imp_uid"] == "imp_11" and body["pg"] == "payco"
    assert body["state"] == "PURCHASE_DECISION"
    assert body["requests"] == 4  # every status request for the id, whatever its answer
    events = [(e["from"], e["to"], e["kind"]) for e in body["history"]]
    assert events == [
        ("PAID", "DELIVERY_START", "changed"),
        ("DELIVERY_START", "PURCHASE_DECISION", "changed"),
    ]
    times = [datetime.fromisoformat(e["at"]) for e in body["history"]]
    assert all(at.tzinfo is not None for at in times)
    assert [at.timestamp() for at in times] == [START, START + 61.5]


def test_inspect_orders_lists_preloaded_and_asked_about(clocks):
    sandbox = make(clocks, orders={"imp_5": Order("imp_5", "kcp", "PAID")})
    set_status(sandbox, "imp_11", "CANCELED", get_token(sandbox))
    set_status(sandbox, "imp_404", "CANCELED", get_token(sandbox))
    reply = sandbox.inspect("GET", "/__sandbox__/orders")
    assert reply.status == 200
    got = {o["imp_uid"]: (o["exists"], o["pg"], o["state"]) for o in reply.body["orders"]}
    assert got == {
        "imp_5": (True, "kcp", "PAID"),
        "imp_11": (True, "payco", "CANCELED"),
        "imp_404": (False, None, None),  # asked about, but no such payment
    }


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("POST", "/__sandbox__/stats", 405),
        ("DELETE", "/__sandbox__/orders/imp_11", 405),
        ("PUT", "/__sandbox__/orders", 405),
        ("GET", "/__sandbox__/orders/imp_11", 404),  # never asked about
        ("GET", "/__sandbox__/nothing", 404),
    ],
)
def test_inspect_refuses(clocks, method, path, status):
    sandbox = make(clocks)
    set_status(sandbox, "imp_12", "CANCELED", get_token(sandbox))
    assert sandbox.inspect(method, path).status == status
