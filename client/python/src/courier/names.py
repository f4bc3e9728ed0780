"""Safe local file names for received media: a sender chooses the file name, so it
must never become a path as it is. No separators or control characters, no hidden or
special names, and never an existing file."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

__all__ = ["safe_file_name", "unique_path"]

#: The longest name kept, in characters.
MAX_NAME = 200


def _unsafe(c: str) -> bool:
    return c in "/\\:" or unicodedata.category(c) == "Cc"


def safe_file_name(name: str, fallback: str) -> str:
    """``name`` made safe to create inside a folder: separators (``/``, ``\\``,
    ``:``) and control characters become ``_``, leading dots are dropped, and an
    empty result (or one of only ``_`` and ``.``) becomes ``fallback``.

    >>> safe_file_name("../../etc/passwd", "x")
    '_.._etc_passwd'
    """
    cleaned = "".join("_" if _unsafe(c) else c for c in name)[:MAX_NAME]
    trimmed = cleaned.strip().lstrip(".")
    if not trimmed or all(c in "_." for c in trimmed):
        return fallback
    return trimmed


def unique_path(folder: str | os.PathLike[str], name: str, fallback: str) -> Path:
    """A path in ``folder`` for a received file called ``name`` (made safe with
    :func:`safe_file_name`) that does not exist yet: ``name``, then
    ``stem (1).ext``, ``stem (2).ext``, ...

    Raises:
        FileExistsError: when 10,000 names are taken.
    """
    folder = Path(folder)
    safe = safe_file_name(name, fallback)
    candidate = folder / safe
    if not candidate.exists():
        return candidate
    stem, dot, ext = safe.rpartition(".")
    if not dot or not stem:
        stem, ext = safe, ""
    else:
        ext = "." + ext
    for n in range(1, 10_000):
        candidate = folder / f"{stem} ({n}){ext}"
        if not candidate.exists():
            return candidate
    raise FileExistsError(f"too many files named like {safe} in {folder}")
