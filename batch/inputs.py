"""Loading the input CSV: bytes to text to a pandas frame of strings, with the two columns found.

Nothing here judges a row; that is validation's job. This module only answers "can this file
be read as a table with an imp_uid and a status column?", and raises InputError when not.

Only the imp_uid and status columns stay in memory; the reports read the file again, a chunk
of rows at a time, and check that it is still the same file (OrdersFile.chunks).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from batch.errors import InputChangedError, InputError

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

# Lines parsed at a time: a chunk of all columns is held only while it is read (the frame
# keeps two of them), so that memory does not grow with the width of the file.
CHUNK_ROWS = 50_000
# The file is checked, hashed and fed to the parser a block at a time.
READ_BLOCK = 1 << 20
# Decoded to check the header line; more when the file starts with that many blank lines.
HEAD_BYTES = 1 << 16


@dataclass(frozen=True)
class OrdersFile:
    """An input file, checked and read.

    `frame` holds the imp_uid and status columns as text, exactly as read (untrimmed), indexed
    by the row number a spreadsheet shows for that record; fully blank rows are left out and
    counted in `blank_rows`. `imp_uid_column` and `status_column` name those columns.

    The file's other columns are not kept: a million rows of six text columns take 250 MB as
    Python strings (measured), more than a whole run may use. `chunks()` reads every column
    again, a chunk of rows at a time, for the reports; `read_all()` at once, for small files.
    """

    path: Path
    frame: pd.DataFrame
    all_columns: tuple[str, ...]
    imp_uid_column: str
    status_column: str
    encoding: str
    delimiter: str
    sha256: str
    blank_rows: int

    @property
    def columns(self) -> list[str]:
        """Every column of the file, in its order (without a `reason` column)."""
        return list(self.all_columns)

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
        """Every column of the records, `rows` lines of the file at a time, indexed like `frame`.

        Reads the file again: raises InputError when it is no longer the file that was loaded.
        """
        with _open(self.path) as file:
            source = _Utf8Stream(file, self.encoding)
            for chunk in _read_chunks(self.path, source, self.delimiter, rows):
                chunk = chunk.drop(columns=_ignored(chunk.columns))
                if list(chunk.columns) != self.columns:
                    raise InputChangedError(self.path)
                yield chunk[~_blank(chunk, self.imp_uid_column)]
            if source.finish() != self.sha256:
                raise InputChangedError(self.path)

    def read_all(self) -> pd.DataFrame:
        """Every column of every record, in one frame (read again from the file)."""
        return _concat(list(self.chunks()), self.columns)


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
    used_encoding = _choose_encoding(path, raw, encoding)
    # The checks below need the first line only: decoding all of a 90 MB file at once would
    # hold it as text (180 MB when it has Korean in it).
    head = _head(raw, used_encoding)
    if used_encoding == "utf-16":
        first_line = head.split("\n", 1)[0]
        if first_line.strip() and not re.search(r"[A-Za-z]", first_line):
            # Random bytes after FF FE decode to something, but not to a header.
            raise InputError(
                f"{path} starts like UTF-16 text but its first line is not readable text; "
                "it is not a CSV file."
            )
    del raw  # the records are read from the file as a stream, not kept twice in memory
    if not head.strip():
        raise InputError(f"{path} is empty: expected a header row with imp_uid and status.")
    if not head.splitlines()[0].strip():
        raise InputError(
            f"{path} starts with a blank line: the header row (imp_uid,status) must come first."
        )
    if delimiter is not None and (len(delimiter) != 1 or delimiter in '\r\n"'):
        raise InputError(
            f"--delimiter must be one character other than a quote or a line break, "
            f"not {delimiter!r}."
        )
    delimiter = delimiter or _sniff_delimiter(head.splitlines()[0])

    # Parse errors come first, then the header's problems, as a reader would find them.
    columns: list[str] | None = None
    required: tuple[str, str] | None = None
    problem: InputError | None = None
    kept = []
    blank_rows = 0
    with _open(path) as file:
        source = _Utf8Stream(file, used_encoding)
        for chunk in _read_chunks(path, source, delimiter, CHUNK_ROWS):
            if columns is None:
                try:
                    required = _find_required_columns(path, chunk.columns, delimiter)
                except InputError as error:
                    problem = error
                columns = [c for c in chunk.columns if c not in _ignored(chunk.columns)]
            if required is None:
                continue
            # A row with no value in any cell is a gap in the sheet, not a record: there is
            # nothing to send or report for it. It still counts for the numbering of the
            # rows after it.
            blank = _blank(chunk, required[0])
            blank_rows += int(blank.sum())
            kept.append(chunk.loc[~blank, list(required)])
        sha256 = source.finish()
    _refuse_repeated_headers(path, head, delimiter)
    if problem is not None or required is None or columns is None:
        raise problem or InputError(f"{path} has no header row: expected imp_uid and status.")
    return OrdersFile(
        path=path,
        frame=_concat(kept, list(required)),
        all_columns=tuple(columns),
        imp_uid_column=required[0],
        status_column=required[1],
        encoding=used_encoding,
        delimiter=delimiter,
        sha256=sha256,
        blank_rows=blank_rows,
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


def _choose_encoding(path: Path, raw: bytes, encoding: str | None) -> str:
    """The encoding to read `raw` with: `encoding` if given, else the one it decodes in."""
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise InputError(f"{encoding!r} is not an encoding Python knows.") from None
        error = _decode_error(raw, encoding)
        if error is not None:
            raise InputError(
                f"{path} is not valid {encoding}: undecodable bytes at offset {error.start}."
            )
        return encoding
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode text": UTF-16 with a BOM, tab-separated.
        error = _decode_error(raw, "utf-16")
        if error is not None:
            raise InputError(
                f"{path} starts like UTF-16 text but has undecodable bytes at offset {error.start}."
            )
        return "utf-16"
    for candidate in AUTO_ENCODINGS:
        if _decode_error(raw, candidate) is None:
            if candidate == "utf-8-sig" and not raw.startswith(codecs.BOM_UTF8):
                return "utf-8"  # name what the file is, for the summary
            return candidate
    raise InputError(
        f"{path} is neither UTF-8 nor cp949/EUC-KR text; give its encoding with --encoding."
    )


def _decode_error(raw: bytes, encoding: str) -> UnicodeDecodeError | None:
    """The first error decoding `raw`, or None; a block at a time, never all of it as text."""
    checked_as, skip = encoding, 0
    if codecs.lookup(encoding).name == "utf-8-sig":
        # CPython's incremental utf-8-sig decoder lets bytes that stop inside a BOM pass
        # (b"\xef" decodes to ""); past its BOM that codec is plain UTF-8, so check that.
        checked_as = "utf-8"
        skip = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    decoder = codecs.getincrementaldecoder(checked_as)()
    view = memoryview(raw)[skip:]
    try:
        for start in range(0, len(view), READ_BLOCK):
            decoder.decode(view[start : start + READ_BLOCK])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        # Decoded again in one go, on this rare path only, for the offset within the file.
        try:
            raw.decode(encoding)
        except UnicodeDecodeError as error:
            return error
        raise  # pragma: no cover (a codec whose incremental and one-go decoders disagree)
    return None


def _head(raw: bytes, encoding: str) -> str:
    """The text the file starts with, BOMs dropped: its first line and something not blank.

    Files glued together by hand can carry a BOM twice; none belongs to the data.
    """
    size = HEAD_BYTES
    while True:
        decoder = codecs.getincrementaldecoder(encoding)()
        whole = size >= len(raw)
        text = decoder.decode(raw[:size], final=whole).lstrip("\ufeff")
        if whole or (text.strip() and len(text.splitlines()) > 1):
            return text
        size *= 4


class _Utf8Stream(io.RawIOBase):
    """A file's bytes as UTF-8 without leading BOMs, for pandas; hashes the file's own bytes.

    pandas' C parser reads UTF-8 bytes; handed text, it encodes it back to UTF-8 itself, and
    that took 1.1 of the 3.7 s loading a million rows took (measured). So UTF-8 files pass
    through as they are, and files in other encodings are decoded and encoded here.
    """

    def __init__(self, file: BinaryIO, encoding: str) -> None:
        super().__init__()
        self._file = file
        self._digest = hashlib.sha256()
        utf8 = codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")
        self._decoder = None if utf8 else codecs.getincrementaldecoder(encoding)()
        self._pending = memoryview(b"")
        self._at_start = True
        self._at_end = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._at_end:
            self._pending = memoryview(self._next_block())
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def finish(self) -> str:
        """Read what is left and return the SHA-256 of every byte of the file."""
        while self.read(READ_BLOCK):
            pass
        return self._digest.hexdigest()

    def _next_block(self) -> bytes:
        block = self._file.read(READ_BLOCK)
        self._digest.update(block)
        self._at_end = not block
        if self._decoder is None:
            data = block
            while self._at_start and data.startswith(codecs.BOM_UTF8):
                data = data[len(codecs.BOM_UTF8) :]
        else:
            text = self._decoder.decode(block, final=self._at_end)
            data = (text.lstrip("\ufeff") if self._at_start else text).encode("utf-8")
        self._at_start = self._at_start and not data
        return data


@contextmanager
def _open(path: Path) -> Iterator[BinaryIO]:
    try:
        file = path.open("rb")
    except OSError as error:
        raise InputError(f"{path} cannot be read: {error.strerror or error}.") from None
    with file:
        yield file


def _read_chunks(
    path: Path, source: _Utf8Stream, delimiter: str, rows: int
) -> Iterator[pd.DataFrame]:
    """The records of `source`, every column as text, `rows` lines at a time.

    Indexed from 0 across chunks, blank lines included (as records of empty cells), so that
    row numbers match the spreadsheet.
    """
    with _parse_errors(path):
        reader = pd.read_csv(
            source,
            sep=delimiter,
            dtype=str,
            # Every cell as text, as written: nothing is taken for a missing value, and the
            # cells that rows with fewer fields than the header lack are empty text.
            na_filter=False,
            # Without this pandas would take a first column as the index when the records
            # have one field more than the header.
            index_col=False,
            skip_blank_lines=False,
            encoding="utf-8",
            chunksize=rows,
        )
    with reader:
        while True:
            with _parse_errors(path):
                chunk = next(reader, None)
            if chunk is None:
                return
            chunk.index += FIRST_DATA_ROW
            chunk.index.name = "row"
            yield chunk


@contextmanager
def _parse_errors(path: Path) -> Iterator[None]:
    """Turn pandas' parse errors into InputErrors that name the row."""
    try:
        with warnings.catch_warnings():
            # With index_col=False pandas only *warns* when the first record has more fields
            # than the header, and drops the extra ones: that would lose data silently.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            yield
    except pd.errors.ParserWarning:
        raise InputError(
            f"{path} is not a readable CSV file: "
            f"row {FIRST_DATA_ROW} has more fields than the header."
        ) from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path} has no header row: expected imp_uid and status.") from None
    except UnicodeDecodeError:
        raise InputChangedError(path) from None  # it decoded when it was checked
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


