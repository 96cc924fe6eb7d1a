"""Errors as JSON with a stable code: `{"error": {"code", "message", "fix"}}`.

A request a user got wrong is a 4xx (422 for a malformed body, 400 for a well-formed one dsft
cannot act on, 404 for something that does not exist); a 5xx means a bug in dsft.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dsft.data.codes import InputError
from dsft.errors import UserError

log = logging.getLogger("dsft.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fix: str = ""):
        super().__init__(message)
        self.status, self.code, self.message, self.fix = status, code, message, fix


def body(code: str, message: str, fix: str = "") -> dict:
    return {"error": {"code": code, "message": message, **({"fix": fix} if fix else {})}}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, e: ApiError):
        return JSONResponse(body(e.code, e.message, e.fix), status_code=e.status)

    @app.exception_handler(UserError)
    async def _user(_: Request, e: UserError):
        not_found = e.message.startswith("no ")
        return JSONResponse(body("not_found" if not_found else "bad_request", e.message, e.fix),
                            status_code=404 if not_found else 400)

    @app.exception_handler(InputError)
    async def _input(_: Request, e: InputError):
        missing = all(f.code == "file_not_found" for f in e.findings)
        first = e.findings[0] if e.findings else None
        return JSONResponse({"error": {"code": first.code if first else "bad_input",
                                       "message": "; ".join(f"{f.where()}: {f.message}" for f in e.findings[:5]),
                                       "fix": first.fix if first else "",
                                       "findings": [f.to_dict() for f in e.findings[:50]]}},
                            status_code=404 if missing else 400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in e.errors()[:5]]
        return JSONResponse(body("invalid_request", "; ".join(problems) or "invalid request",
                                 "see the request schema at /docs"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException):
        codes = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                 413: "too_large", 415: "unsupported_media_type"}
        return JSONResponse(body(codes.get(e.status_code, f"http_{e.status_code}"), str(e.detail)),
                            status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(_: Request, e: Exception):  # pragma: no cover - a 5xx is a dsft bug; log it whole
        log.exception("unhandled error")
        return JSONResponse(body("internal", f"{type(e).__name__}: {e}", "this is a dsft bug: please report it"),
                            status_code=500)
