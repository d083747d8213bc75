"""``modbot status``: where modbot stands, for a person at a terminal.

For each account: the mode, the last poll and whether it went well, the next digest, the replies
counted against the caps (and a pause a cap started), what waits for the counselor, and on
PostgreSQL which daemon serves it (from the server's own lock table). It only reads: a database
that does not exist yet is not created, and none of the mail servers is asked.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from modbot import words

if TYPE_CHECKING:
    from modbot.config import Account, Config
    from modbot.store import Store


def _ago(moment: datetime, now: datetime) -> str:
    seconds = max((now - moment).total_seconds(), 0)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _local(moment: datetime, zone: str) -> str:
    return words.local_time(moment, zone, "%a %Y-%m-%d %H:%M")


def database_missing(url: str) -> Path | None:
    """The SQLite file ``url`` names when it does not exist yet, else None."""
    from modbot.store import locate

    path = locate(url).file
    return None if path is None or path.exists() else path


def mode_line(settings: Account) -> str:
    policy = settings.policy
    line = f"mode: {words.mode(policy.mode.value)}"
    if policy.modes:
        line += "; except " + ", ".join(f"{words.kind_phrase(kind.value)}: {mode.value}"
                                        for kind, mode in policy.modes.items())
    if policy.redirect_all_to:
        line += f"; every reply goes to {policy.redirect_all_to} instead"
    return line


def account_lines(settings: Account, store: Store | None, now: datetime) -> list[str]:
    """What ``status`` says about one account; ``store`` None when there is no database yet."""
    from modbot.daemon import latest_digest_due
    from modbot.store import OutboxStatus

    account = settings.account
    zone = settings.digest.timezone
    lines = [f"account {account} ({settings.counselor.name}, {settings.counselor.email})",
             "  " + mode_line(settings)]
    next_digest = latest_digest_due(settings.digest, now + timedelta(days=7))
    if store is None:
        lines += ["  last poll: none yet (no database: modbot has not run)",
                  f"  next digest: {_local(next_digest, zone)}"]
        return lines
    polls = store.polls_between(account, now - timedelta(days=30), now + timedelta(days=1))
    if not polls:
        lines.append("  last poll: none in the last 30 days")
    else:
        last = polls[-1]
        when = last.finished_at or last.started_at
        outcome = "went well" if last.ok else f"FAILED: {last.error or 'did not finish'}"
        lines.append(f"  last poll: {_local(when, zone)}, {_ago(when, now)}, {outcome}")
        good = store.last_good_poll(account)
        if not last.ok:
            lines.append("  last poll that went well: "
                         + (f"{_local(good, zone)}, {_ago(good, now)}" if good else "none"))
    lines.append(f"  next digest: {_local(next_digest, zone)} to {settings.counselor.email}")
    policy = settings.policy
    hour = store.replies_since(account, now - timedelta(hours=1))
    day = store.replies_since(account, now - timedelta(days=1))
    lines.append(f"  replies: {hour} in the last hour (cap {policy.max_replies_per_hour}), "
                 f"{day} in the last 24 hours (cap {policy.max_replies_per_day})")
    pause = store.active_pause(account)
    if pause is not None:
        lines.append(f"  PAUSED since {_local(pause.started_at, zone)}: {pause.reason}; "
                     "`modbot resume` starts replies again")
    items = store.open_items(account)
    review = sum(1 for item in items if item.outbox_status is OutboxStatus.REVIEW)
    held = len(items) - review
    waiting = [words.plural(held, "item") + " held (`modbot held`)"] if held else []
    if review:
        waiting.append(words.plural(review, "reply", "replies") + " to review (`modbot review`)")
    lines.append("  waiting for the counselor: " + ("; ".join(waiting) or "nothing"))
    return lines


def holder_lines(config: Config, now: datetime) -> dict[str, str]:
    """On PostgreSQL, which daemon serves each account, as a line of ``status``; else none."""
    from modbot.errors import StoreError
    from modbot.lock import survey

    accounts = [a.account for a in config.accounts]
    try:
        found = survey(config.database.url, accounts)
    except StoreError as exc:
        return dict.fromkeys(accounts, f"  served by: unknown ({exc})")
    if found is None:
        return {}
    out = {}
    for account in accounts:
        holder = found.holders.get(account)
        if holder is None:
            out[account] = "  served by: no daemon holds it"
        else:
            since = f", connected since {_local(holder.since, 'UTC')} ({_ago(holder.since, now)})" \
                if holder.since is not None else ""
            out[account] = f"  served by: the daemon on {holder.host_and_pid}{since}"
    return out


def lines(config: Config, now: datetime) -> list[str]:
    """Every line of ``modbot status`` for the accounts of ``config``."""
    from modbot.store import Store

    missing = database_missing(config.database.url)
    store = None if missing is not None else Store.open(config.database.url, migrate=False)
    try:
        held = holder_lines(config, now) if store is not None else {}
        out: list[str] = []
        for account in config.accounts:
            served = account_lines(account, store, now)
            if account.account in held:
                served.insert(2, held[account.account])
            out += served
        return out
    finally:
        if store is not None:
            store.close()
