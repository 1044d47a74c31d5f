"""End-to-end through the click command: exit codes, messages, and what reaches the API."""

import json
from pathlib import Path

import httpx
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import SECRET, envelope, mock_http

from batch import __version__
from batch.cli import cli

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
GOOD = "imp_uid,status\nimp_1,DELIVERY_START\nimp_2,CANCELED\nimp_3,구매확정\n"


def invoke(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def results_of(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")


def test_all_rows_succeed_exit_0(env, api, write_csv):
    result = invoke("run", str(write_csv(GOOD)), "--yes", "--rate", "0", "--out", "out")
    assert result.exit_code == 0, result.output
    assert "3 rows: 3 succeeded." in result.stdout
    assert "Reports: out/" in result.stdout
    assert sorted(api.sent_imp_uids()) == ["imp_1", "imp_2", "imp_3"]
    assert [json.loads(r.content) for r in api.status_requests if r.url.path.endswith("imp_3")] == [
        {"status": "PURCHASE_DECISION"}
    ]
    assert list(results_of(env / "out")["outcome"]) == ["succeeded"] * 3


def test_some_rows_fail_exit_1(env, api, write_csv):
    api.script["imp_2"] = [envelope(404, -1, "존재하지 않는 결제정보입니다.")]
    text = GOOD + "bad,DELIVERY_START\n"
    result = invoke("run", str(write_csv(text)), "--yes", "--rate", "0", "--out", "out")
    assert result.exit_code == 1, result.output
    assert "row 5: imp_uid must look like imp_123456789012 (got 'bad')" in result.stderr
    assert list(results_of(env / "out")["outcome"]) == [
        "succeeded",
        "failed",
        "succeeded",
        "invalid",
    ]


def test_default_output_folder_is_under_reports(env, api, write_csv):
    result = invoke("run", str(write_csv(GOOD, name="daily.csv")), "--yes", "--rate", "0")
    assert result.exit_code == 0, result.output
    (folder,) = (env / "reports").iterdir()
    assert folder.name.endswith("-daily") and len(folder.name) == len("20261204-180000-daily")
    assert (folder / "results.csv").exists()


def test_dry_run_sends_nothing_and_exits_0_when_all_valid(env, write_csv):
    with mock_http(assert_all_called=False) as mock:
        route = mock.route()
        result = invoke("run", str(write_csv(GOOD)), "--dry-run", "--out", "out")
    assert result.exit_code == 0, result.output
    assert not route.called
    assert "dry run, nothing sent: 3 rows: 3 not sent." in result.stdout
    assert list(results_of(env / "out")["outcome"]) == ["not_sent"] * 3


def test_dry_run_exits_1_when_some_rows_are_invalid(env, write_csv):
    with mock_http(assert_all_called=False) as mock:
        route = mock.route()
        result = invoke("run", str(SAMPLES / "orders_with_errors.csv"), "--dry-run", "--out", "o")
    assert result.exit_code == 1
    assert not route.called


def test_dry_run_needs_no_target_or_credentials(env, monkeypatch, write_csv):
    for name in ("IAMPORT_API_URL", "IMP_KEY", "IMP_SECRET"):
        monkeypatch.delenv(name)
    result = invoke("run", str(write_csv(GOOD)), "--dry-run", "--out", "out")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv"], "missing.csv does not exist."),
        (["."], ". is a folder, not a CSV file."),
        (["--api-url", "ftp://x"], "--api-url must be an http or https URL"),
    ],
)
def test_input_and_usage_errors_exit_2_with_one_sentence(env, write_csv, args, message):
    if args[0].startswith("--"):
        args = [str(write_csv(GOOD)), *args]
    result = invoke("run", *args, "--yes")
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_without_api_url_the_embedded_sandbox_is_the_target(env, monkeypatch):
    monkeypatch.delenv("IAMPORT_API_URL")
    result = invoke("run", str(SAMPLES / "orders.csv"), "--rate", "0", "--out", "out")
    assert result.exit_code == 0, result.output
    assert "sandbox: no real orders are changed" in result.stderr
    summary = json.loads((env / "out" / "summary.json").read_text())
    assert summary["target"].startswith("sandbox (http://127.0.0.1:")
    assert summary["outcomes"]["succeeded"] == 50


