"""The benchmark suite still runs: its quick version of two cases, as a subprocess.

No timing is asserted (that is the suite's own job, on a quiet machine): only that it
completes, prints its tables with a verdict, and writes figures to its JSON. It starts the
real sandbox on 127.0.0.1 and stops it; about 6 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the benchmarks need Linux (CPU pinning, /proc)"
)


def test_quick_suite_runs_and_reports_figures(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "c,naive", "--json", report],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # 0: every goal met, 1: some missed; both mean it ran. Quick figures are not judged here.
    assert completed.returncode in (0, 1), completed.stdout + completed.stderr
    assert "(c) Rate accuracy" in completed.stdout
    assert "(d) Naive baseline" in completed.stdout
    assert "PASS" in completed.stdout or "FAIL" in completed.stdout

    results = json.loads(report.read_text())
    assert results["quick"] is True
    assert set(results["cases"]) == {"c", "d"}
    for case in results["cases"].values():
        assert case["error"] is None
        assert case["figures"]
        for figure in case["figures"]:
            assert isinstance(figure["median"], int | float), figure
        assert any(figure["goal"] for figure in case["figures"])
