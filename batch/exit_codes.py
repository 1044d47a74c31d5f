"""The process exit codes, in one place, and the pure rule that picks one for a run."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    """Every row succeeded (a duplicate of a succeeded row counts as succeeded)."""
    FAILURES = 1
    """The run finished, but some rows failed, were invalid or were not sent."""
    USAGE = 2
    """Usage or input error: nothing was sent."""
    ABORTED = 3
    """The run was stopped early, e.g. authentication failed; unsent rows are not_sent."""
    INTERRUPTED = 130
    """Ctrl-C or SIGTERM. 128 + SIGINT, the code shells use for a process killed by Ctrl-C."""


def exit_code_for(
    outcome_counts: Mapping[str, int],
    *,
    failed_duplicates: int = 0,
    dry_run: bool = False,
    aborted: bool = False,
    interrupted: bool = False,
) -> ExitCode:
    """Pick the exit code from a run's outcome counts.

    `failed_duplicates` is the number of `duplicate` rows whose original row failed or
    has an unknown outcome. In a dry run nothing is meant to be sent, so `not_sent` is no
    failure there.
    """
    if interrupted:
        return ExitCode.INTERRUPTED
    if aborted:
        return ExitCode.ABORTED
    bad = (
        outcome_counts.get("failed", 0)
        + outcome_counts.get("unknown", 0)
        + outcome_counts.get("invalid", 0)
        + failed_duplicates
    )
    if not dry_run:
        bad += outcome_counts.get("not_sent", 0)
    return ExitCode.FAILURES if bad else ExitCode.OK
