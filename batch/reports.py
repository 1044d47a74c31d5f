"""The reports of a run, built from the validation and the journal's outcomes.

- results.csv: one row per input record, in input order: the ledger.
- failures.csv: every record that did not succeed, in the input's own columns plus `reason`,
  ready to be fixed and fed back to `payco-batch run`.
- summary.json and summary.md: the totals, failures grouped, latency, rate and options.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

from batch import __version__
from batch.coding import categorical, factorize
from batch.errors import InputChangedError
from batch.inputs import OrdersFile
from batch.journal import JournalContents
from batch.outcomes import (
    DUPLICATE,
    FAILED,
    INVALID,
    NOT_SENT,
    OUTCOMES,
    SUCCEEDED,
    UNKNOWN,
    VALIDATION,
)
from batch.validation import STATUS_CODES, Validation

RESULTS_NAME = "results.csv"
FAILURES_NAME = "failures.csv"
SUMMARY_JSON_NAME = "summary.json"
SUMMARY_MD_NAME = "summary.md"

# UTF-8 with a BOM: without it Excel reads UTF-8 as the local code page and Korean turns to
# mojibake; every other CSV reader skips the BOM.
CSV_ENCODING = "utf-8-sig"

# The columns results.csv adds after the input's own, in this order.
RESULT_COLUMNS = (
    "outcome",
    "error_kind",
    "http_status",
    "api_code",
    "api_message",
    "applied_status",
    "attempts",
    "resent",
    "elapsed_ms",
    "finished_at",
    "reason",
)
MAX_EXAMPLES = 5
# Input rows read again and written at a time: the memory a chunk takes while it is written
# (28 MB at peak for 50,000 rows of the benchmark's file, measured) adds to the run's peak.
WRITE_CHUNK_ROWS = 20_000

_FORMULA_START = r"[=+\-@\t\r]"
_FORMULA_CHARACTERS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_LINE = re.compile("\n" + _FORMULA_START)
_PLAIN_NUMBER = r"[+-]?[0-9]+(?:[.,][0-9]+)*"

UNKNOWN_NOTE = "; the request may have been applied: check the order before sending it again"
STOPPED_NOTE = " (the run stopped before its retries were used up; a resume sends it again)"
UNKNOWN_EXPLAINED = (
    "Their request was sent but no definitive answer came back (a timeout, a lost "
    "connection, or the run stopped), so the order may or may not have changed. Check "
    "them in the PortOne console before sending them again, or resume with --retry-failed: "
    "sending the same status again is harmless when the first one landed."
)
IN_DOUBT_REASON = (
    "sent, but the run stopped before the answer came: the order may have changed; "
    "a resume sends it again"
)

# What makes a reason particular to one row, and what it becomes when failures are grouped.
_PARTICULARS = (
    (r" \(got [^)]*\)", ""),
    (r"for imp_[0-9]+ in rows .*$", "for one imp_uid"),
    (r"as row [0-9]+", "as another row"),
)


@dataclass
class RunFacts:
    """What the reports need to know about the run besides the rows."""

    target: str
    dry_run: bool
    started_at: str
    finished_at: str
    duration_s: float
    options: Mapping[str, Any] = field(default_factory=dict)
    sending_s: float = 0.0
    aborted_because: str | None = None
    interrupted: bool = False
    runs: int = 1  # this run and the runs it resumed
    rate_cuts: int = 0  # times the server's 429/503 made the run slow down
    lowest_rate: float | None = None


def build_results(
    orders: OrdersFile,
    validation: Validation,
    journal: JournalContents,
    *,
    not_sent_reason: str,
) -> pd.DataFrame:
    """One row per input record: its validation verdict joined with the journal's account.

    Indexed by spreadsheet row number, like the validation (`journal` is read for those rows).
    Holds RESULT_COLUMNS but finished_at (write_reports takes it from the journal), and
    `rate_limited` and the internal columns `_answered` (the row has a definitive answer),
    `_requested_status`, `_imp_uid` (trimmed), `_original_outcome` (of the row a duplicate
    repeats) and `_counts_as_succeeded`. Text columns with few values are Categoricals and
    nothing is copied per row: a million rows take about 40 MB.
    """
    frame = validation.frame
    if not journal.rows.equals(frame.index):
        raise ValueError("the journal was read for other rows than the validation's")
    verdict = frame["verdict"].to_numpy()
    in_doubt = frame.index.isin(list(journal.in_doubt))
    answered = journal.answered & ~in_doubt

    codes = np.full(len(frame), OUTCOMES.index(NOT_SENT), dtype=np.int8)
    sent = journal.column("outcome").cat.set_categories(OUTCOMES).cat.codes.to_numpy()
    codes[journal.answered] = sent[journal.answered]
    # Sent, and the run stopped before the answer: it may have landed.
    codes[in_doubt] = OUTCOMES.index(UNKNOWN)
    codes[verdict == INVALID] = OUTCOMES.index(INVALID)
    codes[verdict == DUPLICATE] = OUTCOMES.index(DUPLICATE)
    outcome = pd.Series(pd.Categorical.from_codes(codes, OUTCOMES), index=frame.index)

    # A duplicate shares the fate of the row it repeats.
    duplicates = verdict == DUPLICATE
    original_codes = np.full(len(frame), -1, dtype=np.int8)
    repeated = frame.index.get_indexer(frame["duplicate_of"].to_numpy()[duplicates])
    original_codes[duplicates] = codes[repeated]
    original_outcome = pd.Series(
        pd.Categorical.from_codes(original_codes, OUTCOMES), index=frame.index
    )
    counts_as_succeeded = (outcome == SUCCEEDED) | (original_outcome == SUCCEEDED)

    error_kind = _text_or_blank(journal.column("error_kind"), answered)
    error_kind = error_kind.cat.add_categories([VALIDATION]).mask(outcome == INVALID, VALIDATION)
    resent = journal.values("resent", False)
    results = pd.DataFrame(
        {
            "outcome": outcome,
            "error_kind": error_kind.cat.remove_unused_categories(),
            "http_status": journal.column("http_status").where(answered),
            "api_code": journal.column("api_code").where(answered),
            "api_message": _text_or_blank(journal.column("api_message"), answered),
            "applied_status": _text_or_blank(journal.column("applied_status"), answered),
            "attempts": journal.intents,
            "resent": resent | (in_doubt & (journal.runs > 1)),
            "elapsed_ms": _where(answered, journal.elapsed_ms, np.nan),
            "reason": _reasons(
                frame, journal, outcome, original_outcome, in_doubt, not_sent_reason
            ),
            "rate_limited": journal.values("rate_limited", 0),
            "_answered": answered,
            "_requested_status": frame["status"],
            "_counts_as_succeeded": counts_as_succeeded,
            "_imp_uid": frame["imp_uid"],
            "_original_outcome": original_outcome,
        },
        index=frame.index,
        copy=False,
    )
    return results


def _where(keep: np.ndarray, values: np.ndarray, other: Any) -> np.ndarray:
    """`values` where `keep`, `other` elsewhere: the same array when that changes nothing."""
    return values if keep.all() else np.where(keep, values, other)


def _text_or_blank(values: pd.Series, keep: np.ndarray) -> pd.Series:
    """A Categorical of text: its values where `keep`, "" elsewhere and for missing ones."""
    if "" not in values.cat.categories:
        values = values.cat.add_categories([""])
    return values.where(keep & values.notna().to_numpy(), "")


def _reasons(
    frame: pd.DataFrame,
    journal: JournalContents,
    outcome: pd.Series,
    original_outcome: pd.Series,
    in_doubt: np.ndarray,
    not_sent_reason: str,
) -> np.ndarray:
    reason = frame["reason"].to_numpy(dtype=object, copy=True)
    answered_badly = (outcome.isin([FAILED, UNKNOWN]).to_numpy()) & ~in_doubt
    if answered_badly.any():
        # One text per distinct answer, not per row: a run has a handful of them.
        texts = np.array(
            [
                _failure_reason(
                    answer.error_kind, answer.http_status, answer.api_code, answer.api_message
                )
                + (UNKNOWN_NOTE if answer.outcome == UNKNOWN else "")
                + (STOPPED_NOTE if not answer.final else "")
                for answer in journal.answers.itertuples()
            ],
            dtype=object,
        )
        reason[answered_badly] = texts.take(journal.answer[answered_badly])
    reason[in_doubt] = IN_DOUBT_REASON
    for original, fate in (
        (FAILED, "failed"),
        (UNKNOWN, "has an unknown outcome"),
        (NOT_SENT, "was not sent"),
    ):
        repeats = (original_outcome == original).to_numpy()
        reason[repeats] = reason[repeats] + f", which {fate}"
    reason[(outcome == SUCCEEDED).to_numpy()] = ""
    reason[(outcome == NOT_SENT).to_numpy()] = not_sent_reason
    return reason


def _failure_reason(kind: str, http: Any, code: Any, message: Any) -> str:
    facts = []
    if pd.notna(http):
        facts.append(f"HTTP {int(http)}")
    if pd.notna(code):
        facts.append(f"code {int(code)}")
    text = kind + (f" ({', '.join(facts)})" if facts else "")
    return f"{text}: {message}" if isinstance(message, str) and message else text


def write_reports(
    orders: OrdersFile,
    results: pd.DataFrame,
    journal: JournalContents,
    results_path: Path,
    failures_path: Path,
    encoding: str = CSV_ENCODING,
) -> None:
    """results.csv and failures.csv, in one pass over the input file, a chunk at a time.

    results.csv: row, the input's columns as read, then RESULT_COLUMNS; no cell a formula.
    failures.csv: every record that did not succeed, input columns as read plus `reason`;
    the input's values are kept raw, not neutralised, so that the fixed file can be fed back.

    The input's columns are read again from the file (orders.chunks) rather than held: with
    the results frame of a million rows built whole, the tables were 1 GB (measured).
    """
    renamed = {c: f"input_{c}" for c in orders.columns if c in {"row", *RESULT_COLUMNS}}
    with (
        _replacing(results_path, encoding) as results_file,
        _replacing(failures_path, encoding) as failures_file,
    ):
        done = 0
        for chunk in orders.chunks(WRITE_CHUNK_ROWS):
            rows = slice(done, done + len(chunk))
            part = results.iloc[rows]
            if not part.index.equals(chunk.index):
                raise InputChangedError(orders.path)
            table = pd.concat(
                [chunk.rename(columns=renamed), _result_columns(part, journal, rows)], axis=1
            )
            _to_csv(neutralise_formulas(table), results_file, header=not done, index_label="row")
            failed = ~part["_counts_as_succeeded"].to_numpy()
            failures = chunk[failed].assign(reason=part["reason"].to_numpy()[failed])
            _to_csv(failures, failures_file, header=not done, index=False)
            done += len(chunk)


def _result_columns(part: pd.DataFrame, journal: JournalContents, rows: slice) -> pd.DataFrame:
    columns = part[[c for c in RESULT_COLUMNS if c != "finished_at"]].copy()
    finished_at = np.where(part["_answered"].to_numpy(), journal.finished_at(rows), "")
    columns.insert(RESULT_COLUMNS.index("finished_at"), "finished_at", finished_at)
    return columns


@contextmanager
def _replacing(path: Path, encoding: str) -> Iterator[TextIO]:
    """A text file written under a temporary name and put in place whole, or not at all."""
    partial = path.with_name(path.name + ".partial")
    bom = codecs.lookup(encoding).name == "utf-8-sig"
    try:
        # A character the chosen encoding lacks (an emoji in cp949) becomes "?" rather than
        # losing the whole report; UTF-8, the default, has every character. The BOM is
        # written by hand: Python encodes "utf-8" in C but calls the "utf-8-sig" codec once
        # per line written, 0.7 s for a million rows (measured).
        with partial.open(
            "w", encoding="utf-8" if bom else encoding, errors="replace", newline=""
        ) as file:
            if bom:
                file.write("\ufeff")
            yield file
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _to_csv(table: pd.DataFrame, file: TextIO, **options: Any) -> None:
    # CRLF, as RFC 4180 and Excel have it: Python's csv writer quotes a cell holding any
    # character of the line terminator, so a bare CR inside a value stays inside its cell.
    table.to_csv(file, lineterminator="\r\n", **options)


def neutralise_formulas(table: pd.DataFrame) -> pd.DataFrame:
    """Make every text cell that a spreadsheet would run as a formula plain text.

    OWASP's CSV-injection advice: a cell starting with =, +, -, @, a tab or a carriage return
    gets a leading apostrophe, which Excel and LibreOffice show as text and do not run. Plain
    numbers (-1500, +82) are left alone: they are no formula, and an apostrophe would turn a
    refund amount into text in the ledger.
    """
    table = table.copy()
    for column in table.columns:
        values = table[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            # The few distinct values, not every row.
            categories = values.cat.categories
            if categories.dtype == object or pd.api.types.is_string_dtype(categories):
                table[column] = values.cat.rename_categories(
                    _neutralised(pd.Series(categories.astype(str))).tolist()
                )
            continue
        if values.dtype != object and not pd.api.types.is_string_dtype(values):
            continue
        table[column] = _neutralised(values)
    table.columns = [
        "'" + name
        if re.match(_FORMULA_START, name) and not re.fullmatch(_PLAIN_NUMBER, name)
        else name
        for name in map(str, table.columns)
    ]
    return table


def _neutralised(values: pd.Series) -> pd.Series:
    cells = values.to_numpy(dtype=object)
    try:
        # The whole column in one string, searched for a line that starts like a formula:
        # 0.06 s for a million ids and 0.03 s for a million Korean names, against 0.1 s
        # looking at each cell, in a loop or with pandas' str methods (measured), and
        # nearly every column has none. A match may be inside a multi-line cell: the cells are then
        # looked at one by one.
        if not _FORMULA_LINE.search("\n" + "\n".join(cells)):
            return values
    except TypeError:
        pass  # not text only
    risky = [
        i
        for i, cell in enumerate(cells)
        if isinstance(cell, str)
        and cell.startswith(_FORMULA_CHARACTERS)
        and not re.fullmatch(_PLAIN_NUMBER, cell)
    ]
    if not risky:
        return values
    cells = cells.copy()
    cells[risky] = ["'" + cell for cell in cells[risky]]
    return pd.Series(cells, index=values.index, dtype=values.dtype)


def summarize(
    orders: OrdersFile, validation: Validation, results: pd.DataFrame, facts: RunFacts
) -> dict[str, Any]:
    """The run's totals as a JSON-ready dict (the content of summary.json, without exit_code)."""
    outcome_counts = results["outcome"].value_counts()
    counts = {name: int(outcome_counts.get(name, 0)) for name in OUTCOMES}
    rows = len(results)
    counted_succeeded = int(results["_counts_as_succeeded"].sum())
    attempts = results["attempts"]
    sent = attempts > 0
    requests = int(attempts[sent].sum())
    return {
        "tool": "payco-batch",
        "version": __version__,
        "input": {
            "file": orders.path.name,
            "sha256": orders.sha256,
            "encoding": orders.encoding,
            "rows": rows,
            "blank_rows_ignored": orders.blank_rows,
        },
        "target": facts.target,
        "dry_run": facts.dry_run,
        "started_at": facts.started_at,
        "finished_at": facts.finished_at,
        "duration_s": round(facts.duration_s, 3),
        "outcomes": counts,
        "duplicates_of_failed_rows": int(
            results["_original_outcome"].isin([FAILED, UNKNOWN]).sum()
        ),
        "by_status": _by_status(results),
        "success_rate": round(counted_succeeded / rows, 4) if rows else None,
        "unknown_explained": UNKNOWN_EXPLAINED if counts[UNKNOWN] else None,
        "failures": _failure_groups(results, ~results["_counts_as_succeeded"]),
        "requests": {
            "total": requests,
            "retries": requests - int(sent.sum()),
            "http_429": int(results["rate_limited"].sum()),
            "per_second": round(requests / facts.sending_s, 2) if facts.sending_s > 0 else None,
            "slowed_down": facts.rate_cuts,
            "lowest_rate": round(facts.lowest_rate, 2) if facts.lowest_rate else None,
        },
        "latency_ms": _latency(results["elapsed_ms"][sent]),
        "aborted_because": facts.aborted_because,
        "interrupted": facts.interrupted,
        "runs": facts.runs,
        "options": dict(facts.options),
    }


