"""A corpus of bad and messy input files, each run through `payco-batch run` and `validate`.

Every file in tests/corpus/ has one expected answer:

- Refused: exit 2, one sentence on stderr (`payco-batch: error: ...`) holding a distinctive
  substring, no traceback, no request made, no reports written; `validate` says the same.
- Runs: the run goes through against the fake iamport; the rows listed are `invalid` with the
  reason given and are never requested; every input record is in results.csv exactly once, in
  order, under its spreadsheet row number; exactly the rows listed in `sent` were requested,
  once each, with the status code given; `validate` exits 0 or 1 and lists the invalid rows.

Files too big to commit (the 10 MB memo) and ones that depend on the file system (a folder,
an unreadable file) are made at test time.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from batch.cli import cli

CORPUS = Path(__file__).resolve().parent / "corpus"

# What the tool trims around an imp_uid: whitespace, full-width spaces and zero-width marks.
_EDGES = re.compile(r"^[\s\u200b\u200c\u200d\u2060\ufeff]+|[\s\u200b\u200c\u200d\u2060\ufeff]+$")
IMP_UID_REASON = "imp_uid must look like imp_123456789012"
STATUS_REASON = "status must be one of DELIVERY_START, PURCHASE_DECISION, CANCELED"


@dataclass(frozen=True)
class Refused:
    """Exit 2 with one sentence holding `message` (and none of `absent`); nothing sent.

    `pattern`, when given, is a regular expression the sentence must match as well.
    """

    message: str
    absent: tuple[str, ...] = ()
    pattern: str | None = None


@dataclass(frozen=True)
class Runs:
    """The run goes through: `rows` in results.csv, `invalid` rows with a reason, `sent` ids."""

    rows: tuple[int, ...]
    sent: dict[str, str]
    invalid: dict[int, str] = field(default_factory=dict)
    # results.csv cells to check: {row: {column: value}}
    values: dict[int, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    file: str
    expect: Refused | Runs
    args: tuple[str, ...] = ()


CASES = [
    Case("empty.csv", Refused("is empty: expected a header row with imp_uid and status")),
    Case("header_only.csv", Runs(rows=(), sent={})),
    Case(
        "no_header.csv",
        Refused("The first line looks like data: add a header row 'imp_uid,status'"),
    ),
    Case(
        "missing_status_column.csv",
        Refused("has no status column (columns found: 'imp_uid', 'state')"),
    ),
    # A BOM, spaces and capitals in the header, as Excel and people leave them.
    Case(
        "excel_headers.csv",
        Runs(
            rows=(2, 3),
            sent={"imp_1": "DELIVERY_START", "imp_2": "CANCELED"},
            values={3: {"Memo": "second"}},
        ),
    ),
    Case("duplicate_status_header.csv", Refused("has more than one status column; keep only one")),
    Case(
        "duplicate_memo_header.csv",
        Refused("has more than one column named 'memo'; keep only one"),
    ),
    Case(
        "semicolon.csv",
        Runs(
            rows=(2, 3, 4),
            sent={"imp_1": "DELIVERY_START", "imp_2": "CANCELED"},
            invalid={4: f"{IMP_UID_REASON} (got 'bad')"},
            values={2: {"memo": "Seoul, Gangnam"}, 3: {"memo": "1,5"}},
        ),
    ),
    Case(
        "tab.csv",
        Runs(
            rows=(2, 3),
            sent={"imp_1": "DELIVERY_START", "imp_2": "PURCHASE_DECISION"},
            values={2: {"memo": "Seoul, Gangnam"}, 3: {"memo": "x;y"}},
        ),
    ),
    Case(
        "pipe.csv",
        Runs(
            rows=(2, 3, 4),
            sent={"imp_1": "DELIVERY_START", "imp_2": "CANCELED"},
            invalid={4: f"{IMP_UID_REASON} (got 'imp_x')"},
            values={2: {"memo": "a,b;c"}, 3: {"memo": ""}},
        ),
        args=("--delimiter", "|"),
    ),
    Case(
        "colon_separated.csv",
        Refused("if the file uses another separator, give --delimiter"),
    ),
    # Row 3 is blank: ignored, but row numbers after it still match the spreadsheet.
    Case(
        "crlf.csv",
        Runs(
            rows=(2, 4, 5),
            sent={"imp_1": "DELIVERY_START", "imp_2": "CANCELED"},
            invalid={4: f"{IMP_UID_REASON} (got 'bad')"},
        ),
    ),
    Case(
        "cr_only.csv",
        Runs(
            rows=(2, 4, 5),
            sent={"imp_1": "DELIVERY_START", "imp_2": "CANCELED"},
            invalid={4: f"{IMP_UID_REASON} (got 'bad')"},
        ),
    ),
    Case(
        "quoted_commas_newlines.csv",
        Runs(
            rows=(2, 3, 4, 5, 6, 7),
            sent={
                "imp_1": "DELIVERY_START",
                "imp_2": "CANCELED",
                "imp_3": "PURCHASE_DECISION",
                "imp_5": "DELIVERY_START",
            },
            invalid={5: f"{IMP_UID_REASON} (got 'bad_4')", 7: f"{STATUS_REASON}"},
            values={
                2: {"memo": "Seoul, Gangnam"},
                3: {"memo": "line one\nline two\nline three"},
                4: {"memo": 'He said "hi", then left'},
                5: {"memo": "after the multi-line memo"},
            },
        ),
    ),
    # Row 4 has an unquoted comma; the multi-line record before it is still one row.
    Case(
        "too_many_fields.csv",
        Refused("row 4 has 4 fields but the header has 3: quote values that hold the separator"),
    ),
    Case("too_many_fields_first_row.csv", Refused("row 2 has more fields than the header")),
    Case(
        "too_few_fields.csv",
        Runs(
            rows=(2, 3, 4),
            sent={"imp_1": "DELIVERY_START", "imp_3": "CANCELED"},
            invalid={3: f"{STATUS_REASON} (or 배송시작, 구매확정, 취소) (got nothing)"},
            values={4: {"memo": ""}},
        ),
    ),
    Case("nul_byte.csv", Refused("holds a NUL byte on line 3: it is a binary file, not CSV text")),
    Case("png_renamed.csv", Refused("it is a binary file, not CSV text")),
    Case("random_binary.csv", Refused("it is a binary file, not CSV text")),
    Case(
        "workbook_xlsx.csv",
        Refused("is an Excel workbook (.xlsx) or another ZIP file, not CSV: open it in Excel and"),
    ),
    Case("workbook_xls.csv", Refused("is an Excel 97-2003 workbook (.xls), not CSV")),
    Case(
        "cp949_korean.csv",
        Runs(
            rows=(2, 3, 4, 5),
            sent={"imp_1": "DELIVERY_START", "imp_2": "PURCHASE_DECISION", "imp_3": "CANCELED"},
            invalid={5: f"{STATUS_REASON} (or 배송시작, 구매확정, 취소) (got '배송 시작')"},
            values={2: {"고객명": "홍길동", "status": "배송시작"}, 4: {"고객명": "이영희"}},
        ),
    ),
    # Excel's "Unicode text": UTF-16 LE with a BOM, tab-separated, CRLF.
    Case(
        "utf16le_unicode_text.csv",
        Runs(
            rows=(2, 3, 4),
            sent={"imp_1": "DELIVERY_START", "imp_2": "CANCELED"},
            invalid={4: f"{IMP_UID_REASON} (got 'imp_x')"},
            values={2: {"메모": "첫 번째, 쉼표"}, 3: {"status": "취소"}},
        ),
    ),
    Case(
        "excel_number_imp_uid.csv",
        Runs(
            rows=(2, 3, 4),
            sent={"imp_5": "CANCELED"},
            invalid={
                2: "(got '4.48E+11'): Excel turned the id into a number; format the column as Text",
                3: f"{IMP_UID_REASON} (got '448280090638')",
            },
        ),
    ),
    # Spaces, zero-width spaces, BOMs, full-width spaces, NBSP and tabs around values.
    Case(
        "spaces_around_values.csv",
        Runs(
            rows=(2, 3, 4, 5),
            sent={
                "imp_1": "DELIVERY_START",
                "imp_2": "CANCELED",
                "imp_3": "PURCHASE_DECISION",
                "imp_4": "CANCELED",
            },
            # results.csv carries the input as read, untrimmed
            values={2: {"imp_uid": " imp_1 "}, 4: {"imp_uid": "\u3000imp_3\u3000"}},
        ),
    ),
    Case(
        "fullwidth_digits.csv",
        Runs(
            rows=(2, 3, 4),
            sent={"imp_7": "CANCELED"},
            invalid={
                2: f"{IMP_UID_REASON} (got 'imp_１２３')",
                3: f"{IMP_UID_REASON} (got 'imp_\u0661\u0662')",
            },
        ),
    ),
    # imp_uids that would leave /payco/orders/status/{imp_uid} if put in the URL.
    Case(
        "path_escape.csv",
        Runs(
            rows=(2, 3, 4, 5, 6, 7),
            sent={"imp_2": "CANCELED"},
            invalid={
                2: f"{IMP_UID_REASON} (got 'imp_1/../../users/getToken')",
                3: f"{IMP_UID_REASON} (got 'imp_1%2F..')",
                4: f"{IMP_UID_REASON} (got 'imp_1?x=1')",
                5: f"{IMP_UID_REASON} (got 'imp_1#a')",
                6: f"{IMP_UID_REASON} (got 'imp_1 /x')",
            },
        ),
    ),
    # Neither UTF-8, nor cp949, nor UTF-16 (no BOM), and no NUL byte.
    Case(
        "not_text_encoding.csv",
        Refused("is neither UTF-8 nor cp949/EUC-KR text; give its encoding with --encoding"),
    ),
    Case(
        "utf16_bom_then_garbage.csv",
        Refused(
            "utf16_bom_then_garbage.csv",
            pattern=r"UTF-16|encoding|not (CSV )?text",
            absent=("--delimiter", "columns found"),
        ),
    ),
    Case(
        "unclosed_quote.csv",
        Refused("row 3", absent=("C error", "Error tokenizing data")),
    ),
    Case(
        "cr_only_multiline_cell.csv",
        Runs(
            rows=(2, 3),
            sent={"imp_1": "DELIVERY_START"},
            invalid={3: f"{IMP_UID_REASON} (got 'bad')"},
            values={2: {"memo": "two\rlines"}},
        ),
    ),
    Case(
        "blank_line_then_separator.csv",
        Refused("imp_uid"),
    ),
    Case(
        "two_boms_only.csv",
        Refused("is empty: expected a header row with imp_uid and status"),
    ),
    Case(
        "blank_line_before_header.csv",
        Refused("starts with a blank line: the header row (imp_uid,status) must come first"),
    ),
    Case(
        "clean.csv",
        Runs(
            rows=(2, 3, 4),
            sent={"imp_1": "DELIVERY_START", "imp_2": "PURCHASE_DECISION", "imp_3": "CANCELED"},
        ),
    ),
]


def _params() -> list:
    return [
        pytest.param(
            case,
            id=case.file,
        )
        for case in CASES
    ]


# --- fixtures and helpers ----------------------------------------------------------------------


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def run(path: Path, out: Path, *args: str):
    return invoke("run", str(path), "--out", str(out), "--yes", "--rate", "0", *args)


def results_of(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")


def one_sentence(stderr: str) -> str:
    """The single `payco-batch: error: ...` line of a refused run."""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("payco-batch: error: "), stderr
    return lines[0]


def line_of(output: str, row: int) -> str:
    """The line `row N: reason` that lists an invalid row."""
    (line,) = [line for line in output.splitlines() if line.startswith(f"row {row}: ")]
    return line


def trimmed(value: str) -> str:
    return _EDGES.sub("", value)


def imp_uid_column(results: pd.DataFrame) -> str:
    (column,) = [c for c in results.columns if c.replace("\ufeff", "").strip().lower() == "imp_uid"]
    return column


def check_refused(path: Path, out: Path, api, expect: Refused, args=()) -> None:
    result = run(path, out, *args)
    assert result.exit_code == 2, result.output
    sentence = one_sentence(result.stderr)
    assert expect.message in sentence
    assert expect.pattern is None or re.search(expect.pattern, sentence)
    for text in expect.absent:
        assert text not in sentence
    assert result.stdout == ""
    assert api.token_requests == [] and api.status_requests == []
    assert not out.exists() or not any(out.iterdir())

    checked = invoke("validate", str(path), *args)
    assert checked.exit_code == 2, checked.output
    assert one_sentence(checked.stderr) == sentence
    assert checked.stdout == ""


def check_runs(path: Path, out: Path, api, expect: Runs, args=()) -> pd.DataFrame:
    result = run(path, out, *args)
    assert "Traceback" not in result.output
    assert result.exit_code == (1 if expect.invalid else 0), result.output

    results = results_of(out)
    rows = [int(r) for r in results["row"]]
    assert rows == list(expect.rows)  # every record once, in order, at its spreadsheet row
    by_row = results.set_index(pd.Index(rows))
    for row in expect.rows:
        outcome, reason = by_row.loc[row, "outcome"], by_row.loc[row, "reason"]
        if row in expect.invalid:
            assert outcome == "invalid", (row, outcome, reason)
            assert expect.invalid[row] in reason
            assert expect.invalid[row] in line_of(result.stderr, row)
        else:
            assert outcome == "succeeded", (row, outcome, reason)
    for row, cells in expect.values.items():
        for column, value in cells.items():
            assert by_row.loc[row, column] == value, (row, column)

    # Exactly the expected rows were requested, once each, on their own path, nothing else.
    sent = api.sent_imp_uids()
    assert sorted(sent) == sorted(expect.sent)
    statuses = {r.url.path.rsplit("/", 1)[1]: json.loads(r.content) for r in api.status_requests}
    assert statuses == {uid: {"status": status} for uid, status in expect.sent.items()}
    assert sorted(r.url.raw_path for r in api.status_requests) == sorted(
        f"/payco/orders/status/{uid}".encode() for uid in expect.sent
    )
    assert all(r.url.path == "/users/getToken" for r in api.token_requests)
    # ... and they are the succeeded rows of results.csv; no invalid row was requested.
    column = imp_uid_column(results)
    succeeded = results[results["outcome"] == "succeeded"][column].map(trimmed)
    assert sorted(sent) == sorted(succeeded)
    invalid = results[results["outcome"] == "invalid"][column]
    assert not set(sent) & (set(invalid) | set(invalid.map(trimmed)))

    checked = invoke("validate", str(path), *args)
    assert "Traceback" not in checked.output
    assert checked.exit_code == (1 if expect.invalid else 0), checked.output
    assert checked.stderr == ""
    listed = [int(n) for n in re.findall(r"^row (\d+): ", checked.stdout, re.MULTILINE)]
    assert listed == sorted(expect.invalid)
    for row, reason in expect.invalid.items():
        assert reason in line_of(checked.stdout, row)
    assert f": {len(expect.rows)} rows: {len(expect.sent)} to send" in checked.stdout
    return results


# --- the corpus --------------------------------------------------------------------------------


def test_every_corpus_file_has_a_case():
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(case.file for case in CASES)


@pytest.mark.parametrize("case", _params())
def test_corpus_file(env, api, case: Case):
    path = CORPUS / case.file
    out = env / "out"
    if isinstance(case.expect, Refused):
        check_refused(path, out, api, case.expect, case.args)
    else:
        check_runs(path, out, api, case.expect, case.args)


# --- made at test time -------------------------------------------------------------------------


def test_a_folder_given_as_input_is_refused(env, api):
    folder = env / "orders.csv"
    folder.mkdir()
    check_refused(folder, env / "out", api, Refused("orders.csv is a folder, not a CSV file."))


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read a chmod 000 file"
)
def test_an_unreadable_file_is_refused(env, api):
    path = env / "orders.csv"
    path.write_text("imp_uid,status\nimp_1,CANCELED\n")
    path.chmod(0)
    try:
        check_refused(path, env / "out", api, Refused("cannot be read: permission denied."))
    finally:
        path.chmod(0o600)


def test_a_file_the_os_refuses_to_read_is_refused(env, api, monkeypatch):
    """The same as above for root too, whom chmod 000 does not stop: the OS says EACCES."""
    path = env / "orders.csv"
    path.write_text("imp_uid,status\nimp_1,CANCELED\n")
    read_bytes = Path.read_bytes

    def refuse(self: Path) -> bytes:
        if self.name == path.name:
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    check_refused(path, env / "out", api, Refused("cannot be read: permission denied."))


def test_a_10_mb_memo_field_still_runs(env, api):
    memo = '메모, "quoted"\n' + "x" * (10 * 1024 * 1024)
    path = env / "big.csv"
    escaped = memo.replace('"', '""')
    path.write_text(
        f'imp_uid,status,memo\nimp_1,CANCELED,"{escaped}"\nimp_2,DELIVERY_START,short\nbad,CANCELED,\n',
        encoding="utf-8",
    )
    expect = Runs(
        rows=(2, 3, 4),
        sent={"imp_1": "CANCELED", "imp_2": "DELIVERY_START"},
        invalid={4: f"{IMP_UID_REASON} (got 'bad')"},
        values={3: {"memo": "short"}},
    )
    results = check_runs(path, env / "out", api, expect)
    assert results.loc[0, "memo"] == memo


# --- payco-batch validate: exit 0, 1, 2 --------------------------------------------------------


def test_validate_a_clean_file_exits_0():
    result = invoke("validate", str(CORPUS / "clean.csv"))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines() == [
        f"{CORPUS / 'clean.csv'}: 3 rows: 3 to send "
        "(1 DELIVERY_START, 1 PURCHASE_DECISION, 1 CANCELED), 0 invalid."
    ]
    assert result.stderr == ""


def test_validate_a_file_with_invalid_rows_exits_1_listing_their_rows():
    result = invoke("validate", str(CORPUS / "path_escape.csv"))
    assert result.exit_code == 1, result.output
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [f"row {n}" for n in range(2, 7)]
    assert lines[-1].endswith(": 6 rows: 1 to send (1 CANCELED), 5 invalid.")


@pytest.mark.parametrize("name", ["random_binary.csv", "workbook_xlsx.csv", "empty.csv"])
def test_validate_an_unreadable_file_exits_2(name):
    result = invoke("validate", str(CORPUS / name))
    assert result.exit_code == 2
    one_sentence(result.stderr)
    assert result.stdout == ""


@pytest.mark.parametrize("delimiter", ["\n", "\r"], ids=["LF", "CR"])
def test_a_line_break_as_delimiter_is_refused(env, api, delimiter):
    check_refused(
        CORPUS / "pipe.csv", env / "out", api, Refused("--delimiter"), ("--delimiter", delimiter)
    )
