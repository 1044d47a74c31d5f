"""The vocabulary of results: what can happen to a row, and the record of what did."""

from __future__ import annotations

from dataclasses import dataclass

# Final outcome of a row (results.csv `outcome`).
SUCCEEDED = "succeeded"
FAILED = "failed"
INVALID = "invalid"
DUPLICATE = "duplicate"
NOT_SENT = "not_sent"
# Sent, but no definitive answer came (a timeout or a lost connection after the request
# left, or the run stopped while it was in flight): the order may or may not have changed.
UNKNOWN = "unknown"
OUTCOMES = (SUCCEEDED, FAILED, UNKNOWN, INVALID, DUPLICATE, NOT_SENT)

# Why a row did not succeed (results.csv `error_kind`).
VALIDATION = "validation"
AUTH = "auth"
BUSINESS = "business"  # HTTP 200 with a non-zero `code`: iamport said no, in its own words
NOT_FOUND = "not_found"
CLIENT_ERROR = "client_error"
SERVER_ERROR = "server_error"
RATE_LIMITED = "rate_limited"
TIMEOUT = "timeout"
NETWORK = "network"
STATUS_MISMATCH = "status_mismatch"  # success, but the order ended in another status
ERROR_KINDS = (
    VALIDATION,
    AUTH,
    BUSINESS,
    NOT_FOUND,
    CLIENT_ERROR,
    SERVER_ERROR,
    RATE_LIMITED,
    TIMEOUT,
    NETWORK,
    STATUS_MISMATCH,
)

# Failures that may pass on their own: worth another try after a wait.
TRANSIENT_KINDS = frozenset({SERVER_ERROR, RATE_LIMITED, TIMEOUT, NETWORK})


@dataclass(frozen=True)
class RowOutcome:
    """The final fate of one sent row, as the journal records it."""

    row: int
    imp_uid: str
    status: str
    outcome: str
    error_kind: str
    http_status: int | None
    api_code: int | None
    api_message: str | None
    applied_status: str | None
    attempts: int
    rate_limited: int  # how many of those attempts were answered 429
    elapsed_ms: float
    finished_at: str  # ISO 8601 with UTC offset
    # False when the run stopped before this row's retries were used up: a resume sends it
    # again rather than taking this as its last word.
    final: bool = True
    resent: bool = False  # a request of an earlier run was in flight when it stopped

    def to_record(self) -> dict:
        # Spelled out: dataclasses.asdict deep-copies every field, which cost about a tenth
        # of the client's CPU per row at 2,000 rows/s (cProfile, 20,000 rows).
        return {
            "type": "outcome",
            "row": self.row,
            "imp_uid": self.imp_uid,
            "status": self.status,
            "outcome": self.outcome,
            "error_kind": self.error_kind,
            "http_status": self.http_status,
            "api_code": self.api_code,
            "api_message": self.api_message,
            "applied_status": self.applied_status,
            "attempts": self.attempts,
            "rate_limited": self.rate_limited,
            "elapsed_ms": self.elapsed_ms,
            "finished_at": self.finished_at,
            "final": self.final,
            "resent": self.resent,
        }
