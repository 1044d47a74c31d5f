"""Run one command and measure it: wall time, CPU time, peak RSS, a timeline of CPU and RSS.

    python -S benchmarks/launcher.py REPORT_JSON INTERVAL -- COMMAND [ARGS...]

Run by benchmarks/common.py (`run_measured`), not by hand. It is a tiny process (standard
library only, no site packages) that forks and execs the command, samples the command's
/proc/<pid>/stat and statm every INTERVAL seconds, waits for it with wait4 and writes what it
measured to REPORT_JSON. Being small matters: Linux carries a parent's peak RSS into its
forked child's ru_maxrss, so the command must be the child of a small process to have its
own peak measured. SIGTERM and SIGINT are passed on to the command.
"""

import json
import os
import select
import signal
import sys
import time


def main() -> int:
    report_path, interval = sys.argv[1], float(sys.argv[2])
    argv = sys.argv[sys.argv.index("--") + 1 :]
    clock_ticks = os.sysconf("SC_CLK_TCK")
    page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
    started_at = time.time()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)

    def forward(signum, frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    # A pidfd becomes readable the moment the command ends: no sampling interval lost.
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    samples = []
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        try:
            with open(f"/proc/{pid}/stat") as file:
                stat = file.read()
            with open(f"/proc/{pid}/statm") as file:
                resident = int(file.read().split()[1])
            fields = stat[stat.rindex(")") + 2 :].split()
            cpu = (int(fields[11]) + int(fields[12])) / clock_ticks
            samples.append((time.time(), cpu, resident * page_kib))
        except (OSError, ValueError, IndexError):
            pass
        if pidfd is None:
            time.sleep(interval)
        else:
            select.select([pidfd], [], [], interval)
    wall = time.monotonic() - started
    report = {
        "returncode": os.waitstatus_to_exitcode(status),
        "wall_s": wall,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "maxrss_kib": usage.ru_maxrss,
        "started_at": started_at,
        "samples": samples,
    }
    with open(report_path, "w") as file:
        json.dump(report, file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
