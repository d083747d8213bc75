"""What one process loads once for all its accounts: directory exports and template folders.

A daemon holds a context per account, and a career center's accounts mostly share one directory
export and one template folder. This module keeps what was loaded, keyed by the settings and the
files' sizes and times, for as long as a context holds it; it never reads a file itself.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# What the contexts of one process loaded, by what it was loaded from (see ``shared``).
_values: weakref.WeakValueDictionary[Hashable, Any] = weakref.WeakValueDictionary()
_loading = threading.Lock()


def files_of(*paths: Path | None) -> tuple[tuple[str, int, int], ...]:
    """Each file's (path, size, mtime): of ``paths``, and of every file under those that are
    folders. A file that cannot be read is left out; loading it will say why."""
    found: list[tuple[str, int, int]] = []
    for path in paths:
        if path is None:
            continue
        try:
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() \
                else [path]
            for file in files:
                stat = file.stat()
                found.append((str(file), stat.st_size, stat.st_mtime_ns))
        except OSError:
            continue
    return tuple(found)


def shared(key: Hashable, load: Callable[[], T]) -> T:
    """What ``load`` gives, loaded once for every context that asks with the same ``key``.

    One daemon holds a context per account, and a career center's accounts mostly share one
    directory export and one template folder: read once per account, a 1,000-person directory
    and the compiled templates cost each inbox about a megabyte and most of a second at start.
    The key names the settings and the files' sizes and times, so a changed file is read anew;
    the loaded value lives as long as a context holds it.
    """
    try:
        hash(key)
    except TypeError:  # settings holding a list: not worth sharing
        return load()
    with _loading:
        found = _values.get(key)
    if found is not None:
        return found  # type: ignore[no-any-return]
    value = load()
    if value is None:
        return value
    with _loading:
        return _values.setdefault(key, value)  # type: ignore[no-any-return]
