"""(e) Scale: a million rows, and memory that grows with the input only.

One input of 1,000,000 valid rows is generated once, with the columns of
sample_data/orders.csv (imp_uid, status and four carried columns), into the scratch folder.

- Load + validate: `batch.inputs.load_orders` + `batch.validation.validate_orders` in a fresh
  process (benchmarks/workers.py `load`), timed from after the imports. Goal: 2 s. The same
  on a minimal file of the same rows (imp_uid and status only) is reported beside it.
- The whole dry run with its reports: `payco-batch run FILE --dry-run --out DIR
  --no-progress` as a subprocess, wall time (goal 10 s) and peak RSS (goal 300 MiB), the
  RSS from wait4's ru_maxrss of the process (run under benchmarks/launcher.py).
- Peak RSS of real runs of 200,000 and of 20,000 rows against a fresh sandbox (`--rate 0
  --concurrency 50`), and their difference. As the baseline measured in the same run, the
  dry runs of the same two files: a dry run holds the input frame and builds the same
  reports, with nothing sent. Memory must not grow with results beyond that: goal, the real
  runs' difference at most 1.1 times the dry runs'. The RSS sampled during sending (window
  from the journal) shows when the growth happens.
"""

from __future__ import annotations

import shutil

from benchmarks.common import (
    BenchmarkError,
    CaseResult,
    Context,
    at_most,
    median,
    ratios,
    read_summary,
    sending_window,
    write_orders,
)

CASE = "e"
NAME = "scale"
TITLE = "Scale: 1,000,000 rows; peak RSS of 200,000 against 20,000 real rows"
SIZES = {
    "full": {"big": 1_000_000, "real_large": 200_000, "real_small": 20_000},
    "quick": {"big": 20_000, "real_large": 2_000, "real_small": 200},
}
LOAD_GOAL_S = 2.0
DRY_RUN_GOAL_S = 10.0
DRY_RUN_RSS_GOAL_MIB = 300.0
GROWTH_GOAL = 1.1
MIB = 1024 * 1024


