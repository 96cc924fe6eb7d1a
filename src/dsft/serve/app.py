"""`dsft serve`: the OpenAI-compatible gateway in front of a backend.

    /v1/models, /v1/chat/completions (tools, tool_choice, streaming, usage, stop, seed, user)
    /health (alive), /ready (every routed model loaded and answered a one-token generation)
    /metrics (Prometheus)

The gateway owns routing (see router.py) and follows the registry: every `poll` seconds it
applies pending deployments for its target (load beside the live version, check readiness, swap
the route, or record the failure and leave traffic where it was) and running A/B tests for the
models it serves, and flushes per-variant traffic counts to the test's statistics.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from dsft import __version__
from dsft.api.safety import install_key_check
from dsft.chat.detect import of
from dsft.serve import chat_api
from dsft.serve.backend import Backend
from dsft.serve.backend import Request as GenRequest
from dsft.serve.metrics import Metrics
from dsft.serve.router import Route, Table, Variant

log = logging.getLogger("dsft.serve")


def oai_error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": code, "param": None}}, status_code=status)


@dataclass
class Gateway:
    backend: Backend
    target: str = "prod"
    poll: float = 1.0
    table: Table = field(default_factory=Table)
    inflight: collections.Counter = field(default_factory=collections.Counter)
    traffic: dict = field(default_factory=lambda: collections.defaultdict(lambda: [0, 0, 0.0, 0, 0, 0.0]))
    ready_keys: set = field(default_factory=set)
    metrics: Metrics = field(default_factory=Metrics)
    live_deployment: int | None = None

    # ---------------------------------------------------------------- loading

    async def load(self, key: str, folder: str) -> None:
        if key not in self.backend.served():
            await self.backend.load(key, folder)
        if key not in self.ready_keys:
            if not await self.backend.ready(key):
                raise RuntimeError(f"{key} did not produce a token")
            self.ready_keys.add(key)

    async def serve_refs(self, refs: list[str]) -> None:
        """The models named on the command line: registry refs or model folders."""
        for k, ref in enumerate(refs):
            key, folder, name = self._resolve(ref)
            await self.load(key, folder)
            route = Route(key, (Variant("live", key),))
            aliases = [ref, name] + ([self.target] if k == 0 else [])
            self.table = self.table.with_route(route, *[a for a in aliases if a and a not in self.table.routes])

    def _resolve(self, ref: str) -> tuple[str, str, str | None]:
        from pathlib import Path

        folder = Path(ref)
        if folder.is_dir():
            return folder.name, str(folder.resolve()), None
        from dsft.registry import db, store
        from dsft.registry.tasks import home_path

        with db.session() as s:
            mv = store.resolve(s, ref)
            return f"{mv.name}:{mv.version}", str(home_path(mv.artifact)), mv.name

    # ---------------------------------------------------------------- following the registry

    async def follow(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception:  # noqa: BLE001 - a registry hiccup must not stop serving
                log.exception("registry sync failed")
            await asyncio.sleep(self.poll)

    async def sync(self) -> None:
        from dsft.registry import abtest, rollout

        loop = asyncio.get_running_loop()
        dep = await loop.run_in_executor(None, rollout.pending, self.target)
        if dep is not None:
            await self.apply_deployment(dep)
        tests = await loop.run_in_executor(None, abtest.running)
        await self.apply_tests(tests)
        await loop.run_in_executor(None, self.flush_traffic)

    async def apply_deployment(self, dep) -> None:
        from dsft.registry import rollout

        loop = asyncio.get_running_loop()
        key = f"{dep.model}:{dep.version}"
        started = time.perf_counter()
        try:
            _, folder, _ = self._resolve(key)
            await asyncio.wait_for(self.load(key, folder), timeout=600)
        except Exception as e:  # noqa: BLE001 - any failure to load or answer is a failed readiness check
            await loop.run_in_executor(None, rollout.mark_failed, dep.id, f"{type(e).__name__}: {e}"[:500])
            if key not in self.table.keys():
                self.ready_keys.discard(key)
                try:
                    await self.backend.unload(key)
                except Exception:  # noqa: BLE001
                    pass
            return
        current = self.table.routes.get(self.target)
        variants: tuple[Variant, ...] = (Variant("live", key),)
        if dep.canary_percent < 100 and current is not None:
            old = next(v for v in current.variants if v.name == "live")
            variants = (Variant("live", old.key, 100 - dep.canary_percent), Variant("canary", key, dep.canary_percent))
        route = Route(self.target, variants, salt=f"deployment-{dep.id}")
        previous = {v.key for v in current.variants} if current is not None else set()
        self.table = self.table.with_route(route, dep.model)  # the swap: one assignment
        await self.release(keep=previous)
        health = {"ready": True, "load_and_check_seconds": round(time.perf_counter() - started, 2),
                  "variants": {v.name: v.key for v in variants}}
        await loop.run_in_executor(None, rollout.mark_live, dep.id, health)
        self.live_deployment = dep.id

    async def release(self, keep: set[str]) -> None:
        """Unload versions no route uses any more, once their in-flight requests are done; the version
        that was live just before stays loaded, so a rollback to it is instant."""
        for key in set(self.backend.served()) - self.table.keys() - keep:
            if self.inflight[key] == 0:
                self.ready_keys.discard(key)
                await self.backend.unload(key)

    async def apply_tests(self, tests) -> None:
        table = self.table
        active = {t.model for t in tests}
        for test in tests:
            if test.model not in table.routes:
                continue  # not a model this gateway serves
            variants = []
            for v in test.variants:
                key = f"{test.model}:{v['version']}"
                if key not in self.ready_keys:
                    _, folder, _ = self._resolve(key)
                    await self.load(key, folder)
                variants.append(Variant(v["name"], key, v["weight"]))
            route = table.routes[test.model]
            if route.ab_test != test.id:
                table = table.with_route(Route(test.model, tuple(variants), salt=test.id, ab_test=test.id))
        for name, route in list(table.routes.items()):
            if route.ab_test and name not in active:  # the test ended: back to the live version
                live = table.routes.get(self.target) or Route(name, (route.variants[0],))
                table = table.with_route(Route(name, live.variants, live.salt))
        self.table = table

    def record(self, route: Route, variant: Variant, ok: bool, seconds: float, tokens_in: int, tokens_out: int) -> None:
        self.metrics.observe(route.name, variant.version, variant.name, "ok" if ok else "error", seconds,
                             tokens_in, tokens_out)
        if route.ab_test:
            t = self.traffic[(route.ab_test, variant.name)]
            t[0] += 1
            t[1] += 0 if ok else 1
            t[2] += seconds * 1000
            t[3] += tokens_in
            t[4] += tokens_out
            t[5] += (seconds * 1000) ** 2  # the sequential test on latency needs its variance

    def flush_traffic(self) -> None:
        from dsft.registry import abtest

        pending, self.traffic = self.traffic, collections.defaultdict(lambda: [0, 0, 0.0, 0, 0, 0.0])
        for (test_id, variant), (n, errors, ms, tin, tout, ms_sq) in pending.items():
            abtest.add_traffic(test_id, variant, n, errors, ms, tin, tout, latency_ms_sq=ms_sq)

    # ---------------------------------------------------------------- requests

    def pick(self, model: str, user: str | None) -> tuple[Route, Variant]:
        route = self.table.routes.get(model)
        if route is None:
            raise LookupError(model)
        return route, route.pick(user)


def create_app(backend: Backend, refs: list[str], target: str = "prod", poll: float = 1.0,
               registry: bool = True, on_ready=None) -> FastAPI:
    """`on_ready(listing)` is called once the models are loaded (the CLI prints where to connect)."""
    gw = Gateway(backend, target, poll)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await gw.serve_refs(refs)
        if on_ready:
            on_ready(gw.table.listing())
        task = asyncio.create_task(gw.follow()) if registry else None
        yield
        if task:
            task.cancel()
        if registry:
            gw.flush_traffic()
        await backend.close()

    app = FastAPI(title="dsft serve", version=__version__, lifespan=lifespan)
    app.state.gateway = gw

    install_key_check(app, lambda e: oai_error(401, e.message, "authentication_error", "invalid_api_key"))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in e.errors()[:5]]
        return oai_error(400, "; ".join(problems))

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> Response:
        keys = gw.table.keys()
        ok = bool(keys) and keys <= gw.ready_keys
        return JSONResponse({"ready": ok, "models": sorted(keys), "live_deployment": gw.live_deployment},
                            status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    def models() -> dict:
        now = int(time.time())
        return {"object": "list", "data": [{"id": name, "object": "model", "created": now, "owned_by": "dsft",
                                            "aliases": aliases} for name, aliases in gw.table.listing()]}

    @app.post("/v1/chat/completions")
    async def chat(req: chat_api.ChatRequest, request: Request) -> Any:
        started = time.perf_counter()
        user = req.user or request.headers.get("x-dsft-user")
        try:
            route, variant = gw.pick(req.model, user)
        except LookupError:
            return oai_error(404, f"the model {req.model!r} does not exist here; see /v1/models",
                             code="model_not_found")
        try:
            tokenizer = backend.tokenizer(variant.key)
            family, opts = of(tokenizer)  # the format the model was trained in, recorded with its tokenizer
            prompt, prefix = chat_api.prompt_ids(req, tokenizer, family)
            grammar = chat_api.tool_grammar(req, tokenizer, family, prompt, prefix)
        except chat_api.BadRequest as e:
            return oai_error(400, str(e))
        except KeyError:
            return oai_error(503, f"{variant.key} is not loaded yet", "server_error")
        gen_req = GenRequest(variant.key, prompt, chat_api.sampling(req, family, grammar))
        headers = {"x-dsft-variant": variant.name, "x-dsft-version": variant.key}
        gw.inflight[variant.key] += 1
        if not req.stream:
            try:
                gen = await backend.generate(gen_req)
            except Exception as e:  # noqa: BLE001 - a failed generation is this request's 500, counted
                gw.inflight[variant.key] -= 1
                gw.record(route, variant, False, time.perf_counter() - started, len(prompt), 0)
                return oai_error(500, f"generation failed: {type(e).__name__}: {e}", "server_error")
            gw.inflight[variant.key] -= 1
            body = chat_api.completion(req, req.model, gen, prefix, family)
            gw.record(route, variant, True, time.perf_counter() - started, gen.prompt_tokens, gen.completion_tokens)
            return JSONResponse(body, headers=headers)

        shaper = chat_api.StreamShaper(req, req.model, prefix, family, opts.thinking or family.thinking_default)

        async def events():
            ok, gen = False, None
            try:
                yield f"data: {json.dumps(shaper.first())}\n\n"
                async for item in backend.stream(gen_req):
                    if isinstance(item, str):
                        for c in shaper.feed(item):
                            yield f"data: {json.dumps(c)}\n\n"
                    else:
                        gen = item
                for c in shaper.finish(gen):
                    yield f"data: {json.dumps(c)}\n\n"
                yield "data: [DONE]\n\n"
                ok = True
            except Exception as e:  # noqa: BLE001
                yield f"data: {json.dumps({'error': {'message': str(e), 'type': 'server_error'}})}\n\n"
            finally:
                gw.inflight[variant.key] -= 1
                gw.record(route, variant, ok, time.perf_counter() - started, len(prompt),
                          gen.completion_tokens if gen else 0)

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    return app