def test_missing_credentials_exit_2(env, monkeypatch, write_csv):
    monkeypatch.delenv("IMP_SECRET")
    result = invoke("run", str(write_csv(GOOD)), "--yes")
    assert result.exit_code == 2
    assert "no credentials: set IMP_KEY and IMP_SECRET" in result.stderr


def test_strict_sends_nothing_when_a_row_is_invalid(env, write_csv):
    with mock_http(assert_all_called=False) as mock:
        route = mock.route()
        result = invoke("run", str(write_csv(GOOD + "imp_4,SHIPPED\n")), "--strict", "--yes")
    assert result.exit_code == 2
    assert not route.called
    assert "1 rows are invalid and --strict is set, so nothing was sent" in result.stderr
    assert not (env / "reports").exists() or not any((env / "reports").iterdir())


def test_non_empty_output_folder_is_refused(env, write_csv):
    (env / "out").mkdir()
    (env / "out" / "old.txt").write_text("x")
    result = invoke("run", str(write_csv(GOOD)), "--dry-run", "--out", "out")
    assert result.exit_code == 2
    assert "out already exists and is not empty" in result.stderr


def test_real_target_without_terminal_or_yes_exits_2(env, write_csv):
    with mock_http(assert_all_called=False) as mock:
        route = mock.route()
        result = invoke("run", str(write_csv(GOOD)))
    assert result.exit_code == 2
    assert not route.called
    assert "pass --yes to run unattended" in result.stderr


