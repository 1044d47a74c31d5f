"""The reports of a run, built from the validation and the journal's outcomes.

- results.csv: one row per input record, in input order: the ledger.
- failures.csv: every record that did not succeed, in the input's own columns plus `reason`,
  ready to be fixed and fed back to `payco-batch run`.
- summary.json and summary.md: the totals, failures grouped, latency, rate and options.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from batch import __version__
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
# Fields of a journal outcome record that are not results.csv columns of their own.
_SENT_FIELDS = (
    "outcome",
    "error_kind",
    "http_status",
    "api_code",
    "api_message",
    "applied_status",
    "rate_limited",
    "elapsed_ms",
    "finished_at",
)
# (A row's attempts come from the journal's intents, counted across runs, not from here.)
MAX_EXAMPLES = 5

_FORMULA_START = r"[=+\-@\t\r]"
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

    Indexed by spreadsheet row number. Besides RESULT_COLUMNS it holds `rate_limited` and the
    internal columns `_requested_status`, `_imp_uid` (trimmed), `_original_outcome` (of the row
    a duplicate repeats) and `_counts_as_succeeded`.
    """
    sent = pd.DataFrame.from_records(
        list(journal.outcomes.values()), columns=["row", *_SENT_FIELDS, "final", "resent"]
    ).set_index("row")
    frame = validation.frame.join(sent, how="left")
    attempts = pd.Series(journal.intents, dtype="int64")
    in_doubt = frame.index.isin(list(journal.in_doubt))

    verdict = frame["verdict"]
    was_sent = frame["outcome"].notna()
    outcome = pd.Series(NOT_SENT, index=frame.index, dtype=object)
    outcome = outcome.mask(was_sent, frame["outcome"])
    # Sent, and the run stopped before the answer: it may have landed.
    outcome = outcome.mask(in_doubt, UNKNOWN)
    outcome = outcome.mask(verdict == INVALID, INVALID).mask(verdict == DUPLICATE, DUPLICATE)

    # A duplicate shares the fate of the row it repeats.
    original_outcome = frame["duplicate_of"].map(outcome).where(outcome == DUPLICATE, "")
    counts_as_succeeded = (outcome == SUCCEEDED) | (original_outcome == SUCCEEDED)

    answered = was_sent & ~in_doubt
    results = pd.DataFrame(index=frame.index)
    results["outcome"] = outcome
    results["error_kind"] = frame["error_kind"].where(answered, "").fillna("")
    results.loc[outcome == INVALID, "error_kind"] = VALIDATION
    results["http_status"] = frame["http_status"].where(answered).astype("Int64")
    results["api_code"] = frame["api_code"].where(answered).astype("Int64")
    results["api_message"] = frame["api_message"].where(answered, "").fillna("")
    results["applied_status"] = frame["applied_status"].where(answered, "").fillna("")
    results["attempts"] = attempts.reindex(frame.index, fill_value=0).astype(int)
    results["resent"] = frame["resent"].fillna(False).astype(bool) | (in_doubt & (journal.runs > 1))
    results["elapsed_ms"] = frame["elapsed_ms"].where(answered)
    results["finished_at"] = frame["finished_at"].where(answered, "").fillna("")
    results["reason"] = _reasons(frame, outcome, original_outcome, in_doubt, not_sent_reason)
    results["rate_limited"] = frame["rate_limited"].fillna(0).astype(int)
    results["_requested_status"] = frame["status"]
    results["_counts_as_succeeded"] = counts_as_succeeded
    results["_imp_uid"] = frame["imp_uid"]
    results["_original_outcome"] = original_outcome
    return results


def _reasons(
    frame: pd.DataFrame,
    outcome: pd.Series,
    original_outcome: pd.Series,
    in_doubt: Any,
    not_sent_reason: str,
) -> pd.Series:
    reason = frame["reason"].copy()
    answered_badly = outcome.isin([FAILED, UNKNOWN]) & ~in_doubt
    if answered_badly.any():
        rows = frame[answered_badly]
        reason[answered_badly] = [
            _failure_reason(kind, http, code, message)
            + (UNKNOWN_NOTE if fate == UNKNOWN else "")
            + (STOPPED_NOTE if final is False else "")
            for kind, http, code, message, fate, final in zip(
                rows["error_kind"],
                rows["http_status"],
                rows["api_code"],
                rows["api_message"],
                outcome[answered_badly],
                rows["final"],
                strict=True,
            )
        ]
    reason[in_doubt] = IN_DOUBT_REASON
    for original, fate in (
        (FAILED, "failed"),
        (UNKNOWN, "has an unknown outcome"),
        (NOT_SENT, "was not sent"),
    ):
        repeats = original_outcome == original
        reason[repeats] = reason[repeats] + f", which {fate}"
    reason[outcome == SUCCEEDED] = ""
    reason[outcome == NOT_SENT] = not_sent_reason
    return reason


def _failure_reason(kind: str, http: Any, code: Any, message: Any) -> str:
    facts = []
    if pd.notna(http):
        facts.append(f"HTTP {int(http)}")
    if pd.notna(code):
        facts.append(f"code {int(code)}")
    text = kind + (f" ({', '.join(facts)})" if facts else "")
    return f"{text}: {message}" if isinstance(message, str) and message else text


