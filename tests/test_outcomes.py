"""The outcome record: every field of a row's fate reaches the journal, under its own name."""

from __future__ import annotations

import dataclasses

from batch.outcomes import FAILED, RowOutcome


def test_the_journal_record_holds_every_field_with_its_value():
    outcome = RowOutcome(
        row=7,
        imp_uid="imp_1",
        status="CANCELED",
        outcome=FAILED,
        error_kind="business",
        http_status=200,
        api_code=-1,
        api_message="이미 취소된 주문입니다",
        applied_status=None,
        attempts=2,
        rate_limited=1,
        elapsed_ms=12.5,
        finished_at="2026-12-04T09:00:00.000+00:00",
        final=False,
        resent=True,
    )

    record = outcome.to_record()

    assert record.pop("type") == "outcome"
    assert record == dataclasses.asdict(outcome)
    assert list(record) == [field.name for field in dataclasses.fields(RowOutcome)]