def test_loopback_target_needs_no_confirmation(env, write_csv, iamport):
    with mock_http(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").mock(side_effect=iamport.handler)
        result = invoke(
            "run", str(write_csv(GOOD)), "--api-url", "http://127.0.0.1:8700", "--rate", "0"
        )
    assert result.exit_code == 0, result.output


def test_authentication_failure_exits_3_and_marks_rows_not_sent(env, api, write_csv):
    api.token_answers = [envelope(401, -1, "Unauthorized")]
    result = invoke("run", str(write_csv(GOOD)), "--yes", "--out", "out")
    assert result.exit_code == 3
    assert "authentication failed: check IMP_KEY and IMP_SECRET" in result.stderr
    assert api.status_requests == []
    results = results_of(env / "out")
    assert list(results["outcome"]) == ["not_sent"] * 3
    summary = json.loads((env / "out" / "summary.json").read_text())
    assert summary["exit_code"] == 3


def test_unreachable_target_exits_3(env, write_csv):
    with mock_http(assert_all_called=False) as mock:
        mock.route().mock(side_effect=httpx.ConnectError("connection refused"))
        result = invoke("run", str(write_csv(GOOD)), "--yes", "--out", "out", "--max-attempts", "1")
    assert result.exit_code == 3
    assert "could not get an access token: ConnectError: connection refused" in result.stderr


def test_interrupt_exits_130_and_reports_every_row(env, api, write_csv):
    def interrupt(request):
        raise KeyboardInterrupt

    api.script["imp_2"] = [interrupt]
    result = invoke("run", str(write_csv(GOOD)), "--yes", "--concurrency", "1", "--out", "out")
    assert result.exit_code == 130
    outcomes = list(results_of(env / "out")["outcome"])
    # imp_2's request had left when the process was interrupted: its fate is unknown
    assert outcomes == ["succeeded", "unknown", "not_sent"]
    assert "to finish the run: payco-batch resume out" in result.stderr


def test_an_interrupt_while_the_reports_are_written_exits_130_with_the_resume_command(
    env, api, write_csv, monkeypatch
):
    """A second Ctrl-C after sending ended: the journal is complete, the reports are not."""

    def reports_interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("batch.job._write_reports", reports_interrupted)
        result = invoke("run", str(write_csv(GOOD)), "--yes", "--rate", "0", "--out", "out")
    assert result.exit_code == 130
    assert "keeps every row's fate: payco-batch resume out" in result.stderr
    assert "Traceback" not in result.output and "Aborted" not in result.output
    assert len(api.status_requests) == 3 and (env / "out" / "journal.jsonl").exists()

    resumed = invoke("resume", "out")
    assert resumed.exit_code == 0, resumed.output
    assert list(results_of(env / "out")["outcome"]) == ["succeeded"] * 3
    assert len(api.status_requests) == 3  # nothing sent twice


def test_an_interrupt_while_loading_exits_130_having_sent_nothing(env, api, write_csv, monkeypatch):
    def loading_interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("batch.job.load_orders", loading_interrupted)
    result = invoke("run", str(write_csv(GOOD)), "--yes", "--out", "out")
    assert result.exit_code == 130
    assert "interrupted: nothing was sent." in result.stderr
    assert api.status_requests == [] and not (env / "out").exists()


def test_json_prints_the_summary(env, api, write_csv):
    result = invoke("run", str(write_csv(GOOD)), "--yes", "--rate", "0", "--json", "--out", "o")
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    assert printed == json.loads((env / "o" / "summary.json").read_text())
    assert printed["outcomes"]["succeeded"] == 3


def test_tier_code_is_sent_as_header(env, api, write_csv):
    result = invoke("run", str(write_csv(GOOD)), "--yes", "--tier-code", "T01", "--out", "o")
    assert result.exit_code == 0
    assert {r.headers["Tier"] for r in api.status_requests} == {"T01"}


def test_secret_appears_in_no_output(env, api, write_csv):
    api.script["imp_2"] = [envelope(500, -1, "err")]
    result = invoke(
        "run", str(write_csv(GOOD)), "--yes", "--max-attempts", "1", "--json", "--out", "o"
    )
    assert result.exit_code == 1
    assert SECRET not in result.output
    assert "DO-NOT-LEAK" not in result.output
    for path in (env / "o").iterdir():
        assert "DO-NOT-LEAK" not in path.read_text(encoding="utf-8-sig"), path.name


def test_cp949_sample_is_read(env):
    result = invoke("run", str(SAMPLES / "orders_cp949.csv"), "--dry-run", "--out", "o")
    assert result.exit_code == 0, result.output
    assert "홍길동" in (env / "o" / "results.csv").read_text(encoding="utf-8-sig")


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"payco-batch, version {__version__}"


@pytest.mark.parametrize("command", [[], ["run"], ["resume"], ["sandbox"], ["validate"]])
def test_every_command_has_help_with_an_example(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output
    assert f"payco-batch {command[0] if command else 'run'} " in result.output


def test_every_command_is_covered_by_the_help_test():
    assert sorted(cli.commands) == ["resume", "run", "sandbox", "validate"]


def test_the_same_file_is_not_sent_twice_to_a_real_target_without_force(env, api, write_csv):
    path = write_csv(GOOD)
    first = invoke("run", str(path), "--yes", "--rate", "0")
    assert first.exit_code == 0, first.output
    (earlier,) = (env / "reports").iterdir()

    again = invoke("run", str(path), "--yes", "--rate", "0")
    assert again.exit_code == 2
    assert f"was already sent in full by the run in reports/{earlier.name}" in again.stderr
    assert "pass --force to send it again" in again.stderr
    assert len(api.status_requests) == 3  # nothing more was sent

    forced = invoke("run", str(path), "--yes", "--rate", "0", "--force")
    assert forced.exit_code == 0, forced.output
    assert len(api.status_requests) == 6


def test_a_partly_failed_run_does_not_block_sending_the_file_again(env, api, write_csv):
    path = write_csv(GOOD)
    api.script["imp_2"] = [envelope(404, -1, "없음")]
    assert invoke("run", str(path), "--yes", "--rate", "0").exit_code == 1
    api.script.clear()
    assert invoke("run", str(path), "--yes", "--rate", "0").exit_code == 0


def test_resume_retry_failed_sends_the_transient_failures_again(env, api, write_csv):
    api.script["imp_2"] = [envelope(503, -1, "busy")]
    path = write_csv(GOOD)
    first = invoke("run", str(path), "--yes", "--rate", "0", "--max-attempts", "1", "--out", "o")
    assert first.exit_code == 1
    assert list(results_of(env / "o")["outcome"]) == ["succeeded", "failed", "succeeded"]

    plain = invoke("resume", "o", "--yes")
    assert plain.exit_code == 1  # nothing left to send without --retry-failed
    assert len(api.status_requests) == 3

    api.script.clear()
    retried = invoke("resume", "o", "--yes", "--retry-failed")
    assert retried.exit_code == 0, retried.output
    assert api.sent_imp_uids()[3:] == ["imp_2"]
    results = results_of(env / "o")
    assert list(results["outcome"]) == ["succeeded"] * 3
    assert list(results["attempts"]) == ["1", "2", "1"]  # counted across runs


def test_resume_of_a_folder_without_a_run_exits_2(env):
    (env / "empty").mkdir()
    result = invoke("resume", "empty")
    assert result.exit_code == 2
    assert "holds no payco-batch run that sent anything" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-errors", "lots"], "--max-errors must be a number of errors"),
        (["--deadline", "25:00"], "--deadline must be a local time HH:MM"),
        (["--deadline-in", "soon"], "--deadline-in must look like 45m"),
        (["--deadline", "18:00", "--deadline-in", "5m"], "give --deadline or --deadline-in"),
    ],
)
def test_bad_safeguard_options_exit_2(env, write_csv, args, message):
    result = invoke("run", str(write_csv(GOOD)), "--dry-run", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_plain_http_to_another_machine_is_refused_unless_insecure_http(env, write_csv, iamport):
    path = write_csv(GOOD)
    with mock_http(assert_all_called=False) as mock:
        mock.route(host="api.iamport.test").mock(side_effect=iamport.handler)
        refused = invoke("run", str(path), "--api-url", "http://api.iamport.test", "--yes")
        assert refused.exit_code == 2
        assert "plain http would send the secret and the token unencrypted" in refused.stderr
        assert iamport.status_requests == [] and iamport.token_requests == []
        allowed = invoke(
            "run", str(path), "--api-url", "http://api.iamport.test", "--insecure-http",
            "--yes", "--rate", "0", "--out", "o",
        )  # fmt: skip
    assert allowed.exit_code == 0, allowed.output
    assert len(iamport.status_requests) == 3


def test_redirects_are_not_followed(env, api, write_csv):
    api.script["imp_2"] = [
        httpx.Response(302, headers={"Location": "https://elsewhere.example/steal"})
    ]
    result = invoke("run", str(write_csv(GOOD)), "--yes", "--rate", "0", "--out", "o")
    assert result.exit_code == 1
    results = results_of(env / "o").set_index("imp_uid")
    assert results.loc["imp_2", "http_status"] == "302"
    assert results.loc["imp_2", "attempts"] == "1"
    assert all(r.url.host == "api.iamport.test" for r in api.status_requests)


def test_validate_lists_invalid_rows_and_what_would_be_sent(env, write_csv):
    path = write_csv(GOOD + "imp_9,SHIPPED\nimp_1,DELIVERY_START\n")
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "row 5: status must be one of DELIVERY_START, PURCHASE_DECISION, CANCELED "
        "(or 배송시작, 구매확정, 취소) (got 'SHIPPED')",
        f"{path}: 5 rows: 3 to send (1 DELIVERY_START, 1 PURCHASE_DECISION, 1 CANCELED), "
        "1 invalid, 1 duplicates (not sent).",
    ]
    assert not (env / "reports").exists()  # validate writes nothing


def test_validate_exit_codes(env, write_csv):
    assert invoke("validate", str(write_csv(GOOD))).exit_code == 0
    missing = invoke("validate", "missing.csv")
    assert missing.exit_code == 2
    assert missing.stderr == "payco-batch: error: missing.csv does not exist.\n"


@pytest.mark.parametrize(("answer", "sent"), [("y\n", 3), ("n\n", 0), ("", 0)])
def test_a_person_at_a_terminal_is_asked_before_real_orders_change(
    env, api, write_csv, monkeypatch, answer, sent
):
    monkeypatch.setattr("batch.cli._stdin_is_a_terminal", lambda: True)
    result = CliRunner().invoke(
        cli, ["run", str(write_csv(GOOD)), "--rate", "0", "--out", "o"], input=answer
    )
    assert "About to change 3 orders on https://api.iamport.test" in result.stderr
    assert len(api.status_requests) == sent
    if sent:
        assert result.exit_code == 0, result.output
    else:  # "n", or the end of input (as Ctrl-C at the prompt): nothing sent, exit 2
        assert result.exit_code == 2
        assert "payco-batch: error: cancelled: nothing was sent." in result.stderr
        assert "Aborted" not in result.output
