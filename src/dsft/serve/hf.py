"""The transformers + peft backend: for CPUs and small GPUs.

One thread owns every model. Requests wait in a queue; the thread takes the oldest and, with it,
the queued requests for the same model and sampling settings (up to `max_batch`), and generates
them as one left-padded batch. So two generations never race on one model, and concurrent users
share the work. Adapters over the same base share that base in memory (peft named adapters,
switched per batch); full finetunes are models of their own. Loading and unloading run on the
same thread, between batches, so a deployment never disturbs a generation in flight.
"""

from __future__ import annotations

import asyncio
import collections
import json
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dsft.errors import UserError
from dsft.serve.backend import Generation, Request, tool_call_stop


@dataclass
class Served:
    model: Any
    tokenizer: Any
    adapter: str | None  # peft adapter name, None for a plain model
    folder: str


@dataclass
class _Job:
    kind: str  # "gen" | "stream" | "call"
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future | None = None
    request: Request | None = None
    deltas: asyncio.Queue | None = None
    fn: Any = None


class _Streamer:
    """transformers' streamer protocol: decoded text deltas, pushed to the request's queue."""

    def __init__(self, tokenizer, push):
        self.tokenizer, self.push, self.ids, self.sent, self.prompt_seen = tokenizer, push, [], "", False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.ids.extend(value.flatten().tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=False)
        if text.endswith("\ufffd"):
            return  # half of a multi-byte character: wait for the rest
        if len(text) > len(self.sent):
            self.push(text[len(self.sent):])
            self.sent = text

    def end(self) -> None:
        pass


