"""A Ray worker set-up hook for bench/warm.py: each worker process, once connected to Ray,
appends its pid, when the process started and when it was ready to $WARM_PROBE_LOG (a JSON line).
Bench-only: the tool itself sets no hook."""

from __future__ import annotations

import json
import os
import time


def started() -> None:
    now = time.time()
    with open("/proc/self/stat") as stat:  # field 22, after the command name in parentheses
        ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as uptime:
        age = float(uptime.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
    with open(os.environ["WARM_PROBE_LOG"], "a") as log:
        log.write(json.dumps({"pid": os.getpid(), "process_start": now - age, "ready": now}) + "\n")
