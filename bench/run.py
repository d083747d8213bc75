"""modbot's benchmark: ``python bench/run.py [--quick] [--json FILE] [--only NAME ...]``.

Starts a private Dovecot and an aiosmtpd sink on loopback, fills mailboxes by writing maildir
files, measures each figure next to a raw baseline taken in the same run, and prints a table.
See bench/README.md for what each row means.

Exit status: 0 when every figure ran (in ``--quick`` mode, whatever the timings); in full mode
1 when a target is missed; 2 when a measurement could not run at all.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENV_PYTHON = BENCH.parent / ".venv" / "bin" / "python"


def _use_project_venv() -> None:
    """Run under the project's .venv when started by a Python that lacks modbot's libraries."""
    if all(importlib.util.find_spec(name) for name in ("imapclient", "modbot", "trustme")):
        return
    if VENV_PYTHON.exists() and Path(sys.executable) != VENV_PYTHON:
        # Our own interpreter and script, with the same arguments: nothing from a shell.
        os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])  # noqa: S606
    sys.exit("bench: run it with the project's Python (.venv/bin/python), where modbot and "
             "its test extras are installed: pip install -e '.[test]'")


_use_project_venv()
# bench/ itself, and the test support package (tests/support/) that starts the servers.
sys.path[:0] = [str(BENCH), str(BENCH.parent / "tests")]

import framework  # noqa: E402
from environment import Environment  # noqa: E402
from framework import Figure, Sizes  # noqa: E402
from measurements import STEPS  # noqa: E402
from support.servers import ServerUnavailable  # noqa: E402


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "x":
        return f"{value:.2f}x"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def _ratio(figure: Figure) -> str:
    if figure.ratio is None:
        return "-"
    if figure.unit == "msg/s":
        return f"{figure.ratio:.0%}"
    return f"{figure.ratio:.2f}x"


def table(rows: list[Figure]) -> str:
    header = ("figure", "modbot", "baseline", "ratio", "target", "met")
    cells = [header] + [
        (f.name, _number(f.value, f.unit), _number(f.baseline, f.unit if f.unit != "x" else "x"),
         _ratio(f), f.target, "yes" if f.met else "NO")
        for f in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _measure(name: str, env: Environment, sizes: Sizes, profile: Path | None) -> list[Figure]:
    if profile is None:
        return STEPS[name](env, sizes)
    from pyinstrument import Profiler

    # The main thread only: blocking IMAP calls that modbot runs in worker threads show up as
    # time spent awaiting them.
    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        return STEPS[name](env, sizes)
    finally:
        profiler.stop()
        profile.mkdir(parents=True, exist_ok=True)
        (profile / f"{name}.txt").write_text(profiler.output_text(color=False),
                                             encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="scaled-down sizes, under a minute; exit 0 even if targets are missed")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the figures as JSON")
    parser.add_argument("--only", nargs="+", choices=sorted(STEPS), metavar="NAME",
                        help=f"run only these measurements: {', '.join(STEPS)}")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="profile each measurement with pyinstrument (pip install "
                             "pyinstrument) and write DIR/NAME.txt; timings are then slower")
    args = parser.parse_args(argv)
    sizes: Sizes = framework.QUICK if args.quick else framework.FULL
    logging.basicConfig(level=logging.WARNING)
    steps = [name for name in STEPS if not args.only or name in args.only]

    started = time.perf_counter()
    print(f"modbot benchmark ({'quick' if args.quick else 'full'}): folders of "
          f"{sizes.small:,} and {sizes.large:,} messages", file=sys.stderr)
    try:
        env = Environment.start()
    except ServerUnavailable as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    rows: list[Figure] = []
    failed: list[str] = []
    try:
        fill = time.perf_counter()
        env.add_user("small", sizes.small)
        env.add_user("large", sizes.large)
        print(f"  filled and indexed {sizes.small + sizes.large:,} messages in "
              f"{time.perf_counter() - fill:.1f} s", file=sys.stderr)
        for name in steps:
            try:
                rows.extend(_measure(name, env, sizes, args.profile))
            except Exception as exc:
                failed.append(name)
                traceback.print_exc()
                rows.append(Figure(f"{name}: could not be measured", None, "", None, None, "-",
                                   False, [f"{type(exc).__name__}: {exc}"]))
    finally:
        env.close()

    print()
    print(table(rows))
    print()
    for row in rows:
        for line in row.details:
            print(f"{row.name}: {line}")
    unmet = [row.name for row in rows if not row.met]
    print()
    print(f"{len(rows) - len(unmet)} of {len(rows)} targets met"
          + (": UNMET: " + "; ".join(unmet) if unmet else "")
          + f" ({time.perf_counter() - started:.0f} s)")
    if args.json:
        document = {
            "mode": "quick" if args.quick else "full",
            "sizes": {"small": sizes.small, "large": sizes.large},
            "machine": framework.dump_env_info(),
            "figures": [row.entry() for row in rows],
            "details": {row.name: row.details for row in rows if row.details},
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if failed:
        return 2
    if unmet and not args.quick:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
