"""The sandbox's orders: who exists, which PG took the payment, and the PAYCO state machine.

Any `imp_<digits>` has a known fate without a data file, so that tests and demos can use
made-up ids: ending in 404, no such payment; ending in 777, a payment by another PG;
ending in 0, a PAYCO order already shipped (DELIVERY_START), so that PURCHASE_DECISION can
succeed on it; otherwise a PAYCO order in state PAID. `--orders FILE` preloads others.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

PAID = "PAID"
DELIVERY_START = "DELIVERY_START"
PURCHASE_DECISION = "PURCHASE_DECISION"
CANCELED = "CANCELED"
STATUSES = (DELIVERY_START, PURCHASE_DECISION, CANCELED)
STATES = (PAID, *STATUSES)

# Which state may follow which. PURCHASE_DECISION and CANCELED are final.
TRANSITIONS: dict[str, frozenset[str]] = {
    PAID: frozenset({DELIVERY_START, CANCELED}),
    DELIVERY_START: frozenset({PURCHASE_DECISION, CANCELED}),
    PURCHASE_DECISION: frozenset(),
    CANCELED: frozenset(),
}

NOT_FOUND_SUFFIX = "404"
OTHER_PG_SUFFIX = "777"
SHIPPED_SUFFIX = "0"
PAYCO = "payco"
IMP_UID = re.compile(r"imp_[0-9]+")

# Outcomes of a change request.
CHANGED = "changed"
NO_OP = "no_op"
FORBIDDEN = "forbidden"
NOT_PAYCO = "not_payco"


class OrdersFileError(ValueError):
    """The --orders file cannot be used; the message says why, with the line."""


@dataclass
class Order:
    imp_uid: str
    pg: str
    state: str
    requests: int = 0  # status requests for this imp_uid, whatever their answer
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "imp_uid": self.imp_uid,
            "exists": True,
            "pg": self.pg,
            "state": self.state,
            "requests": self.requests,
            "history": self.history,
        }


class OrderBook:
    """Every order the sandbox knows or has been asked about, created on first use."""

    def __init__(self, wall_clock: Callable[[], float], preload: dict[str, Order] | None = None):
        self._wall_clock = wall_clock
        self._orders: dict[str, Order] = dict(preload or {})
        # Requests for payments that do not exist, by imp_uid: the audit must show that a
        # request was made even when there was no order to make it to.
        self._missing: Counter[str] = Counter()

    def count_request(self, imp_uid: str) -> Order | None:
        """Note a status request for `imp_uid`, whatever its answer; return its order, if any."""
        order = self.find(imp_uid)
        if order is None:
            self._missing[imp_uid] += 1
        else:
            order.requests += 1
        return order

    def find(self, imp_uid: str) -> Order | None:
        """The order, or None when no such payment exists."""
        order = self._orders.get(imp_uid)
        if order is not None:
            return order
        if not IMP_UID.fullmatch(imp_uid) or imp_uid.endswith(NOT_FOUND_SUFFIX):
            return None
        pg = "kcp" if imp_uid.endswith(OTHER_PG_SUFFIX) else PAYCO
        state = DELIVERY_START if imp_uid.endswith(SHIPPED_SUFFIX) else PAID
        order = self._orders[imp_uid] = Order(imp_uid, pg, state)
        return order

    def describe(self, imp_uid: str) -> dict | None:
        """The audit view of one imp_uid, if it was preloaded or asked about; None otherwise."""
        order = self._orders.get(imp_uid)
        if order is not None:
            return order.to_dict()
        if imp_uid in self._missing:
            return _missing(imp_uid, self._missing[imp_uid])
        return None

    def describe_all(self) -> list[dict]:
        return [order.to_dict() for order in self._orders.values()] + [
            _missing(imp_uid, requests) for imp_uid, requests in self._missing.items()
        ]

    def change(self, order: Order, status: str) -> str:
        """Apply `status` to `order`; return CHANGED, NO_OP, FORBIDDEN or NOT_PAYCO."""
        if order.pg != PAYCO:
            return NOT_PAYCO
        if order.state == status:
            order.history.append(self._event(order.state, status, NO_OP))
            return NO_OP
        if status not in TRANSITIONS[order.state]:
            return FORBIDDEN
        order.history.append(self._event(order.state, status, CHANGED))
        order.state = status
        return CHANGED

    def _event(self, before: str, after: str, kind: str) -> dict:
        at = datetime.fromtimestamp(self._wall_clock()).astimezone()
        return {
            "from": before,
            "to": after,
            "kind": kind,
            "at": at.isoformat(timespec="milliseconds"),
        }


def _missing(imp_uid: str, requests: int) -> dict:
    return {
        "imp_uid": imp_uid,
        "exists": False,
        "pg": None,
        "state": None,
        "requests": requests,
        "history": [],
    }


def load_orders_file(path: str | Path) -> dict[str, Order]:
    """Read a CSV of `imp_uid,pg,state` (header required) into orders."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            reader = csv.DictReader(file)
            if not reader.fieldnames or not {"imp_uid", "pg", "state"} <= {
                name.strip().lower() for name in reader.fieldnames
            }:
                raise OrdersFileError(f"{path} needs a header row imp_uid,pg,state.")
            orders = {}
            for row in reader:
                line = reader.line_num  # the file's own line, blank lines counted
                row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                imp_uid, pg, state = row["imp_uid"], row["pg"].lower(), row["state"].upper()
                if not IMP_UID.fullmatch(imp_uid):
                    raise OrdersFileError(f"{path} line {line}: {imp_uid!r} is not imp_<digits>.")
                if state not in STATES:
                    raise OrdersFileError(
                        f"{path} line {line}: state must be one of {', '.join(STATES)}."
                    )
                orders[imp_uid] = Order(imp_uid, pg or PAYCO, state)
            return orders
    except OSError as error:
        raise OrdersFileError(f"{path} cannot be read: {error.strerror}.") from None
    except UnicodeDecodeError:
        raise OrdersFileError(f"{path} is not UTF-8 text.") from None
