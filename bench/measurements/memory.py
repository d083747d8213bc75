"""The benchmark's measurement `memory`: daemon memory over many polls."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from environment import Environment
from framework import BENCH, Figure, Sizes, progress


def figures(env: Environment, sizes: Sizes) -> list[Figure]:
    progress(f"daemon memory over {sizes.memory_polls} polls")
    user = env.add_user("memory", sizes.small)
    config_path = env.config_file("memory", mode="auto", look_back_days=7, person_window_days=0,
                             max_replies_per_hour=100_000, max_replies_per_day=100_000)
    done = subprocess.run([sys.executable, str(BENCH / "daemon_memory.py"), str(config_path),
                           str(sizes.memory_polls), str(user.maildir.path), str(user.maildir.uid),
                           str(user.maildir.gid)], capture_output=True, text=True,
                          timeout=1800, check=False, env=dict(os.environ))
    if done.returncode != 0:
        raise RuntimeError(f"daemon_memory.py failed: {done.stderr.strip()[-800:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    first, last = result["rss_first"], result["rss_last"]
    growth = last - first
    checkpoints = ", ".join(f"{n}: {rss:.1f}" for n, rss in result["checkpoints"])
    return [Figure(f"daemon memory after {sizes.memory_polls} polls (growth)", growth, "MB",
                   first, last / first, "growth <= 5 MB; <= 80 MB total",
                   growth <= 5 and last <= 80,
                   [f"RSS after the first poll {first:.1f} MB, after the last {last:.1f} MB "
                    f"(baseline column: the first; ratio: last / first)",
                    f"RSS in MB after poll n: {checkpoints}",
                    f"{result['seconds'] / sizes.memory_polls * 1000:.1f} ms per poll; "
                    f"{result['handled']} messages handled and {result['sent']} replies sent "
                    "(the first poll handles the folder's last week; 5 new messages arrive "
                    "every 1/20 of the run)"])]