def write_results(
    orders: OrdersFile, results: pd.DataFrame, path: Path, encoding: str = CSV_ENCODING
) -> None:
    """results.csv: row, the input's columns as read, then RESULT_COLUMNS; no cell a formula."""
    inputs = orders.read_all().rename(
        columns={c: f"input_{c}" for c in orders.columns if c in {"row", *RESULT_COLUMNS}}
    )
    table = pd.concat([inputs, results[list(RESULT_COLUMNS)]], axis=1)
    table = neutralise_formulas(table)
    _to_csv(table, path, encoding, index_label="row")


def write_failures(
    orders: OrdersFile, results: pd.DataFrame, path: Path, encoding: str = CSV_ENCODING
) -> None:
    """failures.csv: every record that did not succeed, input columns as read plus `reason`.

    The input's values are kept raw, not neutralised, so that the fixed file can be fed back.
    """
    failed = ~results["_counts_as_succeeded"]
    table = orders.read_all()[failed].copy()
    table["reason"] = results.loc[failed, "reason"]
    _to_csv(table, path, encoding, index=False)


def _to_csv(table: pd.DataFrame, path: Path, encoding: str, **options: Any) -> None:
    # A character the chosen encoding lacks (an emoji in cp949) becomes "?" rather than
    # losing the whole report; UTF-8, the default, has every character.
    # CRLF, as RFC 4180 and Excel have it: Python's csv writer quotes a cell holding any
    # character of the line terminator, so a bare CR inside a value stays inside its cell.
    table.to_csv(path, encoding=encoding, errors="replace", lineterminator="\r\n", **options)


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
        if values.dtype != object and not pd.api.types.is_string_dtype(values):
            continue
        text = values.astype(str)
        risky = text.str.match(_FORMULA_START) & ~text.str.fullmatch(_PLAIN_NUMBER)
        risky &= values.notna()
        if risky.any():
            table[column] = values.where(~risky, "'" + text)
    table.columns = [
        "'" + name
        if re.match(_FORMULA_START, name) and not re.fullmatch(_PLAIN_NUMBER, name)
        else name
        for name in map(str, table.columns)
    ]
    return table


def summarize(
    orders: OrdersFile, validation: Validation, results: pd.DataFrame, facts: RunFacts
) -> dict[str, Any]:
    """The run's totals as a JSON-ready dict (the content of summary.json, without exit_code)."""
    outcome = results["outcome"]
    counts = {name: int((outcome == name).sum()) for name in OUTCOMES}
    rows = len(results)
    counted_succeeded = int(results["_counts_as_succeeded"].sum())
    sent = results[results["attempts"] > 0]
    requests = int(sent["attempts"].sum())
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
        "failures": _failure_groups(results[~results["_counts_as_succeeded"]]),
        "requests": {
            "total": requests,
            "retries": requests - len(sent),
            "http_429": int(results["rate_limited"].sum()),
            "per_second": round(requests / facts.sending_s, 2) if facts.sending_s > 0 else None,
            "slowed_down": facts.rate_cuts,
            "lowest_rate": round(facts.lowest_rate, 2) if facts.lowest_rate else None,
        },
        "latency_ms": _latency(sent["elapsed_ms"]),
        "aborted_because": facts.aborted_because,
        "interrupted": facts.interrupted,
        "runs": facts.runs,
        "options": dict(facts.options),
    }


def _by_status(results: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Rows per requested status code, broken down by outcome; unreadable statuses apart."""
    requested = results["_requested_status"].replace("", "(invalid status)")
    table = pd.crosstab(requested, results["outcome"])
    by_status = {}
    for status in [*STATUS_CODES, "(invalid status)"]:
        if status not in table.index:
            continue
        row = table.loc[status]
        by_status[status] = {"rows": int(row.sum())} | {
            name: int(row[name]) for name in OUTCOMES if name in row and row[name]
        }
    return by_status


def _failure_groups(failures: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    kind = failures["error_kind"].where(failures["error_kind"] != "", failures["outcome"])
    # API failures group by iamport's own message; the tool's own reasons by the rule, not
    # by the row's particulars, so that one rule makes one group.
    generic = failures["reason"]
    for particular, general in _PARTICULARS:
        generic = generic.str.replace(particular, general, regex=True)
    message = failures["api_message"].where(failures["api_message"] != "", generic)
    return {
        "by_error_kind": _groups(kind, failures["_imp_uid"], "error_kind"),
        "by_message": _groups(message, failures["_imp_uid"], "message"),
    }


def _groups(keys: pd.Series, imp_uids: pd.Series, name: str) -> list[dict[str, Any]]:
    groups = []
    counts = keys.value_counts()
    for key, count in counts.items():
        examples = imp_uids[keys == key]
        examples = examples[examples != ""].drop_duplicates().head(MAX_EXAMPLES)
        groups.append({name: key, "count": int(count), "examples": list(examples)})
    return groups


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