def _blank(chunk: pd.DataFrame, imp_uid_column: str) -> pd.Series:
    """Rows with no value in any cell (spaces count as none)."""
    # Only a row without an imp_uid can be blank: the other cells of those rows alone are
    # looked at. A plain loop over the ids: pandas' str.strip took 5 times as long (0.18 s
    # for a million rows, measured), for the handling of missing values that text has none of.
    ids = chunk[imp_uid_column].to_numpy(dtype=object)
    blank = pd.Series(
        np.fromiter((not value.strip() for value in ids), bool, len(ids)), index=chunk.index
    )
    if blank.any():
        rest = chunk.loc[blank]
        blank[blank] = (rest.apply(lambda column: column.str.strip()) == "").all(axis=1)
    return blank


def _concat(chunks: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not chunks:
        index = pd.RangeIndex(FIRST_DATA_ROW, FIRST_DATA_ROW, name="row")
        return pd.DataFrame({c: pd.Series(dtype=str) for c in columns}, index=index)
    return pd.concat(chunks) if len(chunks) > 1 else chunks[0]


def _ignored(columns: pd.Index) -> list[str]:
    return [c for c in columns if _normalise(c) in IGNORED_COLUMNS]


def _sniff_delimiter(header: str) -> str:
    """The separator that makes the header line hold imp_uid and status; else the likeliest."""
    for candidate in DELIMITERS:
        names = {_normalise(name.strip('"')) for name in header.split(candidate)}
        if set(REQUIRED_COLUMNS) <= names:
            return candidate
    counts = {candidate: header.count(candidate) for candidate in DELIMITERS}
    best = max(counts, key=lambda candidate: counts[candidate])
    return best if counts[best] else ","


def _refuse_repeated_headers(path: Path, head: str, delimiter: str) -> None:
    # pandas renames a repeated header "status" to "status.1", so the second column would
    # be silently ignored; read the header line as it is written to catch that.
    try:
        header = next(csv.reader(io.StringIO(head), delimiter=delimiter), [])
    except csv.Error:
        return  # nothing like a header to repeat; the column check says what is missing
    names = [_normalise(name) for name in header]
    seen = set()
    for name in names:
        if name in seen and name:
            what = f"{name} column" if name in REQUIRED_COLUMNS else f"column named {name!r}"
            raise InputError(f"{path} has more than one {what}; keep only one.")
        seen.add(name)


def _find_required_columns(path: Path, columns: pd.Index, delimiter: str) -> tuple[str, str]:
    found: dict[str, list[str]] = {name: [] for name in REQUIRED_COLUMNS}
    for column in columns:
        key = _normalise(column)
        if key in found:
            found[key].append(column)
    missing = [name for name, columns in found.items() if not columns]
    if missing:
        names = " and ".join(missing)
        hint = ""
        if any(re.fullmatch(r"imp_[0-9]+", str(c).strip()) for c in columns):
            hint = " The first line looks like data: add a header row 'imp_uid,status'."
        elif len(columns) == 1:
            hint = (
                f" The header has one column when split at {delimiter!r}: "
                "if the file uses another separator, give --delimiter."
            )
        raise InputError(f"{path} has no {names} column (columns found: {_list(columns)}).{hint}")
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
