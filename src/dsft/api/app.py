"""`dsft api`: the FastAPI application, with an embedded worker unless `--no-worker`.

Every endpoint but /health needs `Authorization: Bearer $DSFT_API_KEY` when that key is set;
without a key `dsft api` only binds to loopback. OpenAPI at /docs and /openapi.json.
"""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from dsft import __version__
from dsft.api import errors, finetuning, resources, serving
from dsft.api.safety import install_key_check


def create_app(worker: bool = True, concurrency: int = 1, on_ready=None) -> FastAPI:
    """`on_ready()` is called once the database is migrated (the CLI prints where to connect)."""
    state: dict = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        from dsft.registry import db

        db.engine()  # migrate before the first request
        if worker:
            from dsft.registry.worker import Worker

            stop = threading.Event()
            w = Worker(concurrency=concurrency)
            thread = threading.Thread(target=w.run, args=(stop,), name="dsft-worker", daemon=True)
            thread.start()
            state.update(stop=stop, thread=thread, worker=w)
        if on_ready:
            on_ready()
        yield
        if worker:
            state["stop"].set()
            state["thread"].join(timeout=120)

    app = FastAPI(title="dsft", version=__version__, lifespan=lifespan,
                  description="Local finetuning for DeepSeek models: the guide's phases as a REST API.")
    errors.install(app)

    install_key_check(app, lambda e: JSONResponse(errors.body(e.code, e.message, e.fix), status_code=401,
                                                  headers={"WWW-Authenticate": "Bearer"}))

    @app.get("/health", tags=["service"])
    def health() -> dict:
        return {"status": "ok", "version": __version__, "worker": bool(worker)}

    app.include_router(finetuning.router)
    app.include_router(serving.router)
    app.include_router(resources.router)
    return app
