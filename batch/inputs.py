"""Loading the input CSV: bytes to text to a pandas frame of strings, with the two columns found.

Nothing here judges a row; that is validation's job. This module only answers "can this file
be read as a table with an imp_uid and a status column?", and raises InputError when not.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from batch.errors import InputError

REQUIRED_COLUMNS = ("imp_uid", "status")

# failures.csv adds a `reason` column; a fixed failures.csv fed back as input must not carry
# the old reasons into the new reports, so the loader drops that column.
IGNORED_COLUMNS = ("reason",)

# Tried in order when no encoding is given. UTF-8 first: it rejects almost every byte string
# that is not UTF-8, so a cp949 file (what Korean Excel saves as "CSV") falls through to cp949.
# cp949 is a superset of EUC-KR.
AUTO_ENCODINGS = ("utf-8-sig", "cp949")

# Separators tried on the header line, in this order: comma; tab (Excel's "Unicode text");
# semicolon (Excel in locales with a decimal comma); pipe.
DELIMITERS = (",", "\t", ";", "|")
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

# The first data row is spreadsheet row 2: the header is row 1.
FIRST_DATA_ROW = 2


@dataclass(frozen=True)
class OrdersFile:
    """An input file read into memory.

    `frame` holds every column as text, exactly as read (untrimmed), indexed by the row number
    a spreadsheet shows for that record; fully blank rows are left out and counted in
    `blank_rows`. `imp_uid_column` and `status_column` name the frame's columns that hold them.
    """

    path: Path
    frame: pd.DataFrame
    imp_uid_column: str
    status_column: str
    encoding: str
    sha256: str
    blank_rows: int

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)


def load_orders(
    path: str | Path, encoding: str | None = None, delimiter: str | None = None
) -> OrdersFile:
    """Read `path` as a CSV with a header row holding `imp_uid` and `status` columns.

    `encoding` overrides the automatic choice between UTF-16 (with a BOM), UTF-8 (with or
    without BOM) and cp949; `delimiter` the one found from the header line.
    """
    path = Path(path)
    raw = _read_bytes(path)
    _refuse_non_text(path, raw)
    text, used_encoding = _decode(path, raw, encoding)
    # Files glued together by hand can carry a BOM twice; none belongs to the data.
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise InputError(f"{path} is empty: expected a header row with imp_uid and status.")
    if not text.splitlines()[0].strip():
        raise InputError(
            f"{path} starts with a blank line: the header row (imp_uid,status) must come first."
        )
    if delimiter is not None and (len(delimiter) != 1 or delimiter in '\r\n"'):
        raise InputError(
            f"--delimiter must be one character other than a quote or a line break, "
            f"not {delimiter!r}."
        )
    delimiter = delimiter or _sniff_delimiter(text)
    frame = _parse(path, text, delimiter)
    _refuse_repeated_headers(path, text, delimiter)
    imp_uid_column, status_column = _find_required_columns(path, frame, delimiter)
    frame = frame.drop(columns=[c for c in frame.columns if _normalise(c) in IGNORED_COLUMNS])
    frame.index = pd.RangeIndex(FIRST_DATA_ROW, FIRST_DATA_ROW + len(frame), name="row")
    # A row with no value in any cell is a gap in the sheet, not a record: there is nothing
    # to send or report for it. It still counts for the numbering of the rows after it.
    # Only rows without an imp_uid and a status can be blank: check the rest of those alone.
    required = frame[[imp_uid_column, status_column]]
    blank = (required.apply(lambda column: column.str.strip()) == "").all(axis=1)
    if blank.any():
        rest = frame.loc[blank]
        blank[blank] = (rest.apply(lambda column: column.str.strip()) == "").all(axis=1)
    return OrdersFile(
        path=path,
        frame=frame[~blank],
        imp_uid_column=imp_uid_column,
        status_column=status_column,
        encoding=used_encoding,
        sha256=hashlib.sha256(raw).hexdigest(),
        blank_rows=int(blank.sum()),
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path} does not exist.") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not a CSV file.") from None
    except PermissionError:
        raise InputError(f"{path} cannot be read: permission denied.") from None
    except OSError as error:
        raise InputError(f"{path} cannot be read: {error.strerror or error}.") from None


def _refuse_non_text(path: Path, raw: bytes) -> None:
    """Recognise what people rename to .csv by mistake, and say what to do instead."""
    if raw.startswith(ZIP_MAGIC):
        raise InputError(
            f"{path} is an Excel workbook (.xlsx) or another ZIP file, not CSV: open it in "
            'Excel and save it as "CSV UTF-8 (Comma delimited)".'
        )
    if raw.startswith(OLE_MAGIC):
        raise InputError(
            f"{path} is an Excel 97-2003 workbook (.xls), not CSV: open it in Excel and save "
            'it as "CSV UTF-8 (Comma delimited)".'
        )
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return  # UTF-16 text is full of NUL bytes
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise InputError(
            f"{path} holds a NUL byte on line {line}: it is a binary file, not CSV text."
        )


def _decode(path: Path, raw: bytes, encoding: str | None) -> tuple[str, str]:
    if encoding is not None:
        try:
            text = raw.decode(encoding)
        except LookupError:
            raise InputError(f"{encoding!r} is not an encoding Python knows.") from None
        except UnicodeDecodeError as error:
            raise InputError(
                f"{path} is not valid {encoding}: undecodable bytes at offset {error.start}."
            ) from None
        return text.removeprefix("\ufeff"), encoding
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode text": UTF-16 with a BOM, tab-separated.
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as error:
            raise InputError(
                f"{path} starts like UTF-16 text but has undecodable bytes at offset {error.start}."
            ) from None
        first_line = text.lstrip("\ufeff").split("\n", 1)[0]
        if first_line.strip() and not re.search(r"[A-Za-z]", first_line):
            # Random bytes after FF FE decode to something, but not to a header.
            raise InputError(
                f"{path} starts like UTF-16 text but its first line is not readable text; "
                "it is not a CSV file."
            )
        return text, "utf-16"
    for candidate in AUTO_ENCODINGS:
        try:
            text = raw.decode(candidate)
        except UnicodeDecodeError:
            continue
        if candidate == "utf-8-sig" and not raw.startswith(codecs.BOM_UTF8):
            candidate = "utf-8"  # name what the file is, for the summary
        return text, candidate
    raise InputError(
        f"{path} is neither UTF-8 nor cp949/EUC-KR text; give its encoding with --encoding."
    )


def _sniff_delimiter(text: str) -> str:
    """The separator that makes the header line hold imp_uid and status; else the likeliest."""
    header = text.splitlines()[0]
    for candidate in DELIMITERS:
        names = {_normalise(name.strip('"')) for name in header.split(candidate)}
        if set(REQUIRED_COLUMNS) <= names:
            return candidate
    counts = {candidate: header.count(candidate) for candidate in DELIMITERS}
    best = max(counts, key=lambda candidate: counts[candidate])
    return best if counts[best] else ","


def _parse(path: Path, text: str, delimiter: str) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            # With index_col=False pandas only *warns* when the first record has more fields
            # than the header, and drops the extra ones: that would lose data silently.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                io.StringIO(text),
                sep=delimiter,
                dtype=str,
                keep_default_na=False,
                # Without this pandas would take a first column as the index when the
                # records have one field more than the header.
                index_col=False,
                # Blank lines are kept so that row numbers match the spreadsheet;
                # load_orders drops them afterwards.
                skip_blank_lines=False,
            )
    except pd.errors.ParserWarning:
        raise InputError(
            f"{path} is not a readable CSV file: "
            f"row {FIRST_DATA_ROW} has more fields than the header."
        ) from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path} has no header row: expected imp_uid and status.") from None
    except (pd.errors.ParserError, csv.Error) as error:
        unclosed = re.search(r"EOF inside string starting at row (\d+)", str(error))
        if unclosed:
            # pandas counts records from 0 after the header: spreadsheet row = n + 1.
            row = int(unclosed.group(1)) + 1
            raise InputError(f'{path} row {row} opens a quote (") that is never closed.') from None
        ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
        if ragged:
            expected, row, saw = ragged.groups()
            raise InputError(
                f"{path} row {row} has {saw} fields but the header has {expected}: quote "
                "values that hold the separator, or give --delimiter."
            ) from None
        raise InputError(f"{path} is not a readable CSV file: {_first_line(error)}.") from None
    # Rows with fewer fields than the header leave NaN in the missing cells.
    return frame.fillna("")


def _refuse_repeated_headers(path: Path, text: str, delimiter: str) -> None:
    # pandas renames a repeated header "status" to "status.1", so the second column would
    # be silently ignored; read the header line as it is written to catch that.
    try:
        header = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
    except csv.Error:
        return  # nothing like a header to repeat; the column check says what is missing
    names = [_normalise(name) for name in header]
    seen = set()
    for name in names:
        if name in seen and name:
            what = f"{name} column" if name in REQUIRED_COLUMNS else f"column named {name!r}"
            raise InputError(f"{path} has more than one {what}; keep only one.")
        seen.add(name)


def _find_required_columns(path: Path, frame: pd.DataFrame, delimiter: str) -> tuple[str, str]:
    found: dict[str, list[str]] = {name: [] for name in REQUIRED_COLUMNS}
    for column in frame.columns:
        key = _normalise(column)
        if key in found:
            found[key].append(column)
    missing = [name for name, columns in found.items() if not columns]
    if missing:
        names = " and ".join(missing)
        hint = ""
        if any(re.fullmatch(r"imp_[0-9]+", str(c).strip()) for c in frame.columns):
            hint = " The first line looks like data: add a header row 'imp_uid,status'."
        elif len(frame.columns) == 1:
            hint = (
                f" The header has one column when split at {delimiter!r}: "
                "if the file uses another separator, give --delimiter."
            )
        raise InputError(
            f"{path} has no {names} column (columns found: {_list(frame.columns)}).{hint}"
        )
    repeated = [name for name, columns in found.items() if len(columns) > 1]
    if repeated:
        raise InputError(f"{path} has more than one {repeated[0]} column; keep only one.")
    return found["imp_uid"][0], found["status"][0]


def _normalise(column: object) -> str:
    # Excel leaves BOMs and stray spaces in headers, and people type Imp_UID.
    return str(column).replace("\ufeff", "").strip().lower()


def _list(columns: pd.Index) -> str:
    shown = [str(c) for c in columns[:10]]
    more = f", and {len(columns) - 10} more" if len(columns) > 10 else ""
    return ", ".join(repr(c) for c in shown) + more if shown else "none"


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else "parse error"
