"""Properties of reading, validating and reporting any input, checked with hypothesis.

- Any bytes, and any text saved as UTF-8: load_orders returns an OrdersFile or raises
  InputError, never anything else.
- Any table with imp_uid and status columns, written with the csv module: load_orders and
  validate_orders never raise; every non-blank record is in the frame once, under its
  spreadsheet row number; a dry run's results.csv has one row per record, in input order,
  with the input's values as written (formula-looking cells behind one apostrophe), and
  failures.csv has them raw.

Each example gets its own temporary folder (hypothesis and the tmp_path fixture do not mix).
"""

from __future__ import annotations

import csv
import re
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from batch.config import RunConfig
from batch.errors import InputError
from batch.inputs import OrdersFile, load_orders
from batch.job import execute, prepare
from batch.validation import DUPLICATE, INVALID, validate_orders

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# What a spreadsheet would run as a formula (README, results.csv), unless a plain number.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]+)*")
# Input columns results.csv renames, because it has columns of its own by those names.
RESULTS_OWN_COLUMNS = {"row", "outcome", "error_kind", "attempts", "finished_at"}


def load_or_input_error(path: Path) -> OrdersFile | None:
    try:
        orders = load_orders(path)
    except InputError as error:
        message = str(error)
        assert message and "\n" not in message.strip() and "Traceback" not in message
        return None
    # What came back is usable: row numbers from 2 up, text cells, both columns there.
    index = list(orders.frame.index)
    assert all(isinstance(row, int) and row >= 2 for row in index)
    assert index == sorted(set(index))
    assert {orders.imp_uid_column, orders.status_column} <= set(orders.columns)
    frame = orders.read_all()
    assert all(isinstance(v, str) for column in frame for v in frame[column])
    validate_orders(orders)  # and it can be judged
    return orders


# --- any bytes, any text -------------------------------------------------------------------------

PREFIXES = [
    b"",
    b"imp_uid,status\n",
    b"imp_uid;status\r\n",
    b"imp_uid\tstatus\r",
    b"\xef\xbb\xbfimp_uid,status\n",
    b"\xff\xfe",
    b"\xfe\xff",
    b"PK\x03\x04",
    b"\r",
    b"\n",
    '"imp_uid","status"\n"imp_1","취소"\n'.encode("cp949"),
]
any_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda prefix, rest: prefix + rest, st.sampled_from(PREFIXES), st.binary(max_size=200)
    ),
)

TOKENS = [
    "imp_uid", "status", "IMP_UID ", " Status", "imp_1", "imp_2", "DELIVERY_START", "취소",
    ",", ",", ";", "\t", "|", '"', '"', "\n", "\n", "\r", "\r\n", " ", "\ufeff", "\x00",
    "=1+1", "4.48E+11", "reason", "memo", "", "\u3000", "\u200b", "\x0b", "\x1c", "\u2028",
]  # fmt: skip
csv_like_text = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)
any_text = st.one_of(st.text(max_size=200), csv_like_text)  # st.text() excludes surrogates


@SETTINGS
@given(data=any_bytes)
@example(data=b"\xef")  # a file cut inside a UTF-8 BOM (found by this test)
@example(data=b"\xef\xbb\xbfimp_uid,status\n\xef")
def test_any_bytes_load_as_orders_or_raise_input_error(data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "orders.csv"
        path.write_bytes(data)
        load_or_input_error(path)


@SETTINGS
@given(text=any_text)
def test_any_utf8_text_loads_as_orders_or_raises_input_error(text: str):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "orders.csv"
        path.write_bytes(text.encode("utf-8"))
        load_or_input_error(path)


@pytest.mark.parametrize("data", [b"\r,", b"\r,\r\n", b"\r,\r,\r"])
def test_cr_then_separator_line(tmp_path, data):
    path = tmp_path / "orders.csv"
    path.write_bytes(data)
    with pytest.raises(InputError):
        load_orders(path)


@pytest.mark.parametrize(
    "data", [b"\xef\xbb\xbf\xef\xbb\xbf", b"\xff\xfe\xff\xfe"], ids=["utf-8", "utf-16"]
)
def test_nothing_but_two_boms(tmp_path, data):
    path = tmp_path / "orders.csv"
    path.write_bytes(data)
    with pytest.raises(InputError, match="is empty"):
        load_orders(path)


# --- generated tables ----------------------------------------------------------------------------

valid_imp_uid = st.from_regex(r"imp_[0-9]{1,15}", fullmatch=True)
junk = st.sampled_from(
    [
        "", " ", "  ", "bad", "imp_", "imp_12a", "IMP_1", "imp_1 /x", "imp_1/../x", "4.48E+11",
        "448280090638", "NA", "null", "nan", "None", "#N/A", "'imp_1", "0", "1,234", "a,b",
        'say "hi"', '"', '""', "line\nbreak", "\n", "\t", "\u3000", "\u200bimp_3", "imp_4\ufeff",
    ]
)  # fmt: skip
korean = st.sampled_from(
    ["배송시작", "구매확정", "취소", "배송 시작", "홍길동", "서울, 강남구", "메모\n두 줄", "ㅋㅋ"]
)
formula = st.sampled_from(
    [
        "=1+1",
        "@SUM(A1)",
        "-5",
        "+82-10",
        "+82",
        "-1,500",
        "-",
        "+",
        "=",
        "@",
        "\tx",
        "=cmd|'/c calc'!A0",
    ]
)
status_value = st.sampled_from(
    ["DELIVERY_START", "PURCHASE_DECISION", "CANCELED", "canceled", " Delivery_Start ", "SHIPPED"]
)
# Any characters but NUL (binary: a file holding one is refused as a whole).
free_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=12,
)
cell = st.one_of(valid_imp_uid, junk, korean, formula, status_value, free_text)