class HFBackend:
    def __init__(self, max_batch: int = 8):
        self.max_batch = max_batch
        self._served: dict[str, Served] = {}
        self._bases: dict[str, Any] = {}  # base folder -> PeftModel holding that base's adapters
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._pending: collections.deque[_Job] = collections.deque()
        self._thread = threading.Thread(target=self._loop, name="dsft-hf-backend", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- the Protocol

    def served(self) -> list[str]:
        return list(self._served)

    def tokenizer(self, model: str):
        return self._get(model).tokenizer

    async def load(self, name: str, folder: str) -> None:
        await self._call(lambda: self._load(name, folder))

    async def unload(self, name: str) -> None:
        await self._call(lambda: self._unload(name))

    async def generate(self, request: Request) -> Generation:
        self._get(request.model)
        loop = asyncio.get_running_loop()
        job = _Job("gen", loop, future=loop.create_future(), request=request)
        self._jobs.put(job)
        return await job.future

    async def stream(self, request: Request):
        self._get(request.model)
        loop = asyncio.get_running_loop()
        job = _Job("stream", loop, request=request, deltas=asyncio.Queue())
        self._jobs.put(job)
        while True:
            item = await job.deltas.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, Generation):
                return

    async def ready(self, model: str) -> bool:
        tok = self.tokenizer(model)
        ids = tok.apply_chat_template([{"role": "user", "content": "ping"}], tokenize=True, return_dict=True,
                                      add_generation_prompt=True)["input_ids"]
        from dsft.serve.backend import Sampling

        gen = await self.generate(Request(model, list(ids), Sampling(max_tokens=1)))
        return gen.completion_tokens >= 1

    async def close(self) -> None:
        self._jobs.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 30)

    # ---------------------------------------------------------------- the model thread

    def _get(self, name: str) -> Served:
        served = self._served.get(name)
        if served is None:
            raise KeyError(name)
        return served

    async def _call(self, fn):
        loop = asyncio.get_running_loop()
        job = _Job("call", loop, future=loop.create_future(), fn=fn)
        self._jobs.put(job)
        return await job.future

    def _next(self, block: bool) -> _Job | None:
        if self._pending:
            return self._pending.popleft()
        try:
            return self._jobs.get(block=block)
        except queue.Empty:
            return None

    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            job = self._next(block=True)
            if job is None:
                return
            try:
                if job.kind == "call":
                    _resolve(job, job.fn())
                elif job.kind == "stream":
                    self._stream(job)
                else:
                    self._batch(job)
            except BaseException as e:  # noqa: BLE001 - the error goes to the waiting request
                _fail(job, e)

    def _batch(self, first: _Job) -> None:
        key = (first.request.model, first.request.sampling.key())
        batch, skipped = [first], []
        while len(batch) < self.max_batch:
            job = self._next(block=False)
            if job is None:
                break
            if job.kind == "gen" and (job.request.model, job.request.sampling.key()) == key:
                batch.append(job)
            else:
                skipped.append(job)
        self._pending.extendleft(reversed(skipped))  # keep their order, ahead of newer requests
        try:
            results = self._generate([j.request for j in batch])
        except BaseException as e:  # noqa: BLE001
            for j in batch:
                _fail(j, e)
            return
        for j, r in zip(batch, results):
            _resolve(j, r)

    def _stream(self, job: _Job) -> None:
        def push(text: str) -> None:
            job.loop.call_soon_threadsafe(job.deltas.put_nowait, text)

        result = self._generate([job.request], streamer_push=push)[0]
        job.loop.call_soon_threadsafe(job.deltas.put_nowait, result)

    def _generate(self, requests: list[Request], streamer_push=None) -> list[Generation]:
        served = self._get(requests[0].model)
        tok, model, s = served.tokenizer, served.model, requests[0].sampling
        if served.adapter is not None:
            model.set_adapter(served.adapter)
        model.eval()
        width = max(len(r.prompt) for r in requests)
        ids = torch.full((len(requests), width), tok.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for row, r in enumerate(requests):
            ids[row, width - len(r.prompt):] = torch.tensor(r.prompt)
            attention[row, width - len(r.prompt):] = 1
        eos, stop_strings, banned = [tok.eos_token_id], [], None
        if s.stop_at_tool_call:
            # No call may begin: the opener is banned, so the model writes the text it would write
            # instead (ending the turn there gave an empty reply whenever a call came first). A
            # several-token opener (DSML) is banned as a sequence and still stops the turn if written.
            stop_ids, stop_strings = tool_call_stop(tok)
            banned = [stop_ids] if stop_ids else [tok.encode(stop_strings[0], add_special_tokens=False)]
        kwargs: dict[str, Any] = {"max_new_tokens": s.max_tokens, "eos_token_id": eos, "pad_token_id": tok.pad_token_id}
        if banned:
            kwargs["bad_words_ids"] = banned
        if stop_strings:
            kwargs.update(stop_strings=stop_strings, tokenizer=tok)
        if s.temperature > 0:
            kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p)
        else:
            kwargs.update(do_sample=False)
        if s.seed is not None:
            torch.manual_seed(s.seed)
        if streamer_push is not None:
            kwargs["streamer"] = _Streamer(tok, streamer_push)
        if s.must_start_with:
            kwargs["prefix_allowed_tokens_fn"] = _constraint(tok, s.must_start_with, width)
        if s.grammar:
            from transformers import LogitsProcessorList

            from dsft.chat.constrain import GrammarConstraint

            kwargs["logits_processor"] = LogitsProcessorList([GrammarConstraint(
                tok, [s.grammar] * len(requests), model.config.get_text_config().vocab_size,
                [s.grammar_after] * len(requests))])
        out = model.generate(input_ids=ids, attention_mask=attention, **kwargs)
        results = []
        for row, r in enumerate(requests):
            new = out[row, width:].tolist()
            while new and new[-1] == tok.pad_token_id:
                new.pop()
            stopped = bool(new) and new[-1] in eos
            text = tok.decode(new, skip_special_tokens=False)
            for opener in stop_strings:  # a several-token call opener ended the turn: not part of it
                stopped, text = stopped or opener in text, text.split(opener, 1)[0]
            results.append(Generation(text, len(r.prompt), len(new),
                                      "stop" if stopped or len(new) < s.max_tokens else "length"))
        return results

    def _load(self, name: str, folder: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from dsft.train.targets import exact_targets

        path = Path(folder)
        if not path.is_dir():
            raise UserError(f"model folder {folder} does not exist", "register or train the model first")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        adapter_cfg = path / "adapter_config.json"
        if adapter_cfg.exists():
            from dsft.train.methods import quiet_adapter_libraries

            quiet_adapter_libraries()  # before peft is imported: it imports bitsandbytes, which logs then
            from peft import PeftModel

            from dsft.model.locate import locate

            base = locate(json.loads(adapter_cfg.read_text())["base_model_name_or_path"], f"{folder}'s base model")
            holder = self._bases.get(base)
            if holder is None:
                model = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True, dtype=torch.float32)
                with exact_targets(model):
                    holder = PeftModel.from_pretrained(model, folder, adapter_name=name)
                self._bases[base] = holder
            else:
                with exact_targets(holder.base_model.model):
                    holder.load_adapter(folder, adapter_name=name)
            self._served[name] = Served(holder, tokenizer, name, folder)
        else:
            model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, dtype=torch.float32)
            self._served[name] = Served(model, tokenizer, None, folder)

    def _unload(self, name: str) -> None:
        served = self._served.pop(name, None)
        if served is not None and served.adapter is not None:
            served.model.delete_adapter(served.adapter)


_VOCAB_TEXT: dict[int, list[str]] = {}


def _constraint(tok, text: str, prompt_len: int):
    """prefix_allowed_tokens_fn: until the continuation covers `text`, only tokens that agree with it."""
    vocab = _VOCAB_TEXT.get(id(tok))
    if vocab is None:
        vocab = _VOCAB_TEXT[id(tok)] = [tok.decode([i], skip_special_tokens=False) for i in range(len(tok))]
    everything = list(range(len(vocab)))

    def allowed(_batch: int, ids: torch.Tensor) -> list[int]:
        so_far = tok.decode(ids[prompt_len:].tolist(), skip_special_tokens=False)
        if len(so_far) >= len(text) or not text.startswith(so_far):
            return everything
        rest = text[len(so_far):]
        ok = [i for i, t in enumerate(vocab) if t and (rest.startswith(t) or t.startswith(rest))]
        return ok or everything

    return allowed


def _resolve(job: _Job, value) -> None:
    if job.future is not None:
        job.loop.call_soon_threadsafe(lambda: job.future.done() or job.future.set_result(value))


def _fail(job: _Job, error: BaseException) -> None:
    if job.future is not None:
        job.loop.call_soon_threadsafe(lambda: job.future.done() or job.future.set_exception(error))
    elif job.deltas is not None:
        job.loop.call_soon_threadsafe(job.deltas.put_nowait, error)
