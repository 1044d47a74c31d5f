"""validate_orders: a verdict (send, invalid, duplicate) and a reason for every row."""

from __future__ import annotations

import pytest

from batch.inputs import load_orders
from batch.validation import RowError, validate_orders

HEADER = "imp_uid,status\n"
STATUS_REASON = (
    "status must be one of DELIVERY_START, PURCHASE_DECISION, CANCELED "
    "(or 배송시작, 구매확정, 취소)"
)
IMP_UID_REASON = "imp_uid must look like imp_123456789012"


@pytest.fixture
def validate(write_csv):
    """validate(*rows) -> Validation of a file with an imp_uid,status header and those rows."""

    def run(*rows: str):
        return validate_orders(load_orders(write_csv(HEADER + "".join(f"{r}\n" for r in rows))))

    return run


def row(validation, number: int) -> dict:
    return validation.frame.loc[number].to_dict()


# --- statuses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("DELIVERY_START", "DELIVERY_START"),
        (" delivery_start ", "DELIVERY_START"),
        ("Purchase_Decision", "PURCHASE_DECISION"),
        ("canceled  ", "CANCELED"),
        ("배송시작", "DELIVERY_START"),
        (" 구매확정 ", "PURCHASE_DECISION"),
        ("취소", "CANCELED"),
    ],
)
def test_status_codes_and_korean_labels_are_normalised_to_the_code(validate, typed, code):
    validation = validate(f" imp_1 ,{typed}")

    assert row(validation, 2) == {
        "imp_uid": "imp_1",
        "status": code,
        "verdict": "send",
        "reason": "",
        "duplicate_of": 0,
    }
    assert validation.errors == []


@pytest.mark.parametrize(
    ("typed", "shown"), [("SHIPPED", "'SHIPPED'"), ("", "nothing"), ("   ", "nothing")]
)
def test_invalid_status_is_rejected_with_what_was_found(validate, typed, shown):
    validation = validate(f"imp_1,{typed}")

    reason = f"{STATUS_REASON} (got {shown})"
    assert row(validation, 2) == {
        "imp_uid": "imp_1",
        "status": "",
        "verdict": "invalid",
        "reason": reason,
        "duplicate_of": 0,
    }
    assert validation.errors == [RowError(2, "imp_1", reason)]


# --- imp_uid ---------------------------------------------------------------------------------


@pytest.mark.parametrize("imp_uid", ["imp_1", "imp_123456789012", "  imp_42  "])
def test_valid_imp_uid_is_trimmed_and_sent(validate, imp_uid):
    validation = validate(f"{imp_uid},CANCELED")

    assert validation.frame.loc[2, "imp_uid"] == imp_uid.strip()
    assert validation.frame.loc[2, "verdict"] == "send"


@pytest.mark.parametrize(
    "imp_uid",
    [
        "imp_",
        "imp_12a",
        "12345",
        "IMP_123",
        "imp_１２３",  # full-width digits
        "imp_١٢٣",  # Arabic-Indic digits
        "imp_1/../x",
        "imp_1?x=1",
        "imp_1 2",
    ],
)
def test_malformed_imp_uid_is_rejected_with_what_was_found(validate, imp_uid):
    validation = validate(f" {imp_uid} ,CANCELED")

    reason = f"{IMP_UID_REASON} (got '{imp_uid}')"
    assert validation.frame.loc[2, "verdict"] == "invalid"
    assert validation.errors == [RowError(2, imp_uid, reason)]


def test_empty_imp_uid_says_it_got_nothing(validate):
    validation = validate(",CANCELED")

    assert validation.errors == [RowError(2, "", f"{IMP_UID_REASON} (got nothing)")]


def test_long_value_is_cut_to_40_characters_in_the_reason(validate):
    validation = validate(f"imp_{'x' * 60},CANCELED")

    assert validation.frame.loc[2, "reason"] == f"{IMP_UID_REASON} (got 'imp_{'x' * 36}')"


def test_row_with_bad_imp_uid_and_bad_status_gives_both_reasons(validate):
    validation = validate("12345,SHIPPED")

    assert validation.frame.loc[2, "reason"] == (
        f"{IMP_UID_REASON} (got '12345'); {STATUS_REASON} (got 'SHIPPED')"
    )


# --- duplicates ------------------------------------------------------------------------------


def test_exact_duplicates_send_the_first_row_only(validate):
    validation = validate("imp_1,CANCELED", "imp_2,CANCELED", "imp_1,CANCELED", "imp_1,CANCELED")

    assert list(validation.frame["verdict"]) == ["send", "send", "duplicate", "duplicate"]
    assert list(validation.frame["duplicate_of"]) == [0, 0, 2, 2]
    assert row(validation, 4)["reason"] == "same imp_uid and status as row 2"
    assert row(validation, 5)["reason"] == "same imp_uid and status as row 2"
    assert validation.count("duplicate") == 2
    assert validation.errors == []
    assert list(validation.to_send.index) == [2, 3]


