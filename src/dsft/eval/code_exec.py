"""pass@k for examples that carry Python tests in `metadata.tests`.

Each candidate program (the reply's first ```python block, else the whole reply) runs with the
tests appended, in a fresh temporary directory, in `python -I` (isolated: no user site, no
PYTHONPATH), with a timeout, and with sockets disabled by a `sitecustomize` the child loads first.
pass@k uses the unbiased estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from math import comb
from pathlib import Path

_FENCE = re.compile(r"```(?:python|py)?\n(.*?)```", re.S)
_NO_NETWORK = """import socket
def _refuse(*args, **kwargs):
    raise OSError("network disabled by dsft eval")
socket.socket = _refuse
socket.create_connection = _refuse
"""


def extract_code(reply: str) -> str:
    match = _FENCE.search(reply or "")
    return match.group(1) if match else (reply or "")


def passes(program: str, tests: str, timeout: float = 10.0) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "sitecustomize.py").write_text(_NO_NETWORK)
        (folder / "candidate.py").write_text(program + "\n\n" + tests + "\n")
        runner = f"import sys; sys.path.insert(0, {tmp!r}); import sitecustomize; exec(open('candidate.py').read())"
        try:
            proc = subprocess.run([sys.executable, "-I", "-c", runner], cwd=folder, capture_output=True,
                                  timeout=timeout, env={"PATH": "/usr/bin:/bin"})
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode == 0


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c correct) passes."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)