EXTRA_COLUMNS = ["memo", "order_no", "고객명", "amount", "row", "outcome", "note 2"]


@st.composite
def tables(draw, cells=cell):
    """(header, records, delimiter, line terminator, encoding) of a table to write."""
    imp_uid = draw(st.sampled_from(["imp_uid", "IMP_UID", " imp_uid ", "Imp_Uid"]))
    status = draw(st.sampled_from(["status", "Status", "STATUS ", " status"]))
    extras = draw(st.lists(st.sampled_from(EXTRA_COLUMNS), unique=True, max_size=3))
    header = draw(st.permutations([imp_uid, status, *extras]))
    column_of = {name: i for i, name in enumerate(header)}
    width = len(header)
    blank_cell = st.sampled_from(["", " ", "\t", "\n", "\u3000"])

    def record(kind):
        if kind == "blank":
            return st.lists(blank_cell, min_size=width, max_size=width)
        values = st.lists(cells, min_size=width, max_size=width)
        if kind == "valid":  # a row likely to be sent, so that some are
            return st.builds(
                lambda row, uid, code: _put(
                    row, {column_of[imp_uid]: uid, column_of[status]: code}
                ),
                values,
                valid_imp_uid,
                status_value,
            )
        return values

    kinds = st.sampled_from(["valid", "valid", "any", "any", "blank"])
    records = draw(st.lists(kinds.flatmap(record), max_size=8))
    delimiter = draw(st.sampled_from([",", ",", ";", "\t"]))
    terminator = draw(st.sampled_from(["\r\n", "\n"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
    return header, records, delimiter, terminator, encoding


def _put(row: list[str], values: dict[int, str]) -> list[str]:
    row = list(row)
    for i, value in values.items():
        row[i] = value
    return row


def write_table(path: Path, header, records, delimiter, terminator, encoding) -> None:
    with path.open("w", encoding=encoding, newline="") as file:
        # Python's csv writer quotes a cell only for the characters of its own line
        # terminator: with "\n" a bare CR would go out unquoted and end the line for any
        # reader. A spreadsheet quotes it; so does this test.
        writer = csv.writer(
            file, delimiter=delimiter, lineterminator=terminator, quoting=csv.QUOTE_ALL
        )
        writer.writerow(header)
        writer.writerows(records)


def neutralised(value: str) -> str:
    if value.startswith(FORMULA_START) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def read_report(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def check_table(folder: Path, header, records, delimiter, terminator, encoding) -> None:
    path = folder / "orders.csv"
    write_table(path, header, records, delimiter, terminator, encoding)
    kept = [
        (row, values)
        for row, values in enumerate(records, start=2)
        if any(value.strip() for value in values)
    ]
    rows = [row for row, _ in kept]

    orders = load_orders(path)
    validation = validate_orders(orders)
    assert list(orders.frame.index) == rows
    assert list(validation.frame.index) == rows
    assert all(a < b for a, b in zip(rows, rows[1:], strict=False))
    assert orders.blank_rows == len(records) - len(kept)
    frame = orders.read_all()
    assert list(frame.index) == rows
    assert list(frame.columns) == list(header)
    assert [list(frame.loc[row]) for row in rows] == [values for _, values in kept]

    plan = prepare(RunConfig(input_path=path, dry_run=True, out_dir=folder / "out"))
    execute(plan)

    results = read_report(folder / "out" / "results.csv")
    assert [int(row) for row in results["row"]] == rows
    for i, name in enumerate(header):
        column = f"input_{name}" if name in RESULTS_OWN_COLUMNS else name
        assert list(results[column]) == [neutralised(values[i]) for _, values in kept], name
    verdict = validation.frame["verdict"].astype(object)
    expected_outcome = verdict.map({INVALID: "invalid", DUPLICATE: "duplicate"}).fillna("not_sent")
    assert list(results["outcome"]) == list(expected_outcome)

    # Nothing succeeded in a dry run: every record is in failures.csv, raw, plus its reason.
    failures = read_report(folder / "out" / "failures.csv")
    assert list(failures.columns) == [*header, "reason"]
    assert failures[list(header)].values.tolist() == [values for _, values in kept]
    assert all(failures["reason"])


@settings(SETTINGS, max_examples=150)
@given(table=tables())
def test_any_table_is_read_validated_and_reported_row_for_row(table):
    with tempfile.TemporaryDirectory() as folder:
        check_table(Path(folder), *table)


@pytest.mark.parametrize(
    "value", ["two\rlines", "\r=1+1", "\r"], ids=["inside", "formula", "alone"]
)
def test_a_cell_holding_a_carriage_return_survives_the_reports(tmp_path, value):
    header = ["imp_uid", "status", "memo"]
    records = [["imp_1", "CANCELED", value], ["imp_2", "DELIVERY_START", "x"]]
    check_table(tmp_path, header, records, ",", "\r\n", "utf-8")
