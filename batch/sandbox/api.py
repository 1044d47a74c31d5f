"""The sandbox's behaviour, apart from any HTTP server: request facts in, a Reply out.

The server adapter (app.py) only moves bytes: it hands each request to `Sandbox.handle`,
waits `reply.delay`, then sends the reply or, for a dropped one, closes the connection.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from batch.sandbox.audit import OTHER_PATH, STATUS_PATH, TOKEN_PATH, Audit
from batch.sandbox.faults import Faults, FaultSettings
from batch.sandbox.orders import (
    CHANGED,
    FORBIDDEN,
    NO_OP,
    NOT_PAYCO,
    STATUSES,
    Order,
    OrderBook,
)
from batch.sandbox.tokens import DEFAULT_TOKEN_TTL, TokenIssuer

SANDBOX_KEY = "sandbox_key"
SANDBOX_SECRET = "sandbox_secret"
SANDBOX_PREFIX = "/__sandbox__"

# The sandbox's own wording, in iamport's style: iamport documents no endpoint-specific
# messages besides the not-found and internal-error ones, which are quoted exactly.
MESSAGES = {
    "bad_credentials": "imp_key, imp_secret 인증에 실패했습니다.",
    "bad_token": "인증 Token이 전달되지 않았거나 유효하지 않습니다.",
    "bad_status": "status 값이 올바르지 않습니다. (DELIVERY_START, PURCHASE_DECISION, CANCELED)",
    "not_found": "존재하지 않는 결제정보입니다.",
    "not_payco": "PAYCO 결제건이 아닙니다.",
    "forbidden": "현재 주문상태({state})에서는 {status}(으)로 변경할 수 없습니다.",
    "throttled": "요청이 너무 많습니다. 잠시 후 다시 시도해주세요.",
    500: "포트원 내부 이슈로 인한 API 호출 실패",
    503: "일시적으로 서비스를 이용할 수 없습니다.",
    "no_route": "요청하신 API를 찾을 수 없습니다.",
}


@dataclass(frozen=True)
class SandboxSettings:
    token_ttl: float = DEFAULT_TOKEN_TTL
    faults: FaultSettings = field(default_factory=FaultSettings)
    orders: Mapping[str, Order] | None = None


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    hang: bool = False
    path: str = OTHER_PATH  # the audit's name for the endpoint

    def encode(self) -> bytes:
        return json.dumps(self.body, ensure_ascii=False).encode("utf-8")


def envelope(code: int, message: str | None, response: object = None) -> dict:
    return {"code": code, "message": message, "response": response}


class Sandbox:
    """A local iamport: tokens, PAYCO orders and their state machine, faults, an audit."""

    def __init__(
        self,
        settings: SandboxSettings | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or SandboxSettings()
        self.tokens = TokenIssuer(wall_clock, self.settings.token_ttl)
        self.orders = OrderBook(wall_clock, dict(self.settings.orders or {}))
        self.faults = Faults(self.settings.faults, monotonic)
        self.audit = Audit(monotonic)

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply | None:
        """Answer one API request; None when `path` is the sandbox's own (see `inspect`).

        `headers` has lower-case names. The caller reports the end of the request to
        `self.audit.answered` once the reply is sent or dropped.
        """
        if path.startswith(SANDBOX_PREFIX):
            return None
        self.audit.arrived()
        endpoint = _endpoint(path)
        order = None
        if endpoint == STATUS_PATH:
            order = self.orders.count_request(path[len(STATUS_PATH) + 1 :])
        fate = self.faults.decide()
        if fate.error is not None:
            headers_out = {"Retry-After": str(fate.retry_after)} if fate.retry_after else {}
            message = MESSAGES["throttled"] if fate.error == 429 else MESSAGES[fate.error]
            return Reply(fate.error, envelope(-1, message), headers_out, fate.delay, path=endpoint)

        if method != "POST" or endpoint == OTHER_PATH:
            reply = Reply(404, envelope(-1, MESSAGES["no_route"]))
        elif endpoint == TOKEN_PATH:
            reply = self._get_token(_fields(headers, body))
        else:
            reply = self._change_status(order, headers.get("authorization"), _fields(headers, body))
        if fate.hang:
            self.audit.hung += 1
        return Reply(
            reply.status,
            reply.body,
            reply.headers,
            delay=fate.delay,
            drop=fate.drop,
            hang=fate.hang,
            path=endpoint,
        )

    def _get_token(self, fields: Mapping[str, str]) -> Reply:
        if fields.get("imp_key") != SANDBOX_KEY or fields.get("imp_secret") != SANDBOX_SECRET:
            return Reply(401, envelope(-1, MESSAGES["bad_credentials"]))
        token, now, expired_at = self.tokens.issue()
        return Reply(
            200, envelope(0, None, {"access_token": token, "now": now, "expired_at": expired_at})
        )

    def _change_status(
        self, order: Order | None, authorization: str | None, fields: Mapping[str, str]
    ) -> Reply:
        # iamport takes "Bearer <token>" and a bare "<token>" alike.
        token = (authorization or "").strip().removeprefix("Bearer ").strip()
        if not token or not self.tokens.valid(token):
            return Reply(401, envelope(-1, MESSAGES["bad_token"]))
        status = fields.get("status")
        if status not in STATUSES:
            return Reply(400, envelope(-1, MESSAGES["bad_status"]))
        if order is None:
            return Reply(404, envelope(-1, MESSAGES["not_found"]))
        before = order.state
        result = self.orders.change(order, status)
        if result == NOT_PAYCO:
            return Reply(200, envelope(1, MESSAGES["not_payco"]))
        if result == FORBIDDEN:
            message = MESSAGES["forbidden"].format(state=before, status=status)
            return Reply(200, envelope(1, message))
        if result == CHANGED:
            self.audit.state_changes += 1
        elif result == NO_OP:
            self.audit.no_ops += 1
        return Reply(200, envelope(0, None, {"status": status}))

    def inspect(self, method: str, path: str) -> Reply:
        """The audit endpoints under /__sandbox__/: stats, one order, or every order seen."""
        rest = path[len(SANDBOX_PREFIX) :].strip("/")
        if method != "GET":
            return Reply(405, {"error": "GET only"})
        if rest == "stats":
            return Reply(200, self.stats())
        if rest == "orders":
            return Reply(200, {"orders": self.orders.describe_all()})
        if rest.startswith("orders/"):
            order = self.orders.describe(rest[len("orders/") :])
            if order is None:
                return Reply(404, {"error": "this order was never preloaded or asked about"})
            return Reply(200, order)
        return Reply(404, {"error": "try /__sandbox__/stats or /__sandbox__/orders/<imp_uid>"})

    def stats(self) -> dict:
        return self.audit.snapshot() | {
            "tokens_issued": self.tokens.issued,
            "token_ttl": self.tokens.ttl,
            "faults": self.settings.faults.describe(),
        }


def _endpoint(path: str) -> str:
    if path == TOKEN_PATH:
        return TOKEN_PATH
    if path.startswith(STATUS_PATH + "/") and path.count("/") == 4:
        return STATUS_PATH
    return OTHER_PATH


def _fields(headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    """The request's parameters, from a JSON object or a form, as iamport accepts both."""
    content_type = headers.get("content-type", "")
    if "application/x-www-form-urlencoded" not in content_type:
        try:
            parsed = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if isinstance(parsed, dict):
            return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in parsed.items()}
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return {}
    return {key: values[0] for key, values in form.items()}
