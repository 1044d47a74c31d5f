"""The options of one run, checked, in one object the CLI builds and the core reads."""

from __future__ import annotations

import codecs
import ipaddress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batch.client import REAL_API_URL, Credentials
from batch.errors import ConfigError
from batch.safeguards import ErrorBudgetSpec

DEFAULT_CONCURRENCY = 8
DEFAULT_RATE = 20.0
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_TIMEOUT = 30.0
DEFAULT_REPORTS_FOLDER = Path("reports")


@dataclass(frozen=True)
class RunConfig:
    input_path: Path
    api_url: str | None = None
    credentials: Credentials | None = None
    tier_code: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    rate: float = DEFAULT_RATE  # requests per second across all workers; 0 means no limit
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout: float = DEFAULT_TIMEOUT
    out_dir: Path | None = None
    encoding: str | None = None
    delimiter: str | None = None  # None: found from the header line
    output_encoding: str = "utf-8-sig"  # with a BOM, so that Excel reads Korean right
    insecure_http: bool = False  # allow plain http to a host other than this machine
    strict: bool = False
    dry_run: bool = False
    retry_failed: bool = False  # on resume, also resend rows that failed for a passing reason
    force: bool = False  # send even if an earlier run already succeeded with this input
    max_errors: ErrorBudgetSpec = ErrorBudgetSpec()
    deadline: datetime | None = None  # stop starting rows at this local time

    def check(self) -> None:
        """Raise ConfigError unless these options make a runnable job."""
        if self.concurrency < 1:
            raise ConfigError("--concurrency must be at least 1.")
        if self.rate < 0:
            raise ConfigError("--rate must be positive, or 0 for no limit.")
        if self.max_attempts < 1:
            raise ConfigError("--max-attempts must be at least 1.")
        if self.timeout <= 0:
            raise ConfigError("--timeout must be more than 0 seconds.")
        if self.api_url is not None:
            check_api_url(self.api_url)
            if (
                urlsplit(self.api_url).scheme == "http"
                and not is_loopback(self.api_url)
                and not self.insecure_http
            ):
                raise ConfigError(
                    "plain http would send the secret and the token unencrypted: use https, "
                    "or --insecure-http if this network is trusted."
                )
        try:
            codecs.lookup(self.output_encoding)
        except LookupError:
            raise ConfigError(
                f"--output-encoding {self.output_encoding!r} is not an encoding Python knows."
            ) from None
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ConfigError(f"--delimiter must be one character, not {self.delimiter!r}.")
        if self.dry_run or self.uses_sandbox:
            return
        if self.credentials is None or not (
            self.credentials.imp_key and self.credentials.imp_secret
        ):
            raise ConfigError(
                "no credentials: set IMP_KEY and IMP_SECRET (or --imp-key and --imp-secret)."
            )

    @property
    def uses_sandbox(self) -> bool:
        """No --api-url: rows go to the embedded sandbox, where no real order can change."""
        return self.api_url is None and not self.dry_run

    @property
    def changes_real_orders(self) -> bool:
        """Orders elsewhere than on this machine (the sandbox, a local server) may change."""
        return not self.dry_run and self.api_url is not None and not is_loopback(self.api_url)

    @property
    def target(self) -> str:
        if self.api_url:
            return self.api_url
        return "sandbox" if self.uses_sandbox else "none"

    def public_options(self) -> dict[str, Any]:
        """The options as recorded in the reports: never the secret."""
        return {
            "api_url": self.api_url,
            "imp_key": self.credentials.imp_key if self.credentials else None,
            "tier_code": self.tier_code,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "max_attempts": self.max_attempts,
            "timeout": self.timeout,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "output_encoding": self.output_encoding,
            "insecure_http": self.insecure_http,
            "strict": self.strict,
            "dry_run": self.dry_run,
            "retry_failed": self.retry_failed,
            "force": self.force,
            "max_errors": self.max_errors.describe(),
            "deadline": self.deadline.isoformat(timespec="minutes") if self.deadline else None,
        }


def check_api_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"--api-url must be an http or https URL such as {REAL_API_URL}, not {url!r}."
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError("--api-url must hold only a scheme, a host, a port and a path.")


def is_loopback(url: str) -> bool:
    """True when `url` points at this machine, where no real order can change."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