def _by_status(results: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Rows per requested status code, broken down by outcome; unreadable statuses apart."""
    requested = results["_requested_status"]
    if not isinstance(requested.dtype, pd.CategoricalDtype):
        requested = categorical(requested)
    statuses = [status or "(invalid status)" for status in requested.cat.categories]
    # Counted on the Categoricals' codes: pandas' crosstab hashed a million rows, 63 MB at
    # peak against 16 MB (measured).
    pairs = requested.cat.codes.to_numpy(np.int64) * len(OUTCOMES) + results[
        "outcome"
    ].cat.codes.to_numpy(np.int64)
    table = np.bincount(pairs, minlength=len(statuses) * len(OUTCOMES))
    table = table.reshape(len(statuses), len(OUTCOMES))
    by_status = {}
    for status in [*STATUS_CODES, "(invalid status)"]:
        if status not in statuses or not table[statuses.index(status)].sum():
            continue
        row = table[statuses.index(status)]
        by_status[status] = {"rows": int(row.sum())} | {
            name: int(count) for name, count in zip(OUTCOMES, row, strict=True) if count
        }
    return by_status


def _failure_groups(results: pd.DataFrame, failed: pd.Series) -> dict[str, list[dict[str, Any]]]:
    # Categoricals over every row, the failed ones picked by a mask: copying and hashing the
    # text of a million failed rows (a dry run's) took 65 MB at peak, this 21 MB (measured).
    kind = _first_of(results["error_kind"], results["outcome"])
    # API failures group by iamport's own message; the tool's own reasons by the rule, not
    # by the row's particulars, so that one rule makes one group.
    message = _first_of(results["api_message"], _general_reasons(results["reason"]))
    failed_rows = failed.to_numpy()
    return {
        "by_error_kind": _groups(kind, failed_rows, results["_imp_uid"], "error_kind"),
        "by_message": _groups(message, failed_rows, results["_imp_uid"], "message"),
    }


def _first_of(first: pd.Series, second: pd.Series) -> pd.Series:
    """`first` where it is not "", else `second` (Categoricals)."""
    categories = first.cat.categories.union(second.cat.categories)
    return first.cat.set_categories(categories).where(
        first != "", second.cat.set_categories(categories)
    )


def _general_reasons(reasons: pd.Series) -> pd.Series:
    """Each reason without its row's particulars, as a Categorical; each distinct one once."""
    codes, distinct = factorize(reasons)
    general = pd.Series(distinct, dtype=object)
    for particular, replacement in _PARTICULARS:
        general = general.str.replace(particular, replacement, regex=True)
    general_codes, general_values = pd.factorize(general)
    values = pd.Categorical.from_codes(general_codes.take(codes), general_values)
    return pd.Series(values, index=reasons.index)


def _groups(
    keys: pd.Series, rows: np.ndarray, imp_uids: pd.Series, name: str
) -> list[dict[str, Any]]:
    """Among `rows`, the count of each key, most common first, with examples."""
    counts = keys[rows].value_counts()
    groups = []
    for key, count in counts[counts > 0].items():
        among = rows & (keys == key).to_numpy()
        groups.append(
            {name: key, "count": int(count), "examples": _examples(compress(imp_uids, among))}
        )
    return groups


def _examples(imp_uids: Iterable[str]) -> list[str]:
    """The first MAX_EXAMPLES distinct imp_uids; stops there rather than dedupe a million."""
    examples: list[str] = []
    for imp_uid in imp_uids:
        if imp_uid and imp_uid not in examples:
            examples.append(imp_uid)
            if len(examples) == MAX_EXAMPLES:
                break
    return examples


def _latency(elapsed_ms: pd.Series) -> dict[str, float | None]:
    values = elapsed_ms.dropna().to_numpy(dtype=float)
    if not len(values):
        return {"p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": round(float(p50), 1),
        "p95": round(float(p95), 1),
        "p99": round(float(p99), 1),
        "max": round(float(values.max()), 1),
    }


def write_summary_json(summary: Mapping[str, Any], path: Path) -> None:
    path.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def write_summary_md(summary: Mapping[str, Any], path: Path) -> None:
    path.write_text(render_summary_md(summary), encoding="utf-8")


def render_summary_md(summary: Mapping[str, Any]) -> str:
    """summary.md: the same facts as summary.json, for a person."""
    source = summary["input"]
    outcomes = summary["outcomes"]
    lines = [
        "# payco-batch run summary",
        "",
        f"- Input: `{source['file']}` ({source['rows']} rows, {source['encoding']}, "
        f"sha256 `{source['sha256']}`)",
        f"- Target: {summary['target']}"
        + (" (dry run: nothing sent)" if summary["dry_run"] else ""),
        f"- Started {summary['started_at']}, finished {summary['finished_at']} "
        f"({summary['duration_s']} s)",
        f"- Exit code: {summary.get('exit_code', '')}",
    ]
    if summary.get("aborted_because"):
        lines.append(f"- **Aborted**: {summary['aborted_because']}")
    if summary.get("interrupted"):
        lines.append("- **Interrupted** before every row was sent")
    if summary.get("resume_command"):
        lines.append(f"- To finish the run: `{summary['resume_command']}`")
    rate = summary["success_rate"]
    lines += [
        "",
        "## Outcomes",
        "",
        "| outcome | rows |",
        "|---|---:|",
        *[f"| {name} | {outcomes[name]} |" for name in OUTCOMES],
        f"| **total** | **{source['rows']}** |",
        "",
        f"Success rate: {rate:.1%}" if rate is not None else "Success rate: n/a (no rows)",
        *(
            [f"**{outcomes[UNKNOWN]} rows have an unknown outcome.** {UNKNOWN_EXPLAINED}"]
            if outcomes.get(UNKNOWN)
            else []
        ),
        "",
        "## By requested status",
        "",
        "| status | rows | " + " | ".join(OUTCOMES) + " |",
        "|---|---:|" + "---:|" * len(OUTCOMES),
    ]
    for status, counts in summary["by_status"].items():
        cells = " | ".join(str(counts.get(name, 0)) for name in OUTCOMES)
        lines.append(f"| {status} | {counts['rows']} | {cells} |")
    failures = summary["failures"]
    if failures["by_error_kind"]:
        lines += ["", "## Failures by kind", "", "| kind | rows | examples |", "|---|---:|---|"]
        lines += [_group_line(g, "error_kind") for g in failures["by_error_kind"]]
        lines += [
            "",
            "## Failures by message",
            "",
            "| message | rows | examples |",
            "|---|---:|---|",
        ]
        lines += [_group_line(g, "message") for g in failures["by_message"]]
    requests = summary["requests"]
    latency = summary["latency_ms"]
    lines += [
        "",
        "## Requests",
        "",
        f"- Requests: {requests['total']} (retries {requests['retries']}, "
        f"HTTP 429 {requests['http_429']})",
        f"- Achieved rate: {_or_na(requests['per_second'])} requests/s",
        *(
            [
                f"- Slowed down {requests['slowed_down']} times on the server's 429/503 "
                f"(lowest rate {requests['lowest_rate']} requests/s)"
            ]
            if requests.get("slowed_down")
            else []
        ),
        "- Row latency (first request to final answer, ms): "
        + ", ".join(f"{name} {_or_na(value)}" for name, value in latency.items()),
        "",
        "## Options",
        "",
        *[f"- {name}: {value}" for name, value in summary["options"].items()],
        "",
        f"payco-batch {summary['version']}",
        "",
    ]
    return "\n".join(lines)


def _or_na(value: Any) -> str:
    return "n/a" if value is None else str(value)


def _group_line(group: Mapping[str, Any], name: str) -> str:
    key = str(group[name]).replace("|", "\\|").replace("\n", " ")
    return f"| {key} | {group['count']} | {', '.join(group['examples'])} |"