def run(ctx: Context) -> CaseResult:
    sizes = SIZES["quick" if ctx.quick else "full"]
    big, large, small = sizes["big"], sizes["real_large"], sizes["real_small"]
    result = CaseResult(
        CASE,
        TITLE,
        {
            "rows": sizes,
            "columns": "imp_uid,status,merchant_uid,buyer_name,product,amount",
            "load_validate": "fresh process, timed after the imports",
            "dry_run": "payco-batch CLI as a subprocess, reports written",
            "real_runs": "payco-batch CLI as a subprocess, --rate 0 --concurrency 50, "
            "fresh sandbox each",
            "rss": "ru_maxrss of the payco-batch process (wait4), under a small launcher",
        },
    )
    data = ctx.folder("e-data")
    ctx.log(f"  (e) writing {big:,} rows ...")
    big_file = write_orders(data / "big.csv", big)
    minimal_file = write_orders(data / "big-minimal.csv", big, minimal=True)
    large_file = write_orders(data / "large.csv", large)
    small_file = write_orders(data / "small.csv", small)
    result.settings["input_mib"] = round(big_file.stat().st_size / MIB, 1)

    for i in range(ctx.runs):
        figures: dict = {}
        # Load + validate, on the realistic file and on the minimal one.
        for name, path in (("load", big_file), ("load_minimal", minimal_file)):
            r = ctx.worker("load", {"input": str(path)}, timeout=60 + big / 5000).result()
            if r["valid"] != big:
                raise BenchmarkError(f"{r['valid']} of {big} generated rows were valid")
            figures[name] = r
        # The whole dry run of the big file.
        out = ctx.folder(f"e{i}-dry-big")
        m = ctx.payco_batch(big_file, out, "--dry-run", timeout=120 + big / 2000)
        figures["dry_big"] = {"wall_s": m.wall_s, "cpu_s": m.cpu_s, "maxrss_mib": m.maxrss_mib}
        shutil.rmtree(out, ignore_errors=True)
        # Dry and real runs of the two smaller files.
        for label, path, rows in (("small", small_file, small), ("large", large_file, large)):
            out = ctx.folder(f"e{i}-dry-{label}")
            m = ctx.payco_batch(path, out, "--dry-run", timeout=120 + rows / 2000)
            figures[f"dry_{label}"] = {"wall_s": m.wall_s, "maxrss_mib": m.maxrss_mib}
            shutil.rmtree(out, ignore_errors=True)
            out = ctx.folder(f"e{i}-real-{label}")
            with ctx.sandbox() as sandbox:
                m = ctx.payco_batch(
                    path,
                    out,
                    "--rate",
                    "0",
                    "--concurrency",
                    "50",
                    api_url=sandbox.url,
                    timeout=120 + rows / 100,
                )
            summary = read_summary(out)
            window = sending_window(out)
            sending_rss = None if window is None else m.max_rss_between(*window)
            figures[f"real_{label}"] = {
                "rows": rows,
                "succeeded": summary["outcomes"]["succeeded"],
                "wall_s": m.wall_s,
                "rps": summary["requests"]["per_second"],
                "maxrss_mib": m.maxrss_mib,
                "sending_rss_mib": None if sending_rss is None else sending_rss / 1024,
            }
            shutil.rmtree(out, ignore_errors=True)
        result.runs.append(figures)
        ctx.log(
            f"  (e) run {i + 1}/{ctx.runs}: "
            f"load+validate {figures['load']['load_validate_s']:.2f} s, "
            f"dry run {figures['dry_big']['wall_s']:.1f} s / "
            f"{figures['dry_big']['maxrss_mib']:,.0f} MiB, real {large:,} rows "
            f"{figures['real_large']['maxrss_mib']:,.0f} MiB, {small:,} rows "
            f"{figures['real_small']['maxrss_mib']:,.0f} MiB"
        )

    def per(group: str, key: str) -> list:
        return [r[group][key] for r in result.runs]

    result.add(
        f"load + validate {big:,} rows", per("load", "load_validate_s"), "s", at_most(LOAD_GOAL_S)
    )
    result.add("  of which load_orders", per("load", "load_s"), "s")
    result.add("  of which validate_orders", per("load", "validate_s"), "s")
    result.add(
        "load + validate, imp_uid,status only",
        per("load_minimal", "load_validate_s"),
        "s",
        note="load "
        + " · ".join(f"{x:.2f}" for x in per("load_minimal", "load_s"))
        + " s, validate "
        + " · ".join(f"{x:.2f}" for x in per("load_minimal", "validate_s"))
        + " s",
    )
    result.add(
        "input frame in memory",
        [r["load"]["frame_bytes"] / MIB for r in result.runs],
        "MiB",
        note="pandas memory_usage(deep=True) of the loaded frame; validation's frame "
        + " · ".join(f"{r['load']['validation_bytes'] / MIB:,.0f}" for r in result.runs)
        + " MiB",
    )
    result.add(
        f"dry run {big:,} rows, wall", per("dry_big", "wall_s"), "s", at_most(DRY_RUN_GOAL_S)
    )
    result.add(
        f"dry run {big:,} rows, peak RSS",
        per("dry_big", "maxrss_mib"),
        "MiB",
        at_most(DRY_RUN_RSS_GOAL_MIB),
    )
    large_rss, small_rss = per("real_large", "maxrss_mib"), per("real_small", "maxrss_mib")
    real_growth = [a - b for a, b in zip(large_rss, small_rss, strict=True)]
    dry_growth = [
        a - b
        for a, b in zip(per("dry_large", "maxrss_mib"), per("dry_small", "maxrss_mib"), strict=True)
    ]
    result.add(f"real run {large:,} rows, peak RSS", large_rss, "MiB")
    result.add(f"real run {small:,} rows, peak RSS", small_rss, "MiB")
    result.add(
        "difference (real runs)",
        real_growth,
        "MiB",
        note=f"{median(real_growth) * MIB / (large - small):,.0f} bytes per extra row",
    )
    result.add(
        f"real run {large:,} rows, peak RSS while sending",
        per("real_large", "sending_rss_mib"),
        "MiB",
        note="sampled every 50 ms in the sending window; "
        f"{small:,} rows: "
        + " · ".join(
            "-" if x is None else f"{x:,.0f}" for x in per("real_small", "sending_rss_mib")
        )
        + " MiB",
    )
    result.add(f"dry run {large:,} rows, peak RSS", per("dry_large", "maxrss_mib"), "MiB")
    result.add(f"dry run {small:,} rows, peak RSS", per("dry_small", "maxrss_mib"), "MiB")
    result.add("difference (dry runs)", dry_growth, "MiB")
    result.add(
        "growth real / growth dry",
        ratios(real_growth, dry_growth),
        "x",
        at_most(GROWTH_GOAL),
        note="the real runs' RSS difference over the dry runs' (input frame + reports)",
    )
    result.add(
        f"real run {large:,} rows, requests/s",
        per("real_large", "rps"),
        "req/s",
        note=f"{large:,} rows took "
        + " · ".join(f"{x:,.0f}" for x in per("real_large", "wall_s"))
        + " s",
    )
    return result
