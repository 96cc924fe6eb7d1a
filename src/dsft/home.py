"""DSFT_HOME: the one folder dsft writes into unless told otherwise."""

from __future__ import annotations

import os
from pathlib import Path


def dsft_home() -> Path:
    """The home folder (`DSFT_HOME`, default `./.dsft`), created on first use."""
    home = Path(os.environ.get("DSFT_HOME", ".dsft")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def inside_home(path: str | Path, home: Path | None = None) -> Path:
    """`path` (relative to DSFT_HOME, or absolute) resolved, if it stays inside DSFT_HOME.

    Requests name files by server-made ids; this is the last line of defence for anything that
    reaches the file system from one. `..`, absolute paths elsewhere and symlinks that lead out
    all resolve outside and are refused (ValueError)."""
    home = (home or dsft_home()).resolve()
    raw = str(path)
    if "\x00" in raw:
        raise ValueError("path holds a NUL byte")
    p = Path(raw)
    resolved = (p if p.is_absolute() else home / p).resolve()
    if resolved != home and home not in resolved.parents:
        raise ValueError(f"{raw!r} is outside DSFT_HOME")
    return resolved


def relative_to_home(path: str | Path) -> str:
    """How the registry stores a path: relative to DSFT_HOME when inside it (movable homes)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(dsft_home()))
    except ValueError:
        return str(p)
