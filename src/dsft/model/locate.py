"""Where a model the user named is, decided before transformers is asked.

Given `./models/nope`, transformers reports a hub-id syntax error; given a hub id on a machine
without network, it retries for half a minute and prints five "couldn't connect" lines. So a
name is sorted first: an existing folder is used as it is; anything shaped like a path that does
not exist is "no such folder"; a hub id (ORG/NAME) is probed once per process against the hub's
host (one TCP connect, a couple of seconds at most) and, with no network, served from the local
Hugging Face cache in offline mode (no retries) or refused in one message that says what to do.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from dsft.errors import UserError

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
PROBE_SECONDS = 2.0


def offline_fix(name: str) -> str:
    return (f"give a local folder holding the model (where there is network: `hf download {name} --local-dir DIR`, "
            "then copy DIR here), or put it in this machine's Hugging Face cache (HF_HOME) and set HF_HUB_OFFLINE=1; "
            "docs/offline.md")


def locate(name: str, what: str = "model") -> str:
    """`name` as transformers should be given it: a folder's path, or a hub id it can load now."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise UserError(f"{what} {name!r} is a file", "give the folder that holds its config.json")
    if not HUB_ID.match(name):
        raise UserError(f"no such folder: {name}" + ("" if _path_like(name) else " (and it is not a hub id ORG/NAME)"),
                        "check the path; a model folder holds config.json (`dsft model tiny` builds one)")
    if hub_offline():
        if not in_cache(name):
            raise UserError(f"{what} {name!r}: no such folder, and as a Hugging Face hub id it is not in this "
                            f"machine's cache while offline ({offline_reason()})", offline_fix(name))
    return name


def _path_like(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1


def in_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json"), str)


@functools.cache
def _reachable(endpoint: str) -> bool:
    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)),
                                 timeout=PROBE_SECONDS).close()
        return True
    except OSError:
        return False


_why_offline: list[str] = []  # why hub ids come from the cache in this process, once known


def hub_offline() -> bool:
    """True when hub ids must come from the cache: HF_HUB_OFFLINE is set, or the hub cannot be
    reached (then offline mode is switched on for this process, so transformers reads the cache
    without retrying the network for each file)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        _why_offline[:] = _why_offline or ["HF_HUB_OFFLINE is set"]
        return True
    if _reachable(constants.ENDPOINT):
        return False
    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"  # and for the processes this one starts
    _why_offline[:] = [f"{urlparse(constants.ENDPOINT).hostname} cannot be reached"]
    return True


def offline_reason() -> str:
    return _why_offline[0] if _why_offline else "offline"
