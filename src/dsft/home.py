"""DSFT_HOME: the one folder dsft writes into unless told otherwise."""

from __future__ import annotations

import os
from pathlib import Path


def dsft_home() -> Path:
    """The home folder (`DSFT_HOME`, default `./.dsft`), created on first use."""
    home = Path(os.environ.get("DSFT_HOME", ".dsft")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home
