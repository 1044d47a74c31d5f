"""load_orders: bytes to text to a frame of strings indexed by spreadsheet row number."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from batch.errors import InputError
from batch.inputs import load_orders

HEADER = "imp_uid,status\n"


def load_error(path, encoding=None) -> str:
    """The message of the InputError that loading `path` raises."""
    with pytest.raises(InputError) as caught:
        load_orders(path, encoding)
    return str(caught.value)


# --- encodings -------------------------------------------------------------------------------


def test_utf8_without_bom_is_read_with_korean_text_intact(write_csv):
    path = write_csv("imp_uid,status,메모\nimp_1,배송시작,안녕하세요\n")

    orders = load_orders(path)

    assert orders.encoding in ("utf-8", "utf-8-sig")
    assert orders.columns == ["imp_uid", "status", "메모"]
    assert orders.read_all().loc[2].to_dict() == {
        "imp_uid": "imp_1",
        "status": "배송시작",
        "메모": "안녕하세요",
    }


@pytest.mark.parametrize("encoding", [None, "utf-8"], ids=["auto", "override"])
def test_utf8_bom_does_not_end_up_in_the_first_column_name(write_csv, encoding):
    path = write_csv("\ufeffimp_uid,status\nimp_1,CANCELED\n")

    orders = load_orders(path, encoding)

    assert orders.columns == ["imp_uid", "status"]
    assert orders.imp_uid_column == "imp_uid"
    assert orders.frame.loc[2, "imp_uid"] == "imp_1"


def test_cp949_file_is_detected_and_decoded(write_csv):
    path = write_csv("imp_uid,status,메모\nimp_1,구매확정,택배 발송\n", encoding="cp949")

    orders = load_orders(path)

    assert orders.encoding == "cp949"
    assert orders.columns == ["imp_uid", "status", "메모"]
    assert orders.frame.loc[2, "status"] == "구매확정"
    assert orders.read_all().loc[2, "메모"] == "택배 발송"


def test_encoding_override_wins_over_detection(write_csv):
    # Valid UTF-8, but the operator says latin-1: the override is used, mojibake and all.
    path = write_csv("imp_uid,status\nimp_1,배송시작\n")

    orders = load_orders(path, "latin-1")

    assert orders.encoding == "latin-1"
    assert orders.frame.loc[2, "status"] == "배송시작".encode().decode("latin-1")


def test_unknown_encoding_name_is_an_input_error(write_csv):
    path = write_csv(HEADER + "imp_1,CANCELED\n")

    assert load_error(path, "no-such-codec") == "'no-such-codec' is not an encoding Python knows."


def test_bytes_invalid_in_the_given_encoding_report_their_offset(write_csv):
    prefix = "imp_uid,status\nimp_1,"
    path = write_csv(prefix + "배송시작\n")

    assert load_error(path, "ascii") == (
        f"{path} is not valid ascii: undecodable bytes at offset {len(prefix.encode())}."
    )


def test_bytes_that_are_neither_utf8_nor_cp949_ask_for_an_encoding(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_bytes(b"imp_uid,status\nimp_1,\xff\xff\n")

    assert load_error(path) == (
        f"{path} is neither UTF-8 nor cp949/EUC-KR text; give its encoding with --encoding."
    )


# --- columns ---------------------------------------------------------------------------------


def test_headers_match_case_insensitively_after_trimming_and_keep_their_text(write_csv):
    path = write_csv(" IMP_UID ,Status\nimp_1,CANCELED\n")

    orders = load_orders(path)

    assert orders.imp_uid_column == " IMP_UID "
    assert orders.status_column == "Status"
    assert orders.columns == [" IMP_UID ", "Status"]
    assert orders.frame.loc[2, " IMP_UID "] == "imp_1"


def test_values_and_extra_columns_are_kept_exactly_as_read(write_csv):
    path = write_csv("imp_uid,status, Memo ,amount\n imp_1 , canceled ,  two  spaces  ,1\n")

    orders = load_orders(path)

    assert orders.columns == ["imp_uid", "status", " Memo ", "amount"]
    assert orders.read_all().loc[2].to_dict() == {
        "imp_uid": " imp_1 ",
        "status": " canceled ",
        " Memo ": "  two  spaces  ",
        "amount": "1",
    }


@pytest.mark.parametrize("reason_header", ["reason", " Reason "])
def test_reason_column_is_dropped_so_failures_csv_can_be_fed_back(write_csv, reason_header):
    path = write_csv(
        f"\ufeffimp_uid,status,memo,{reason_header}\nimp_1,CANCELED,x,timeout: no answer\n"
    )

    orders = load_orders(path)

    assert orders.columns == ["imp_uid", "status", "memo"]
    assert orders.read_all().loc[2].to_dict() == {
        "imp_uid": "imp_1",
        "status": "CANCELED",
        "memo": "x",
    }


def test_all_values_are_text_and_nothing_is_parsed(write_csv):
    path = write_csv("imp_uid,status,amount,a,b,c,d\nimp_007,CANCELED,007,NA,null,1e3,\n")

    frame = load_orders(path).read_all()

    assert frame.loc[2].to_dict() == {
        "imp_uid": "imp_007",
        "status": "CANCELED",
        "amount": "007",
        "a": "NA",
        "b": "null",
        "c": "1e3",
        "d": "",
    }
    assert all(type(value) is str for value in frame.to_numpy().ravel())


# --- files that cannot be used ---------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"

    assert load_error(path) == f"{path} does not exist."


def test_folder_instead_of_file(tmp_path):
    folder = tmp_path / "orders"
    folder.mkdir()

    assert load_error(folder) == f"{folder} is a folder, not a CSV file."


@pytest.mark.parametrize("text", ["", "  \n\t\r\n\n"], ids=["empty", "whitespace-only"])
def test_empty_or_whitespace_only_file(write_csv, text):
    path = write_csv(text)

    assert load_error(path) == f"{path} is empty: expected a header row with imp_uid and status."


def test_header_only_file_has_zero_rows_and_no_error(write_csv):
    orders = load_orders(write_csv(HEADER))

    assert len(orders.frame) == 0
    assert orders.columns == ["imp_uid", "status"]
    assert orders.blank_rows == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "imp_uid,memo\nimp_1,x\n",
            "has no status column (columns found: 'imp_uid', 'memo').",
        ),
        (
            "order_id,status\n1,CANCELED\n",
            "has no imp_uid column (columns found: 'order_id', 'status').",
        ),
        (
            "imp_1,DELIVERY_START\nimp_2,CANCELED\n",
            "has no imp_uid and status column (columns found: 'imp_1', 'DELIVERY_START')."
            " The first line looks like data: add a header row 'imp_uid,status'.",
        ),
    ],
    ids=["no-status", "no-imp_uid", "header-looks-like-data"],
)
def test_missing_required_column_lists_the_columns_found(write_csv, text, expected):
    path = write_csv(text)

    assert load_error(path) == f"{path} {expected}"


def test_two_status_columns_differing_only_in_case(write_csv):
    path = write_csv("imp_uid,status,STATUS\nimp_1,CANCELED,DELIVERY_START\n")

    assert load_error(path) == f"{path} has more than one status column; keep only one."


def test_two_identical_status_columns(write_csv):
    path = write_csv("imp_uid,status,status\nimp_1,CANCELED,DELIVERY_START\n")

    assert load_error(path) == f"{path} has more than one status column; keep only one."


# --- rows ------------------------------------------------------------------------------------


def test_index_is_the_spreadsheet_row_number(write_csv):
    orders = load_orders(write_csv(HEADER + "imp_1,CANCELED\nimp_2,CANCELED\nimp_3,CANCELED\n"))

    assert list(orders.frame.index) == [2, 3, 4]
    assert list(orders.frame["imp_uid"]) == ["imp_1", "imp_2", "imp_3"]


def test_quoted_newline_does_not_shift_later_row_numbers(write_csv):
    path = write_csv('imp_uid,status,memo\nimp_1,CANCELED,"line one\nline two"\nimp_2,CANCELED,x\n')

    frame = load_orders(path).read_all()

    assert list(frame.index) == [2, 3]
    assert frame.loc[2, "memo"] == "line one\nline two"
    assert frame.loc[3, "imp_uid"] == "imp_2"


@pytest.mark.parametrize("blank", ["", ",", " , "], ids=["empty-line", "commas", "spaces"])
def test_blank_row_is_skipped_but_counts_for_numbering(write_csv, blank):
    path = write_csv(HEADER + f"imp_1,CANCELED\n{blank}\nimp_2,CANCELED\n")

    orders = load_orders(path)

    assert list(orders.frame.index) == [2, 4]
    assert orders.frame.loc[4, "imp_uid"] == "imp_2"
    assert orders.blank_rows == 1


def test_short_rows_are_padded_with_empty_text_not_nan(write_csv):
    frame = load_orders(write_csv("imp_uid,status,memo\nimp_1\nimp_2,CANCELED\n")).read_all()

    assert frame.loc[2].to_dict() == {"imp_uid": "imp_1", "status": "", "memo": ""}
    assert frame.loc[3].to_dict() == {"imp_uid": "imp_2", "status": "CANCELED", "memo": ""}
    assert not frame.isna().any().any()


def test_first_row_with_more_fields_than_header_is_an_error(write_csv):
    path = write_csv(HEADER + "imp_1,CANCELED,surprise\nimp_2,CANCELED\n")

    assert load_error(path) == (
        f"{path} is not a readable CSV file: row 2 has more fields than the header."
    )


def test_later_row_with_more_fields_than_header_is_an_error(write_csv):
    path = write_csv(HEADER + "imp_1,CANCELED\nimp_2,CANCELED,surprise\n")

    assert load_error(path) == (
        f"{path} row 3 has 3 fields but the header has 2: quote values that hold the "
        "separator, or give --delimiter."
    )


def test_sha256_is_the_hash_of_the_file_bytes(write_csv):
    path = write_csv("\ufeffimp_uid,status\nimp_1,취소\n")

    orders = load_orders(path)

    assert orders.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# --- reading in chunks -----------------------------------------------------------------------


def test_only_the_imp_uid_and_status_columns_are_kept_in_memory(write_csv):
    orders = load_orders(write_csv("memo,Status,imp_uid\nx,CANCELED,imp_1\n"))

    assert list(orders.frame.columns) == ["imp_uid", "Status"]
    assert orders.columns == ["memo", "Status", "imp_uid"]


def test_chunks_give_every_column_indexed_like_the_frame_across_chunk_borders(write_csv):
    text = "imp_uid,status,memo\n" + "imp_1,CANCELED,a\n , ,\nimp_3,CANCELED,c\n\n,,\nimp_6,,f\n"
    orders = load_orders(write_csv(text))

    chunks = list(orders.chunks(rows=2))

    assert [list(chunk.index) for chunk in chunks] == [[2], [4], [7]]
    assert list(pd.concat(chunks)["memo"]) == ["a", "c", "f"]
    assert list(orders.frame.index) == [2, 4, 7]
    assert orders.blank_rows == 3


def test_a_file_changed_after_loading_is_not_read_as_if_it_were_the_same(write_csv):
    path = write_csv(HEADER + "imp_1,CANCELED\nimp_2,CANCELED\n")
    orders = load_orders(path)
    path.write_text(HEADER + "imp_1,CANCELED\nimp_9,CANCELED\n")

    with pytest.raises(InputError, match="changed since it was loaded"):
        list(orders.chunks())


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        ('imp_9,"CANCELED\n', 'row 9 opens a quote (") that is never closed.'),
        ("imp_9,CANCELED,x\n", "row 9 has 3 fields but the header has 2:"),
    ],
    ids=["unclosed-quote", "too-many-fields"],
)
def test_parse_errors_in_a_later_chunk_name_the_row_in_the_file(
    write_csv, monkeypatch, tail, expected
):
    monkeypatch.setattr("batch.inputs.CHUNK_ROWS", 3)
    path = write_csv(HEADER + "".join(f"imp_{n},CANCELED\n" for n in range(2, 9)) + tail)

    assert load_error(path).startswith(f"{path} {expected}")


def test_an_undecodable_byte_past_the_first_block_reports_its_offset_in_the_file(tmp_path):
    path = tmp_path / "orders.csv"
    body = b"imp_uid,status,memo\n" + b"imp_1,CANCELED,x\n" * 100_000
    path.write_bytes(body + b"imp_2,CANCELED,\xff\n")

    assert load_error(path, "utf-8") == (
        f"{path} is not valid utf-8: undecodable bytes at offset {len(body) + 15}."
    )


def test_a_file_that_turns_out_not_utf8_past_the_first_block_is_read_as_cp949(tmp_path):
    path = tmp_path / "orders.csv"
    body = "imp_uid,status,memo\n" + "imp_1,CANCELED,x\n" * 100_000 + "imp_2,취소,메모\n"
    path.write_bytes(body.encode("cp949"))

    orders = load_orders(path)

    assert orders.encoding == "cp949"
    assert orders.frame.iloc[-1].to_dict() == {"imp_uid": "imp_2", "status": "취소"}
    assert orders.read_all().iloc[-1]["memo"] == "메모"
    assert orders.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
