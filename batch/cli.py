"""The command line: options in, a RunConfig to the core, an exit code out. Nothing else."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import click
from click.core import ParameterSource

from batch import __version__, terminal
from batch.client import REAL_API_URL, Credentials
from batch.config import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RATE,
    DEFAULT_TIMEOUT,
    RunConfig,
    is_loopback,
)
from batch.errors import (
    AuthenticationError,
    ConfigError,
    ConfirmationRequired,
    InputError,
    OutputFolderError,
    PaycoBatchError,
    SandboxStartError,
    StrictValidationError,
)
from batch.exit_codes import ExitCode
from batch.job import Plan, check_file, execute, prepare
from batch.journal import JOURNAL_NAME
from batch.resume import DoubleSubmissionError, input_of
from batch.runner import StopSignal
from batch.safeguards import ErrorBudgetSpec, parse_deadline, parse_duration
from batch.sandbox import DEFAULT_HOST, DEFAULT_PORT
from batch.sandbox.tokens import DEFAULT_TOKEN_TTL
from batch.validation import INVALID

_EXIT_CODE_FOR_ERROR: dict[type[PaycoBatchError], ExitCode] = {
    InputError: ExitCode.USAGE,
    ConfigError: ExitCode.USAGE,
    StrictValidationError: ExitCode.USAGE,
    OutputFolderError: ExitCode.USAGE,
    ConfirmationRequired: ExitCode.USAGE,
    DoubleSubmissionError: ExitCode.USAGE,
    AuthenticationError: ExitCode.ABORTED,
    SandboxStartError: ExitCode.ABORTED,
}


_RATE = click.FloatRange(0, 1)


def _credential_options(command: Callable) -> Callable:
    """--imp-key, --imp-secret and --tier-code, shared by run and resume."""
    for option in reversed(
        [
            click.option("--imp-key", envvar="IMP_KEY", show_envvar=True, help="REST API key."),
            click.option(
                "--imp-secret",
                envvar="IMP_SECRET",
                show_envvar=True,
                help="REST API secret. Prefer the environment variable: "
                "a command line is visible to others.",
            ),
            click.option(
                "--imp-secret-file",
                type=click.Path(path_type=Path, dir_okay=False),
                help="Read the REST API secret from this file (its first line).",
            ),
            click.option(
                "--tier-code",
                envvar="IMP_TIER_CODE",
                show_envvar=True,
                help="Agency tier code (Tier header).",
            ),
        ]
    ):
        command = option(command)
    return command


def _input_options(command: Callable) -> Callable:
    """--encoding and --delimiter, shared by run and validate."""
    command = click.option(
        "--delimiter",
        help="Field separator. [default: found from the header line: comma, tab, ; or |]",
    )(command)
    return click.option(
        "--encoding",
        help="Input encoding. [default: UTF-16 with a BOM, else UTF-8 (BOM or not), else cp949]",
    )(command)


def _session_options(command: Callable) -> Callable:
    """How a run behaves, shared by run and resume."""
    for option in reversed(
        [
            click.option(
                "--retry-failed",
                is_flag=True,
                help="When continuing a run, also resend rows that failed for a passing reason "
                "(server_error, timeout, network, rate_limited) or whose outcome is unknown.",
            ),
            click.option(
                "--max-errors",
                metavar="N|N%",
                help="Stop after more than N server_error/timeout/network errors, or when more "
                "than N% of the last 100 requests had one. [default: 50%]",
            ),
            click.option(
                "--deadline", metavar="HH:MM", help="Stop starting rows at this local time."
            ),
            click.option(
                "--deadline-in",
                metavar="DURATION",
                help="Stop starting rows after this long, e.g. 45m or 1h30m.",
            ),
            click.option(
                "--yes", "-y", is_flag=True, help="Do not ask before changing real orders."
            ),
            click.option("--no-progress", is_flag=True, help="No progress bar."),
            click.option(
                "--verbose", "-v", is_flag=True, help="Log every request (never its secrets)."
            ),
            click.option("--json", "as_json", is_flag=True, help="Print summary.json on stdout."),
        ]
    ):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="payco-batch")
def cli() -> None:
    """Change the order status of PAYCO payments in bulk through iamport (PortOne V1).

    \b
    Example:
        payco-batch run sample_data/orders.csv          # against the embedded sandbox
        payco-batch sandbox --port 8700                 # serve the sandbox yourself
    """


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option(
    "--api-url",
    envvar="IAMPORT_API_URL",
    show_envvar=True,
    help=f"Base URL of the iamport API, e.g. {REAL_API_URL}. "
    "[default: the embedded sandbox, where no real order changes]",
)
@_credential_options
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    help="Requests in flight at once.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=DEFAULT_RATE,
    show_default=True,
    help="Requests per second across all workers, retries included; 0 for no limit.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_ATTEMPTS,
    show_default=True,
    help="Tries per row, for 429, 5xx, timeouts and connection errors.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for an answer (connecting: 10 s).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the reports: new, empty, or holding a run of this INPUT to resume. "
    "[default: reports/<YYYYMMDD-HHMMSS>-<input name>]",
)
@_input_options
@click.option(
    "--output-encoding",
    default="utf-8-sig",
    show_default=True,
    help="Encoding of results.csv and failures.csv (utf-8-sig: UTF-8 with the BOM Excel needs).",
)
@click.option(
    "--insecure-http",
    is_flag=True,
    help="Allow plain http to a host other than this machine (the secret travels unencrypted).",
)
@click.option("--strict", is_flag=True, help="Send nothing if any row is invalid (exit 2).")
@click.option("--dry-run", is_flag=True, help="Validate and write the reports; send nothing.")
@click.option(
    "--force", is_flag=True, help="Send even if an earlier run already sent this file in full."
)
@_session_options
def run(
    input_path: Path,
    api_url: str | None,
    imp_key: str | None,
    imp_secret: str | None,
    imp_secret_file: Path | None,
    tier_code: str | None,
    concurrency: int,
    rate: float,
    max_attempts: int,
    timeout: float,
    out_dir: Path | None,
    encoding: str | None,
    delimiter: str | None,
    output_encoding: str,
    insecure_http: bool,
    strict: bool,
    dry_run: bool,
    force: bool,
    retry_failed: bool,
    max_errors: str | None,
    deadline: str | None,
    deadline_in: str | None,
    yes: bool,
    no_progress: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    """Change the status of every order listed in INPUT, a CSV of imp_uid,status rows.

    Status is DELIVERY_START, PURCHASE_DECISION or CANCELED (or 배송시작, 구매확정, 취소).
    Writes results.csv, failures.csv, summary.json and summary.md into the output folder.
    Exit codes: 0 all succeeded, 1 some rows failed or were invalid, 2 usage or input error
    (nothing sent), 3 aborted (e.g. authentication failed), 130 interrupted.

    Without --api-url the rows go to the embedded sandbox: nothing real changes. An --out
    folder holding a run that stopped is resumed (same INPUT only); see also `resume`.

    \b
    Examples:
        payco-batch run sample_data/orders.csv
        payco-batch run orders.csv --dry-run
        IMP_KEY=... IMP_SECRET=... payco-batch run orders.csv --api-url https://api.iamport.kr
    """
    config = RunConfig(
        input_path=input_path,
        api_url=api_url.rstrip("/") if api_url else None,
        credentials=_credentials(imp_key, imp_secret, imp_secret_file),
        tier_code=tier_code or None,
        concurrency=concurrency,
        rate=rate,
        max_attempts=max_attempts,
        timeout=timeout,
        out_dir=out_dir,
        encoding=encoding,
        delimiter=delimiter,
        output_encoding=output_encoding,
        insecure_http=insecure_http,
        strict=strict,
        dry_run=dry_run,
        retry_failed=retry_failed,
        force=force,
        **_safeguards(max_errors, deadline, deadline_in),
    )
    _run_job(config, yes=yes, no_progress=no_progress, verbose=verbose, as_json=as_json)


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@_input_options
def validate(input_path: Path, encoding: str | None, delimiter: str | None) -> None:
    """Check INPUT without sending anything: list its invalid rows and what a run would send.

    Exit codes: 0 every row is valid, 1 some rows are invalid, 2 the file cannot be read.

    \b
    Example:
        payco-batch validate orders.csv
    """
    try:
        orders, validation = check_file(input_path, encoding, delimiter)
    except PaycoBatchError as error:
        _fail(error)
    terminal.show_validation(orders, validation)
    sys.exit(int(ExitCode.FAILURES if validation.count(INVALID) else ExitCode.OK))


@cli.command()
@click.argument("run_folder", type=click.Path(path_type=Path, file_okay=False))
@_credential_options
@_session_options
def resume(
    run_folder: Path,
    imp_key: str | None,
    imp_secret: str | None,
    imp_secret_file: Path | None,
    tier_code: str | None,
    retry_failed: bool,
    max_errors: str | None,
    deadline: str | None,
    deadline_in: str | None,
    yes: bool,
    no_progress: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    """Continue the run in RUN_FOLDER: send the rows it did not finish, then rewrite its reports.

    The input file and the options come from the run's journal; the credentials, as for
    `run`, from IMP_KEY and IMP_SECRET. Rows with a final outcome are not sent again; rows
    whose request was in flight when the run stopped are, and are flagged `resent`.

    \b
    Example:
        payco-batch resume reports/20261204-180000-orders
        payco-batch resume reports/20261204-180000-orders --retry-failed
    """
    try:
        input_path, options = input_of(run_folder)
    except PaycoBatchError as error:
        _fail(error)
    config = RunConfig(
        input_path=input_path,
        api_url=options.get("api_url"),
        credentials=_credentials(imp_key or options.get("imp_key"), imp_secret, imp_secret_file),
        tier_code=tier_code or options.get("tier_code"),
        concurrency=options.get("concurrency", DEFAULT_CONCURRENCY),
        rate=options.get("rate", DEFAULT_RATE),
        max_attempts=options.get("max_attempts", DEFAULT_MAX_ATTEMPTS),
        timeout=options.get("timeout", DEFAULT_TIMEOUT),
        out_dir=run_folder,
        encoding=options.get("encoding"),
        delimiter=options.get("delimiter"),
        output_encoding=options.get("output_encoding", "utf-8-sig"),
        insecure_http=options.get("insecure_http", False),
        strict=options.get("strict", False),
        retry_failed=retry_failed,
        **_safeguards(max_errors, deadline, deadline_in),
    )
    _run_job(config, yes=yes, no_progress=no_progress, verbose=verbose, as_json=as_json)


def _run_job(
    config: RunConfig, *, yes: bool, no_progress: bool, verbose: bool, as_json: bool
) -> NoReturn:
    """Prepare, confirm, execute and report one run; exit with its code."""
    if verbose:
        terminal.log_requests()
    stop = StopSignal()
    plan = None
    try:
        plan = prepare(config)
        terminal.show_invalid_rows(plan)
        if plan.resuming:
            click.echo(
                f"resuming {plan.out_dir}: {plan.rows_to_send} rows to send"
                + (
                    f", {len(plan.resent)} of them again (in flight when it stopped)"
                    if plan.resent
                    else ""
                )
                + ".",
                err=True,
            )
        _confirm(plan, yes)
        if plan.config.uses_sandbox and plan.rows_to_send:
            click.echo(
                "sandbox: no real orders are changed (give --api-url to reach iamport).", err=True
            )
        with (
            terminal.stop_on_signals(stop),
            terminal.progress_bar(
                plan, enabled=not no_progress and not config.dry_run
            ) as on_outcome,
        ):
            result = execute(plan, on_outcome=on_outcome, stop=stop)
    except PaycoBatchError as error:
        _fail(error)
    except KeyboardInterrupt:
        # Ctrl-C while loading, or once more while the reports were being written.
        journal = plan.out_dir / JOURNAL_NAME if plan is not None else None
        if journal is not None and journal.exists():
            click.echo(
                "\npayco-batch: interrupted before the reports were complete; the journal "
                f"keeps every row's fate: payco-batch resume {plan.out_dir}",
                err=True,
            )
        else:
            click.echo("\npayco-batch: interrupted: nothing was sent.", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    summary = result.summary
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        click.echo(terminal.human_summary(result))
    if summary["aborted_because"]:
        click.echo(f"payco-batch: aborted: {summary['aborted_because']}", err=True)
    if summary["interrupted"]:
        not_sent = summary["outcomes"]["not_sent"]
        click.echo(f"payco-batch: interrupted: {not_sent} rows were not sent.", err=True)
    if summary["unknown_explained"]:
        unknown = summary["outcomes"]["unknown"]
        click.echo(f"payco-batch: {unknown} rows have an unknown outcome. ", err=True, nl=False)
        click.echo(summary["unknown_explained"], err=True)
    if summary["resume_command"]:
        click.echo(f"payco-batch: to finish the run: {summary['resume_command']}", err=True)
    sys.exit(int(result.exit_code))


def _safeguards(max_errors: str | None, deadline: str | None, deadline_in: str | None) -> dict:
    """--max-errors, --deadline and --deadline-in, checked, as RunConfig fields."""
    try:
        if deadline and deadline_in:
            raise ConfigError("give --deadline or --deadline-in, not both.")
        now = datetime.now().astimezone()
        at = None
        if deadline:
            at = parse_deadline(deadline, now)
        elif deadline_in:
            at = now + parse_duration(deadline_in)
        return {"max_errors": ErrorBudgetSpec.parse(max_errors), "deadline": at}
    except ConfigError as error:
        _fail(error)


def _credentials(
    imp_key: str | None, imp_secret: str | None, imp_secret_file: Path | None
) -> Credentials | None:
    """The credentials from the options, the environment or the secret file.

    A secret typed on the command line is visible in the shell's history and, while the
    run lasts, to anyone who lists the processes: say so.
    """
    source = click.get_current_context().get_parameter_source("imp_secret")
    if imp_secret_file is not None:
        if source is ParameterSource.COMMANDLINE:
            _fail(ConfigError("give --imp-secret or --imp-secret-file, not both."))
        try:
            lines = imp_secret_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            _fail(ConfigError(f"the secret file {imp_secret_file} cannot be read: {reason}."))
        imp_secret = lines[0].strip() if lines else ""
        if not imp_secret:
            _fail(ConfigError(f"the secret file {imp_secret_file} is empty."))
    elif source is ParameterSource.COMMANDLINE:
        click.echo(
            "payco-batch: warning: --imp-secret on the command line is visible in your shell "
            "history and to other users of this machine; use the IMP_SECRET environment "
            "variable or --imp-secret-file instead.",
            err=True,
        )
    return Credentials(imp_key or "", imp_secret or "") if imp_key or imp_secret else None


@cli.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
@click.option(
    "--token-ttl",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TOKEN_TTL,
    show_default=True,
    help="Token lifetime in seconds.",
)
@click.option(
    "--orders",
    "orders_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="CSV of imp_uid,pg,state to preload (other ids follow the rules above).",
)
@click.option("--error-rate", type=_RATE, default=0.0, help="Share of requests answered 500/503.")
@click.option(
    "--throttle",
    type=click.FloatRange(min=0, min_open=True),
    help="Requests per second allowed; beyond it, 429 with Retry-After.",
)
@click.option("--latency", type=click.FloatRange(min=0), default=0.0, help="Added delay, ms.")
@click.option("--jitter", type=click.FloatRange(min=0), default=0.0, help="Delay +/- up to, ms.")
@click.option(
    "--hang-rate", type=_RATE, default=0.0, help="Share of requests never answered in time."
)
@click.option(
    "--drop-rate", type=_RATE, default=0.0, help="Share of connections closed unanswered."
)
@click.option("--seed", type=int, help="Seed for the faults, to replay the same run.")
def sandbox(
    host: str,
    port: int,
    token_ttl: float,
    orders_file: Path | None,
    error_rate: float,
    throttle: float | None,
    latency: float,
    jitter: float,
    hang_rate: float,
    drop_rate: float,
    seed: int | None,
) -> None:
    """Serve the iamport sandbox in the foreground until Ctrl-C: no real order is touched.

    Same paths and answers as iamport for getToken and the PAYCO status call. Made-up
    imp_uids have fixed fates: ending in 404, no such payment; in 777, not PAYCO; in 0,
    already shipped (DELIVERY_START); any other, a PAYCO order in PAID. Audit at
    /__sandbox__/stats and /__sandbox__/orders/<imp_uid>.

    \b
    Example:
        payco-batch sandbox --port 8700 --error-rate 0.05 --latency 50
        payco-batch run orders.csv --api-url http://127.0.0.1:8700 \\
            --imp-key sandbox_key --imp-secret sandbox_secret
    """
    from batch.sandbox.api import SANDBOX_KEY, SANDBOX_SECRET, Sandbox, SandboxSettings
    from batch.sandbox.faults import FaultSettings
    from batch.sandbox.orders import OrdersFileError, load_orders_file
    from batch.sandbox.server import bind, serve_forever, url_of

    try:
        orders = load_orders_file(orders_file) if orders_file else None
        faults = FaultSettings(
            error_rate=error_rate,
            throttle=throttle,
            latency_ms=latency,
            jitter_ms=jitter,
            hang_rate=hang_rate,
            drop_rate=drop_rate,
            seed=seed,
        )
        sock = bind(host, port)
    except (OrdersFileError, SandboxStartError) as error:
        _fail(error)
    url = url_of(sock)
    if not is_loopback(url):
        click.echo(f"warning: listening on {host}, reachable from other machines.", err=True)
    settings = SandboxSettings(token_ttl=token_ttl, faults=faults, orders=orders)
    click.echo(f"iamport sandbox on {url} (no real orders are changed)")
    click.echo(f"  imp_key: {SANDBOX_KEY}   imp_secret: {SANDBOX_SECRET}")
    click.echo(f"  faults: {faults.describe()}; token lifetime {token_ttl:g} s")
    click.echo(f"  audit: {url}/__sandbox__/stats   Ctrl-C to stop")
    try:
        serve_forever(Sandbox(settings), sock)
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, once it has stopped
        pass
    click.echo("sandbox stopped.")


def _fail(error: Exception) -> NoReturn:
    click.echo(f"payco-batch: error: {error}", err=True)
    sys.exit(int(_EXIT_CODE_FOR_ERROR.get(type(error), ExitCode.USAGE)))


def _confirm(plan: Plan, yes: bool) -> None:
    """Ask before changing orders anywhere but this machine, unless --yes."""
    config = plan.config
    if yes or not plan.rows_to_send or not config.changes_real_orders:
        return
    counts = ", ".join(f"{n} {s}" for s, n in plan.validation.status_counts().items() if n)
    if not _stdin_is_a_terminal():
        raise ConfirmationRequired(
            f"this would change {plan.rows_to_send} real orders on {config.api_url} and there is "
            "no terminal to confirm it; pass --yes to run unattended."
        )
    click.echo(
        f"About to change {plan.rows_to_send} orders on {config.api_url}: {counts}.", err=True
    )
    try:
        confirmed = click.confirm("Send them?", default=False, err=True)
    except click.Abort:  # Ctrl-C or end of input at the prompt: a "no", not a crash
        confirmed = False
    if not confirmed:
        raise ConfirmationRequired("cancelled: nothing was sent.")


def _stdin_is_a_terminal() -> bool:
    return sys.stdin.isatty()
