"""No secret leaks: every command, on every path, with a recognisable secret and token.

Each scenario runs a command and then searches everything it produced: stdout, stderr (the
--verbose log and error messages included) and every file it wrote.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from conftest import API_URL, SECRET, TOKEN, FakeIamport, envelope, mock_http

from batch.cli import cli

GOOD = "imp_uid,status\nimp_1,DELIVERY_START\nimp_2,CANCELED\nimp_3,DELIVERY_START\n"
MARKERS = (SECRET, TOKEN, "DO-NOT-LEAK")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IAMPORT_API_URL", raising=False)
    monkeypatch.delenv("IMP_SECRET", raising=False)
    (tmp_path / "orders.csv").write_text(GOOD, encoding="utf-8")
    return tmp_path


def everything_written(root: Path) -> str:
    texts = []
    for path in root.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(texts)


def assert_no_secret(result, root: Path) -> None:
    produced = result.stdout + result.stderr + everything_written(root)
    for marker in MARKERS:
        assert marker not in produced, f"{marker} leaked"


def invoke(args, env=None):
    return CliRunner().invoke(cli, args, env=env or {}, catch_exceptions=False)


def mocked(iamport: FakeIamport):
    mock = mock_http(assert_all_called=False)
    mock.route(host="api.iamport.test").mock(side_effect=iamport.handler)
    return mock


SCENARIOS = {
    "succeeds": lambda api: None,
    "row fails": lambda api: api.script.update({"imp_2": [envelope(500, -1, "err")]}),
    "auth fails": lambda api: api.token_answers.append(envelope(401, -1, "Unauthorized")),
    "network fails": lambda api: api.script.update({"imp_2": [httpx.ConnectError("refused")]}),
    "token refused mid-run": lambda api: api.script.update(
        {"imp_2": [envelope(401, -1, "expired"), envelope(401, -1, "expired")]}
    ),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("how", ["env", "option", "file"])
def test_run_never_shows_the_secret_or_the_token(workdir, scenario, how):
    api = FakeIamport()
    SCENARIOS[scenario](api)
    args = ["run", "orders.csv", "--api-url", API_URL, "--imp-key", "key", "--yes"]
    args += ["--rate", "0", "--max-attempts", "1", "--verbose", "--json", "--out", "o"]
    env = {}
    if how == "env":
        env["IMP_SECRET"] = SECRET
    elif how == "option":
        args += ["--imp-secret", SECRET]
    else:
        (workdir / "secret.txt").write_text(SECRET + "\n", encoding="utf-8")
        args += ["--imp-secret-file", "secret.txt"]
    with mocked(api):
        result = invoke(args, env)
    assert result.exit_code in (0, 1, 3), result.output
    assert "POST /payco/orders/status/" in result.stderr or scenario == "auth fails"
    (workdir / "secret.txt").unlink(missing_ok=True)  # the user's own file holds it, of course
    assert_no_secret(result, workdir)
    if how == "option":
        assert "warning: --imp-secret on the command line is visible" in result.stderr
    else:
        assert "warning" not in result.stderr


def test_resume_and_validate_never_show_the_secret(workdir):
    api = FakeIamport()
    api.script["imp_2"] = [envelope(503, -1, "busy")]
    env = {"IMP_SECRET": SECRET, "IMP_KEY": "key"}
    with mocked(api):
        first = invoke(
            ["run", "orders.csv", "--api-url", API_URL, "--yes", "--max-attempts", "1"]
            + ["--rate", "0", "--out", "o"],
            env,
        )
        resumed = invoke(["resume", "o", "--yes", "--retry-failed", "--verbose"], env)
    checked = invoke(["validate", "orders.csv"], env)
    for result in (first, resumed, checked):
        assert_no_secret(result, workdir)
    assert resumed.exit_code == 1  # imp_2 still answers 503


def test_a_secret_file_that_cannot_be_read_is_one_clear_sentence(workdir):
    result = invoke(["run", "orders.csv", "--imp-key", "k", "--imp-secret-file", "missing.txt"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "payco-batch: error: the secret file missing.txt cannot be read: No such file or directory."
    )


def test_secret_on_the_command_line_and_in_a_file_is_refused(workdir):
    (workdir / "secret.txt").write_text("abc\n", encoding="utf-8")
    result = invoke(
        ["run", "orders.csv", "--imp-secret", "x", "--imp-secret-file", "secret.txt", "--dry-run"]
    )
    assert result.exit_code == 2
    assert "give --imp-secret or --imp-secret-file, not both" in result.stderr
