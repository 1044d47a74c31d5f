"""The client-side workloads, each run in a fresh process pinned to the client CPU.

    python -m benchmarks.workers KIND JSON_ARGS

Run by the cases through `common.run_measured`, not by hand. Each prints one JSON object,
its figures, as the last line of stdout. Kinds:

- `payco`: a payco-batch run through its Python API (`batch.job.prepare` and `execute`,
  what the CLI calls, without click and the progress bar), timing its phases: prepare, the
  sending (`send_rows`) and the reports, in wall and CPU time.
- `httpx`: the bare minimum payco-batch's sending does: POST every row's status call with a
  fixed token through `batch.client.open_http_client` (same limits and transport), from
  `concurrency` asyncio workers; no rate limiter, journal, retries or answer parsing.
- `aiohttp`: the same loop on aiohttp (needs `pip install aiohttp`).
- `naive`: what the official iamport Python client does: one request after another, a new
  token (POST /users/getToken) before every status call, over one keep-alive connection.
- `load`: `batch.inputs.load_orders` + `batch.validation.validate_orders`, timed.

Every loop here is bounded by its input's rows and by the caller's timeout.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
import time
from pathlib import Path

WORKER_TIMEOUT = 30.0  # seconds per request, as payco-batch's default


def read_rows(path: str) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file)
        next(reader)
        return [(row[0], row[1]) for row in reader]


def payco(args: dict) -> dict:
    import batch.job as job
    from batch.client import Credentials
    from batch.config import RunConfig
    from batch.sandbox.api import SANDBOX_KEY, SANDBOX_SECRET

    phases: dict[str, float] = {}
    send_rows, write_reports = job.send_rows, job._write_reports

    # Measurement only: wrap the two phases to time them; nothing else changes.
    async def timed_send_rows(*a, **k):
        phases["send_start_wall"], phases["send_start_cpu"] = (
            time.perf_counter(),
            time.process_time(),
        )
        try:
            return await send_rows(*a, **k)
        finally:
            phases["send_end_wall"], phases["send_end_cpu"] = (
                time.perf_counter(),
                time.process_time(),
            )

    def timed_write_reports(*a, **k):
        phases["reports_start_wall"], phases["reports_start_cpu"] = (
            time.perf_counter(),
            time.process_time(),
        )
        return write_reports(*a, **k)

    job.send_rows, job._write_reports = timed_send_rows, timed_write_reports
    config = RunConfig(
        input_path=Path(args["input"]),
        api_url=args["api_url"],
        credentials=Credentials(SANDBOX_KEY, SANDBOX_SECRET),
        concurrency=args["concurrency"],
        rate=args["rate"],
        out_dir=Path(args["out"]),
    )
    wall0, cpu0 = time.perf_counter(), time.process_time()
    plan = job.prepare(config)
    wall1, cpu1 = time.perf_counter(), time.process_time()
    result = job.execute(plan)
    wall2, cpu2 = time.perf_counter(), time.process_time()
    summary = result.summary
    return {
        "rows": summary["input"]["rows"],
        "requests": summary["requests"]["total"],
        "outcomes": summary["outcomes"],
        "exit_code": int(result.exit_code),
        "summary_per_second": summary["requests"]["per_second"],
        "prepare_wall_s": wall1 - wall0,
        "prepare_cpu_s": cpu1 - cpu0,
        "send_wall_s": phases["send_end_wall"] - phases["send_start_wall"],
        "send_cpu_s": phases["send_end_cpu"] - phases["send_start_cpu"],
        "reports_wall_s": wall2 - phases["reports_start_wall"],
        "reports_cpu_s": cpu2 - phases["reports_start_cpu"],
        "execute_wall_s": wall2 - wall1,
        "total_wall_s": wall2 - wall0,
        "total_cpu_s": cpu2 - cpu0,
    }


def bare_httpx(args: dict) -> dict:
    from batch.client import open_http_client
    from batch.sandbox.api import SANDBOX_KEY, SANDBOX_SECRET

    rows = read_rows(args["input"])
    concurrency = args["concurrency"]

    async def main() -> dict:
        async with open_http_client(
            args["api_url"], concurrency=concurrency, timeout=WORKER_TIMEOUT
        ) as http:
            reply = await http.post(
                "/users/getToken", json={"imp_key": SANDBOX_KEY, "imp_secret": SANDBOX_SECRET}
            )
            headers = {"Authorization": f"Bearer {reply.json()['response']['access_token']}"}
            queue = iter(rows)
            failed = 0

            async def worker() -> None:
                nonlocal failed
                for imp_uid, status in queue:
                    response = await http.post(
                        f"/payco/orders/status/{imp_uid}", json={"status": status}, headers=headers
                    )
                    failed += response.status_code != 200

            wall, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return _loop_result(len(rows), failed, wall, cpu)

    return asyncio.run(main())


def bare_aiohttp(args: dict) -> dict:
    import aiohttp

    from batch.sandbox.api import SANDBOX_KEY, SANDBOX_SECRET

    rows = read_rows(args["input"])
    concurrency = args["concurrency"]
    base = args["api_url"]

    async def main() -> dict:
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=WORKER_TIMEOUT)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async with session.post(
                base + "/users/getToken",
                json={"imp_key": SANDBOX_KEY, "imp_secret": SANDBOX_SECRET},
            ) as reply:
                token = (await reply.json())["response"]["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            queue = iter(rows)
            failed = 0

            async def worker() -> None:
                nonlocal failed
                for imp_uid, status in queue:
                    async with session.post(
                        f"{base}/payco/orders/status/{imp_uid}",
                        json={"status": status},
                        headers=headers,
                    ) as response:
                        await response.read()
                        failed += response.status != 200

            wall, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return _loop_result(len(rows), failed, wall, cpu)

    return asyncio.run(main())


def naive(args: dict) -> dict:
    import httpx

    from batch.sandbox.api import SANDBOX_KEY, SANDBOX_SECRET

    rows = read_rows(args["input"])
    credentials = {"imp_key": SANDBOX_KEY, "imp_secret": SANDBOX_SECRET}
    failed = 0
    with httpx.Client(base_url=args["api_url"], timeout=WORKER_TIMEOUT, trust_env=False) as http:
        wall, cpu = time.perf_counter(), time.process_time()
        for imp_uid, status in rows:
            token = http.post("/users/getToken", json=credentials).json()["response"]
            response = http.post(
                f"/payco/orders/status/{imp_uid}",
                json={"status": status},
                headers={"Authorization": token["access_token"]},
            )
            failed += response.status_code != 200 or response.json().get("code") != 0
    return _loop_result(len(rows), failed, wall, cpu) | {"token_requests": len(rows)}


def _loop_result(rows: int, failed: int, wall: float, cpu: float) -> dict:
    wall_s, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "requests": rows,
        "failed": failed,
        "send_wall_s": wall_s,
        "send_cpu_s": cpu_s,
        "per_second": rows / wall_s if wall_s else None,
    }


def load(args: dict) -> dict:
    t0 = time.perf_counter()
    from batch.inputs import load_orders
    from batch.validation import SEND, validate_orders

    t1 = time.perf_counter()
    orders = load_orders(args["input"])
    t2 = time.perf_counter()
    validation = validate_orders(orders)
    t3 = time.perf_counter()
    return {
        "rows": len(orders.frame),
        "valid": validation.count(SEND),
        "import_s": t1 - t0,
        "load_s": t2 - t1,
        "validate_s": t3 - t2,
        "load_validate_s": t3 - t1,
        "frame_bytes": int(orders.frame.memory_usage(deep=True).sum()),
        "validation_bytes": int(validation.frame.memory_usage(deep=True).sum()),
    }


KINDS = {
    "payco": payco,
    "httpx": bare_httpx,
    "aiohttp": bare_aiohttp,
    "naive": naive,
    "load": load,
}


def main(argv: list[str]) -> int:
    kind, args = argv[0], json.loads(argv[1])
    print(json.dumps(KINDS[kind](args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
