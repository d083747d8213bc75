"""The benchmark's measurement `run-once`: whole process: modbot run-once against imapfilter."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import environment
from environment import Environment
from framework import Figure, Sizes, k, median, ms, perf, progress

_IMAPFILTER = """\
options.info = false
options.timeout = 60
-- imapfilter checks certificates only against /etc/ssl and its own store of accepted
-- certificates, which asks on a terminal; the benchmark's private CA is in neither.
options.certificates = false
options.hostnames = false
account = IMAP {{ server = '{host}', port = {port}, username = '{user}',
                 password = '{password}', ssl = 'auto' }}
found = account.INBOX:send_query('UNKEYWORD $ModbotDone FROM linkedin.com')
found:add_flags({{ '$ModbotDone' }})
"""


def _modbot_command() -> list[str]:
    script = Path(sys.executable).with_name("modbot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "modbot"]


def _run(command: list[str], env: dict[str, str], expect: str | None = None) -> float:
    start = perf()
    done = subprocess.run(command, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, check=False)
    elapsed = perf() - start
    if done.returncode != 0 or (expect is not None and expect not in done.stdout):
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-500:]}")
    return elapsed


def _compile_modbot() -> None:
    """Write modbot's bytecode, as installing it does: an editable checkout run with
    PYTHONDONTWRITEBYTECODE (as here) would otherwise compile every module at each start."""
    spec = importlib.util.find_spec("modbot")
    assert spec is not None and spec.origin is not None
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(spec.origin).parent)],
                   check=True,
                   capture_output=True, timeout=120)


def figures(env: Environment, sizes: Sizes) -> list[Figure]:
    imapfilter = shutil.which("imapfilter")
    _compile_modbot()
    results: dict[int, dict[str, float]] = {}
    for size, user in ((sizes.small, "small"), (sizes.large, "large")):
        progress(f"modbot run-once and imapfilter, {k(size)} folder")
        modbot = [*_modbot_command(), "--config", str(env.config_file(user)), "run-once"]
        process_env = dict(os.environ)
        _run(modbot, process_env)  # the first run sets the cursor at the top of the folder
        home = env.work / f"imapfilter-{user}"
        home.mkdir(exist_ok=True)
        lua = home / "config.lua"
        lua.write_text(_IMAPFILTER.format(host=environment.HOST, port=env.dovecot.imaps_port,
                                          user=user, password=environment.PASSWORD))
        filter_env = dict(os.environ, HOME=str(home))
        ours, theirs = [], []
        if imapfilter:
            _run([imapfilter, "-c", str(lua)], filter_env)  # flags what is there now
        for _ in range(sizes.run_once_runs):
            ours.append(_run(modbot, process_env, expect="new messages: 0"))
            if imapfilter:
                theirs.append(_run([imapfilter, "-c", str(lua)], filter_env))
        results[size] = {"modbot": median(ours), "imapfilter": median(theirs) if theirs else 0}
    big, small = results[sizes.large], results[sizes.small]
    L, S = k(sizes.large), k(sizes.small)
    start = _run([sys.executable, "-c", "import modbot.cli"], dict(os.environ))
    details = [f"modbot run-once: {ms(big['modbot']):.0f} ms ({L}), {ms(small['modbot']):.0f} ms "
               f"({S}), {big['modbot'] / small['modbot']:.2f}x growth",
               f"python -c 'import modbot.cli' alone: {ms(start):.0f} ms"]
    if not imapfilter:
        details.append("imapfilter is not installed (apt-get install imapfilter): no baseline")
        return [Figure(f"run-once, whole process, nothing new, {L} folder", ms(big["modbot"]),
                       "ms", None, None, "<= 1.0x imapfilter", False, details)]
    details.append(f"imapfilter: {ms(big['imapfilter']):.0f} ms ({L}), "
                   f"{ms(small['imapfilter']):.0f} ms ({S}), "
                   f"{big['imapfilter'] / small['imapfilter']:.1f}x growth")
    ratio = big["modbot"] / big["imapfilter"]
    return [Figure(f"run-once, whole process, nothing new, {L} folder", ms(big["modbot"]), "ms",
                   ms(big["imapfilter"]), ratio, "<= 1.0x imapfilter", ratio <= 1.0, details)]
