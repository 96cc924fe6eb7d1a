"""What a request may touch: API keys, paths inside DSFT_HOME, uploads that are data or safetensors.

Requests name files by the server-made paths uploads return (`uploads/<id>/<name>`), by dataset
ids or by registry refs. Any string in a request body that looks like a path is resolved and
must stay inside DSFT_HOME: `..`, absolute paths elsewhere, `~`, backslashes, percent-encoded
separators and symlinks that lead out are refused before a job is queued.
"""

from __future__ import annotations

import hmac
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Request, Response, UploadFile

from dsft.api.errors import ApiError
from dsft.home import dsft_home, inside_home

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DATA_SUFFIXES = {".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".parquet", ".md", ".html", ".htm", ".txt",
                 ".yaml", ".yml", ".safetensors"}
PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib", ".npy", ".npz"}


def api_key() -> str | None:
    return os.environ.get("DSFT_API_KEY") or None


def require_key(request: Request) -> None:
    key = api_key()
    if key is None:
        return  # no key: the service only listens on loopback (see `dsft api`)
    given = request.headers.get("authorization", "")
    if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), key.encode())):
        raise ApiError(401, "unauthorized", "missing or wrong API key", "send Authorization: Bearer <DSFT_API_KEY>")


def install_key_check(app, denied: Callable[[ApiError], Response]) -> None:
    """With DSFT_API_KEY set, every request but /health needs the key; `denied` shapes the 401
    in the app's own error format (dsft's for the API, OpenAI's for `dsft serve`)."""

    @app.middleware("http")
    async def auth(request: Request, call_next):
        if api_key() is not None and request.url.path != "/health":
            try:
                require_key(request)
            except ApiError as e:
                return denied(e)
        return await call_next(request)


def _looks_like_path(s: str) -> bool:
    low = s.lower()
    if low.startswith(("http://", "https://")):
        return False
    return ("/" in s or "\\" in s or s.startswith((".", "~")) or "%2f" in low or "%2e" in low or "%5c" in low)


def check_paths(value: Any, where: str = "body", urls: bool = False) -> None:
    """Refuse any path-like string in `value` that leads outside DSFT_HOME (ApiError 400)."""
    if isinstance(value, dict):
        for k, v in value.items():
            check_paths(v, f"{where}.{k}", urls)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_paths(v, f"{where}[{i}]", urls)
    elif isinstance(value, str):
        if "\x00" in value:
            raise ApiError(400, "invalid_path", f"{where}: holds a NUL character", "send plain text")
        low = value.lower()
        if low.startswith(("http://", "https://", "file:")):
            if not urls or low.startswith("file:"):
                raise ApiError(400, "url_not_allowed", f"{where}: URLs are not accepted here", "upload the file instead")
            return
        if not _looks_like_path(value):
            return
        if "%" in value or "\\" in value or value.startswith("~"):
            raise ApiError(400, "path_outside_home", f"{where}: {value!r} is not a plain path inside DSFT_HOME",
                           "use the path an upload returned, e.g. uploads/<id>/data.jsonl")
        if HUB_ID.match(value) and ".." not in value and not (dsft_home() / value).exists():
            return  # a hub model id such as deepseek-ai/deepseek-coder-6.7b-instruct
        try:
            inside_home(value)
        except ValueError:
            raise ApiError(400, "path_outside_home", f"{where}: {value!r} leads outside DSFT_HOME",
                           "use the path an upload returned, e.g. uploads/<id>/data.jsonl") from None


def home_file(value: str, where: str = "path") -> Path:
    """`value` resolved inside DSFT_HOME, or ApiError 400 naming the field."""
    check_paths(value, where)
    try:
        return inside_home(value)
    except ValueError as e:
        raise ApiError(400, "path_outside_home", f"{where}: {e}",
                       "use the path an upload returned, e.g. uploads/<id>/data.jsonl") from None


def max_upload_bytes() -> int:
    return int(float(os.environ.get("DSFT_MAX_UPLOAD_MB", "512")) * 2**20)


def safe_name(name: str) -> str:
    base = Path(name.replace("\\", "/")).name
    base = re.sub(r"[^\w.-]", "_", base).lstrip(".") or "upload"
    return base[:120]


async def save_upload(file: UploadFile) -> dict[str, Any]:
    """Stream an upload to `uploads/<id>/<name>`: data files and safetensors only, within the size limit."""
    name = safe_name(file.filename or "upload")
    suffix = Path(name).suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ApiError(415, "pickle_refused", f"{name}: pickle-based files can run code when loaded and are refused",
                       "convert weights to .safetensors; send data as JSONL, JSON, CSV or Parquet")
    if suffix not in DATA_SUFFIXES:
        raise ApiError(415, "unsupported_file", f"{name}: unsupported file type {suffix or '(none)'}",
                       f"upload one of {', '.join(sorted(DATA_SUFFIXES))}")
    limit = max_upload_bytes()
    upload_id = uuid.uuid4().hex
    folder = dsft_home() / "uploads" / upload_id
    folder.mkdir(parents=True)
    target = folder / name
    size = 0
    first = b""
    try:
        with open(target, "wb") as out:
            while chunk := await file.read(1 << 20):
                if not first:
                    first = chunk[:16]
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "too_large", f"{name} is larger than {limit >> 20} MiB",
                                   "split it, or raise DSFT_MAX_UPLOAD_MB on the server")
                out.write(chunk)
        if first[:1] == b"\x80" and first[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05") or first.startswith(b"PK\x03\x04") \
                and suffix != ".parquet":
            raise ApiError(415, "pickle_refused", f"{name} holds a pickle (or a zip of pickles, as torch saves)",
                           "convert weights to .safetensors")
        if suffix == ".safetensors":
            _check_safetensors(target)
    except BaseException:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        raise
    return {"id": upload_id, "path": f"uploads/{upload_id}/{name}", "bytes": size}


def _check_safetensors(path: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            list(f.keys())
    except Exception as e:  # noqa: BLE001 - any parse failure means "not a safetensors file"
        raise ApiError(415, "invalid_safetensors", f"{path.name} is not a valid safetensors file: {e}",
                       "save it with safetensors.torch.save_file") from None