@pytest.mark.parametrize(
    "repeat", [" imp_1 ,delivery_start", "imp_1,배송시작"], ids=["spaces-and-case", "korean"]
)
def test_duplicates_are_found_on_normalised_values(validate, repeat):
    validation = validate("imp_1,DELIVERY_START", repeat)

    assert row(validation, 3) == {
        "imp_uid": "imp_1",
        "status": "DELIVERY_START",
        "verdict": "duplicate",
        "reason": "same imp_uid and status as row 2",
        "duplicate_of": 2,
    }


# --- conflicts -------------------------------------------------------------------------------


def test_conflicting_statuses_make_every_row_of_that_imp_uid_invalid(validate):
    validation = validate("imp_5,DELIVERY_START", "imp_6,CANCELED", "imp_5,CANCELED")

    reason = "conflicting statuses for imp_5 in rows 2 and 4"
    assert validation.errors == [RowError(2, "imp_5", reason), RowError(4, "imp_5", reason)]
    assert list(validation.to_send.index) == [3]


@pytest.mark.parametrize(
    ("rows", "named"),
    [
        (3, "2, 3, 4"),
        (5, "2, 3, 4, 5, 6"),
        (6, "2, 3, 4, 5, 6 and 1 more"),
        (8, "2, 3, 4, 5, 6 and 3 more"),
    ],
)
def test_conflict_message_names_at_most_five_rows(validate, rows, named):
    # Alternating statuses: the repeats of one status inside a conflict are not duplicates.
    statuses = ["DELIVERY_START", "CANCELED"]
    validation = validate(*(f"imp_5,{statuses[i % 2]}" for i in range(rows)))

    assert validation.count("invalid") == rows
    assert validation.count("duplicate") == 0
    assert set(validation.frame["reason"]) == {f"conflicting statuses for imp_5 in rows {named}"}


def test_invalid_status_row_does_not_conflict_with_a_valid_row(validate):
    validation = validate("imp_5,DELIVERY_START", "imp_5,SHIPPED")

    assert row(validation, 2)["verdict"] == "send"
    assert validation.errors == [RowError(3, "imp_5", f"{STATUS_REASON} (got 'SHIPPED')")]


# --- the result as a whole -------------------------------------------------------------------


def test_frame_is_indexed_by_input_row_numbers_with_the_documented_columns(write_csv):
    path = write_csv(HEADER + "imp_1,CANCELED\n\nimp_2,CANCELED\n")

    validation = validate_orders(load_orders(path))

    assert list(validation.frame.index) == [2, 4]
    assert list(validation.frame.columns) == [
        "imp_uid",
        "status",
        "verdict",
        "reason",
        "duplicate_of",
    ]


def test_status_counts_count_only_rows_to_send_in_api_order(validate):
    validation = validate(
        "imp_1,CANCELED",
        "imp_2,CANCELED",
        "imp_2,CANCELED",  # duplicate
        "imp_3,PURCHASE_DECISION",
        "imp_4,DELIVERY_START",
        "imp_4,CANCELED",  # conflict: neither row is sent
        "imp_5,SHIPPED",  # invalid
    )

    counts = validation.status_counts()

    assert list(counts.items()) == [
        ("DELIVERY_START", 0),
        ("PURCHASE_DECISION", 1),
        ("CANCELED", 2),
    ]


def test_header_only_file_validates_to_nothing(write_csv):
    validation = validate_orders(load_orders(write_csv(HEADER)))

    assert len(validation.frame) == 0
    assert validation.errors == []
    assert validation.status_counts() == {
        "DELIVERY_START": 0,
        "PURCHASE_DECISION": 0,
        "CANCELED": 0,
    }


def test_large_file_is_validated_with_the_right_counts(write_csv):
    codes = ["DELIVERY_START", "PURCHASE_DECISION", "CANCELED"]
    lines = [f"imp_{i},{codes[i % 3]}" for i in range(99_000)]
    lines += [f"imp_{i},{codes[i % 3]}" for i in range(500)]  # duplicates of rows 2..501
    lines += [f"imp_{200_000 + i},SHIPPED" for i in range(500)]
    assert len(lines) == 100_000

    validation = validate_orders(load_orders(write_csv(HEADER + "\n".join(lines) + "\n")))

    assert len(validation.frame) == 100_000
    assert validation.count("send") == 99_000
    assert validation.count("duplicate") == 500
    assert validation.count("invalid") == 500
    assert validation.status_counts() == {
        "DELIVERY_START": 33_000,
        "PURCHASE_DECISION": 33_000,
        "CANCELED": 33_000,
    }
    assert validation.frame.loc[99_002, "duplicate_of"] == 2
    assert validation.frame.loc[100_001, "verdict"] == "invalid"
