"""The training loop: a config in, a run folder out.

Deliberately small (nanoGPT-style): length-grouped batches, loss summed over supervised tokens
and divided by the supervised tokens of the whole optimizer step (so splitting a step into
micro-batches does not change it), AdamW with warmup + cosine, periodic eval loss, and a run
folder in the HF/PEFT layout. Non-finite losses stop the run before anything is saved.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from dsft.data.conversation import Conversation
from dsft.errors import UserError
from dsft.train import checkpoint
from dsft.train.batching import Example, collate, length_grouped_batches, tokenize
from dsft.train.callbacks import TrainingCallback, check_metrics
from dsft.train.config import TrainConfig
from dsft.train.loss import decision_tokens, eval_loss, loss_sum, weighted_loss_sum
from dsft.train.methods import quantization_config, wrap
from dsft.train.schedule import CALIBRATION_STEPS, EPOCHS_FIT_SHARE, MIN_EVAL_INTERVAL, BestKeeper, Schedule, better


@dataclass
class RunResult:
    dir: Path
    steps: int
    train_loss: float
    eval_loss: float | None
    tokens: int
    pad_fraction: float
    seconds: float
    is_main: bool = True  # False on the other ranks of a multi-process run: they report nothing
    already_finished: bool = False  # `resume` found the run finished: these are its figures, nothing trained

    @classmethod
    def of_finished(cls, out: Path) -> RunResult:
        facts = json.loads((out / "run.json").read_text(encoding="utf-8"))
        return cls(out, facts["steps"], facts["train_loss"], facts["eval_loss"], facts["tokens"],
                   facts["pad_fraction"], facts["seconds"], already_finished=True)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def load_conversations(paths: list[str]) -> tuple[list[Conversation], dict]:
    """Raw files in any layout, judged exactly as `dsft data prepare` judges them."""
    from dsft.data.pipeline import Options, Scanner
    from dsft.data.sources import discover, read_records

    scanner = Scanner(Options())
    convs, rejected = [], 0
    for row in scanner.scan(read_records(discover(paths))):
        if row.rejected or row.duplicate_of is not None:
            rejected += 1
            continue
        row.conv.metadata.setdefault("dsft", {"origin": f"{row.record.file}:{row.record.line}"})
        convs.append(row.conv)
    return convs, {"kept": len(convs), "dropped": rejected}


def load_model(cfg: TrainConfig):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = cfg.model.name_or_path
    if cfg.model.init_from and not (Path(cfg.model.init_from) / "adapter_config.json").exists():
        name = cfg.model.init_from  # warm start from a full finetune: its weights and tokenizer
    from dsft.model.locate import locate

    name = locate(name, "model.name_or_path" if name == cfg.model.name_or_path else "model.init_from")
    quant = quantization_config(cfg.method)
    extra = {"quantization_config": quant, "device_map": "cuda" if torch.cuda.is_available() else "cpu"} if quant else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=cfg.model.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(name, trust_remote_code=cfg.model.trust_remote_code,
                                                     use_safetensors=True, dtype=torch.float32, **extra)
    except Exception as e:  # transformers raises many types for a missing/unsafe model
        raise UserError(f"cannot load model {name!r}: {str(e).splitlines()[0]}",
                        "give a model folder with safetensors weights (e.g. `dsft model tiny`) or a reachable id") from None
    from dsft.chat.detect import detect, record
    from dsft.chat.encoder import Options

    # told before the template below replaces the model's own
    family = detect(tokenizer, name, cfg.chat.family, getattr(model.config, "model_type", None))
    record(tokenizer, family, Options(thinking=cfg.chat.thinking or family.thinking_default,
                                      reasoning_turns=cfg.chat.reasoning_turns, reasoning_effort=cfg.chat.reasoning_effort))
    from dsft.chat.template import TEMPLATES, load_template

    if family.name in TEMPLATES:  # exports carry dsft's template, which renders as the encoder does
        tokenizer.chat_template = load_template(family.name)
    ensure_distinct_pad(tokenizer, name)
    return model, tokenizer


def ensure_distinct_pad(tokenizer, name: str) -> None:
    """A pad token that is not EOS, so padding never teaches the model to stop (or not to).

    Many checkpoints set pad = EOS (deepseek-coder does, SmolLM2 does). When the vocabulary already
    holds a special pad token (DeepSeek's `<｜▁pad▁｜>`, `<pad>`, ...) it is used, else a document
    separator the chat format never writes (`<|endoftext|>`: Qwen's own pad); adding a new token would
    change the vocabulary under the base model, so that is left to the user, with this error."""
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_tokens) | {t.content for t in tokenizer.added_tokens_decoder.values()}
    pads = sorted(t for t in special if "pad" in t.lower() and t in vocab)
    separators = [t for t in ("<|endoftext|>",) if t in special and t in vocab and t != tokenizer.bos_token]
    for candidate in pads + separators:
        if vocab[candidate] != tokenizer.eos_token_id:
            tokenizer.pad_token = candidate
            return
    raise UserError(f"{name}: the tokenizer has no pad token distinct from EOS, and none in its vocabulary",
                    "add one (tokenizer.add_special_tokens({'pad_token': ...}) and resize the model's embeddings) "
                    "so the model still learns to stop")


class EarlyStopping:
    """Stop after `patience` evaluations without improving `metric` (losses fall, accuracies rise)."""

    def __init__(self, metric: str | None, patience: int):
        self.metric, self.patience = metric, patience
        self.best: float | None = None
        self.best_step = 0
        self.bad = 0
        self.stop = False

    def see(self, step: int, line: dict) -> None:
        if self.metric is None or line.get(self.metric) is None:
            return
        value = line[self.metric]
        if better(self.metric, value, self.best):
            self.best, self.best_step, self.bad = value, step, 0
        else:
            self.bad += 1
            self.stop = self.bad >= self.patience

    def report(self) -> dict | None:
        if self.metric is None:
            return None
        return {"metric": self.metric, "best": self.best, "best_step": self.best_step, "stopped_early": self.stop}


def _broadcast_stop(acc, stop: bool) -> bool:
    """Rank 0 decides (it evaluates); every rank must leave the loop at the same step."""
    if acc.num_processes == 1:
        return stop
    flag = torch.tensor([1.0 if stop else 0.0], device=acc.device)
    from accelerate.utils import broadcast

    return bool(broadcast(flag, from_process=0).item())


def _total(acc, value: float | int) -> float:
    """Sum of a per-rank number over all ranks (the number itself with one process)."""
    if acc.num_processes == 1:
        return value
    return acc.reduce(torch.tensor(float(value), device=acc.device), reduction="sum").item()


def make_optimizer(cfg: TrainConfig, params):
    """AdamW; QLoRA on CUDA uses bitsandbytes' paged 8-bit AdamW (the guide's 3.2.1), which has no CPU kernel."""
    t = cfg.training
    if cfg.method == "qlora" and torch.cuda.is_available():
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW8bit(params, lr=t.learning_rate, weight_decay=t.weight_decay)
    return torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay)


@torch.no_grad()
def _split(files: list[str], cfg: TrainConfig) -> tuple[list[Conversation], list[Conversation], dict]:
    convs, counts = load_conversations(files)
    if cfg.data.validation:
        return convs, [], counts
    from dsft.data.dedup import digest, normal_form
    from dsft.data.split import validation_rows

    held = validation_rows(["all"] * len(convs), [digest(normal_form(c)) for c in convs], cfg.data.val_ratio,
                           cfg.training.seed)
    return ([c for i, c in enumerate(convs) if i not in held], [c for i, c in enumerate(convs) if i in held], counts)


@dataclass
class Plan:
    """Every micro-batch of the run, in order: phases one after another (curriculum), each with its
    own data and epochs, length-grouped and shuffled per epoch by the seed. A pure function of the
    config, which is what makes --resume exact."""

    examples: list[Example]
    validation: list[Example]
    validation_convs: list[Conversation]
    micro: list[list[int]]
    phase_of_batch: list[str]
    skipped: list[str]
    counts: dict
    augmented: int = 0  # copy-augmented variants added to the training rows


def plan(cfg: TrainConfig, tokenizer) -> Plan:
    from dsft.train.config import Phase

    t = cfg.training
    phases = cfg.data.curriculum or [Phase(name="all", train=cfg.data.train, epochs=t.epochs)]
    examples, micro, names, skipped, counts = [], [], [], [], {}
    held_out: list[Conversation] = []
    augmented = 0
    for k, phase in enumerate(phases):
        convs, held, counts[phase.name] = _split(phase.train, cfg)
        if cfg.data.copy_augment:  # after the split: held-out rows are never varied
            from dsft.data.augment import augment, token_words

            extra = augment(convs, cfg.data.copy_augment, t.seed + k, token_words(tokenizer))
            convs, augmented = convs + extra, augmented + len(extra)
        ex, bad = tokenize(convs, tokenizer, cfg.data.max_length)
        held_out += held
        skipped += bad
        offset, lengths = len(examples), [len(e.ids) for e in ex]
        examples += ex
        n_batches = math.ceil(math.ceil(len(ex) / t.batch_size) * phase.epochs)
        batches = [[offset + i for i in b] for epoch in range(math.ceil(phase.epochs))
                   for b in length_grouped_batches(lengths, t.batch_size, t.seed, epoch)][:n_batches]
        micro += batches
        names += [phase.name] * len(batches)
    if cfg.data.validation:
        held_out = load_conversations(cfg.data.validation)[0]
    validation = tokenize(held_out, tokenizer, cfg.data.max_length)[0]
    return Plan(examples, validation, held_out, micro, names, skipped, counts, augmented)


class Interrupted(Exception):
    """`stop()` asked the run to end: a checkpoint at `step` was saved first, so `resume` continues it."""

    def __init__(self, step: int, checkpoint: Path):
        super().__init__(f"stopped at step {step}; checkpoint {checkpoint}")
        self.step, self.checkpoint = step, checkpoint


def keep_best_metric(cfg: TrainConfig, callbacks: Sequence[TrainingCallback] = ()) -> str | None:
    """The metric whose best evaluation the run keeps: `auto` is the first callback's task metric
    (exact arguments, when a tool-accuracy callback has tool rows to generate on: the task a
    tool-use run is for), else the eval loss."""
    t = cfg.training
    if t.keep_best != "auto":
        return t.keep_best
    if not t.eval_every and t.time_budget is None:
        return None
    return next((m for c in callbacks if (m := c.task_metric())), "eval_loss")


def _taken(out: Path) -> tuple[str, str]:
    """What `--out` already holds, and what to do: a finished or an unfinished run, or other files."""
    if not (out / "config.yaml").is_file():
        return (f"--out {out} already holds files that are not a dsft run",
                "choose another --out (dsft will not delete what it did not write)")
    if (out / "run.json").is_file():
        return (f"--out {out} holds a finished run", "choose another --out, or replace it with --overwrite")
    last = checkpoint.latest(out)
    where = f"its last checkpoint is {last.name}" if last else "it stopped before its first checkpoint"
    return (f"--out {out} holds an unfinished run ({where})",
            f"continue it with `dsft train --resume {out}`, start it over with --overwrite, or choose another --out")


def clear_run_folder(out: Path) -> None:
    """Empty `out` for a fresh start, only if it is a dsft run folder (or empty): --overwrite must
    never delete a folder of the user's that a typo pointed at."""
    import shutil

    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out} is a file", "give a folder for the run")
    if any(out.iterdir()) and not (out / "config.yaml").is_file():
        raise UserError(f"--overwrite: {out} is not a dsft run folder (no config.yaml), so it is left alone",
                        "choose another --out, or delete the folder yourself")
    shutil.rmtree(out)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def train(cfg: TrainConfig, progress=None, resume: bool = False, stop=None, overwrite: bool = False,
          say=None, callbacks: Sequence[TrainingCallback] = ()) -> RunResult:
    """Train per `cfg`; with `resume`, continue the run in `cfg.output.dir` from its last checkpoint
    (one stopped before its first checkpoint starts again there from step 0; a finished one is not
    trained again: its figures are returned, `already_finished` set). `overwrite` starts over in an
    earlier run's folder. `say(message)` tells the user what they should know about the run
    (default: a warning on stderr); the same lines are kept in run.json's `notes`.

    `stop`, called after every optimizer step, ends the run cleanly when it returns True: a
    checkpoint is saved and `Interrupted` raised (how a job is cancelled or a worker shut down).
    `callbacks` report figures beside the eval loss at each evaluation (train/callbacks.py; `dsft
    train` and the job queue pass eval's ToolAccuracy); a metric the config keeps or stops on must
    be one of theirs.

    The run is a recipe in torchtune's shape: `_Recipe.setup` (model, data, optimizer, schedule,
    resume), `step` (one optimizer step), `after_step` (budget fitting, logging, evaluation,
    checkpoints, stopping), `finish` (the kept weights, run.json, the report)."""
    out = Path(cfg.output.dir)
    if overwrite:
        clear_run_folder(out)
    elif resume and (out / "run.json").is_file():
        return RunResult.of_finished(out)
    elif not resume and out.exists() and any(out.iterdir()):
        raise UserError(*_taken(out))
    check_metrics(cfg, callbacks)
    recipe = _Recipe(cfg, out, callbacks, progress, stop, say)
    recipe.setup(resume)
    try:
        while recipe.step < recipe.schedule.total:
            recipe.train_step()
            if recipe.after_step():
                break
    finally:  # an interrupted or failed run still leaves complete metrics and closed sinks
        recipe.close()
    return recipe.finish()


class _Recipe:
    """One run's state between its phases (see `train`)."""

    def __init__(self, cfg: TrainConfig, out: Path, callbacks: Sequence[TrainingCallback], progress, stop, say):
        self.cfg, self.out, self.callbacks = cfg, out, callbacks
        self.progress, self.stop, self.say = progress, stop, say or _warn
        self.t = cfg.training
        self.metrics = None
        self.sinks: list = []

    # ------------------------------------------------------------------ setup
    def setup(self, resume: bool) -> None:
        from accelerate import Accelerator

        from dsft.train import memory
        from dsft.train.config import _flatten
        from dsft.train.loggers import open_sinks

        cfg, t, out = self.cfg, self.t, self.out
        if t.threads:
            torch.set_num_threads(t.threads)
        torch.manual_seed(t.seed)
        self.started = time.perf_counter()  # a time budget counts from here: loading and tokenizing are training time
        model, tokenizer = load_model(cfg)
        p = self.plan = plan(cfg, tokenizer)
        self.tokenizer = tokenizer
        if not p.examples:
            raise UserError("no trainable examples", "check the data with `dsft data validate`")
        memory.check(model, cfg, max(len(e.ids) for e in p.examples))
        model = wrap(model, cfg)
        self.notes = list(getattr(model, "dsft_notes", []))
        for note in self.notes:
            self.say(note)
        if t.gradient_checkpointing and cfg.method != "qlora":
            model.gradient_checkpointing_enable()
            if cfg.method != "full":  # frozen embeddings: make checkpointed blocks see inputs that need grad
                model.enable_input_require_grads()
        self.share_prefix = t.shared_prefix and not t.gradient_checkpointing and cfg.method != "prefix"
        self.weights = None
        if t.decision_weight != 1:
            self.weights = torch.ones(len(tokenizer))
            self.weights[decision_tokens(tokenizer)] = t.decision_weight
        model.train()
        # One process by default; under `accelerate launch` each rank takes its share of every step.
        acc = self.acc = Accelerator(cpu=not torch.cuda.is_available())
        self.world, self.rank, self.main = acc.num_processes, acc.process_index, acc.is_main_process
        self.params = [q for q in model.parameters() if q.requires_grad]
        optimizer = make_optimizer(cfg, self.params)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.bare = acc.unwrap_model(self.model)
        self.per_step = t.grad_accum * self.world
        micro = p.micro
        # Every rank must take every step (collectives), so with several ranks a partial last step is dropped.
        planned = math.ceil(len(micro) / self.per_step) if self.world == 1 else len(micro) // self.per_step
        if planned == 0:
            raise UserError(f"{len(micro)} micro-batches cannot feed {self.world} processes x {t.grad_accum} "
                            "accumulation", "use more data, a smaller --batch-size or fewer processes")
        self.schedule = Schedule(planned, t.warmup_ratio, t.eval_every)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        out.mkdir(parents=True, exist_ok=True)
        self.step, tokens_before, pads_before, self.resumed_from = 0, 0, 0, None
        last = checkpoint.latest(out) if resume else None
        if resume and last is None:  # stopped before its first checkpoint: nothing to keep, start it again here
            for stale in ("metrics.jsonl", "schedule.json"):
                (out / stale).unlink(missing_ok=True)
            resume = False
        if resume:
            self.schedule.restore(out)
            self.step = checkpoint.load(last, self.bare, self.optimizer, self.scheduler)
            before = checkpoint.progress(last)  # a resumed run's figures cover the whole run, not this segment
            self.started -= before.get("seconds", 0.0)
            tokens_before, pads_before = before.get("tokens", 0), before.get("pads", 0)
            self.resumed_from = self.step
            if self.main:
                kept = [x for x in (out / "metrics.jsonl").read_text().splitlines()
                        if json.loads(x)["step"] <= self.step]
                (out / "metrics.jsonl").write_text("".join(x + "\n" for x in kept))
        elif self.main:
            cfg.save(out / "config.yaml")
        self.resumed = resume
        acc.wait_for_everyone()
        if self.main:
            self.sinks = open_sinks(t.report_to, out, _flatten(cfg.model_dump(mode="json")))
            self.metrics = open(out / "metrics.jsonl", "a", encoding="utf-8")
        for callback in self.callbacks:
            callback.on_train_begin(cfg, p.validation_convs)
        self.stopper = EarlyStopping(t.early_stopping_metric, t.early_stopping_patience)
        self.keeper = BestKeeper(out, keep_best_metric(cfg, self.callbacks)) if self.main else None
        self.budget = None if resume and self.schedule.fitted else t.time_budget  # a resumed run keeps its fit
        self.tokens, self.pads, self.last_loss = tokens_before, pads_before, float("nan")
        self.window_loss, self.window_n = 0.0, 0
        self.timed_from, self.probe = None, {}
        self.eval_clock = [0.0, 0.0]  # seconds spent evaluating in all, and in the latest evaluation
        self.saved_at = time.perf_counter()  # `save_minutes` counts from here (and from each checkpoint)

    # ------------------------------------------------------------------ one step
    def train_step(self) -> None:
        """One optimizer step over this rank's micro-batches (gradient accumulation)."""
        t, acc, micro = self.t, self.acc, self.plan.micro
        mine = [micro[k] for a in range(t.grad_accum)
                if (k := self.step * self.per_step + a * self.world + self.rank) < len(micro)]
        group = [collate([self.plan.examples[i] for i in idx], self.tokenizer.pad_token_id) for idx in mine]
        supervised = _total(acc, sum(int((b["labels"][:, 1:] != -100).sum()) for b, _ in group))
        step_loss = 0.0
        for batch, n_pad in group:
            try:
                moved = {k: v.to(acc.device) for k, v in batch.items()}
                if self.weights is None:
                    loss, _ = loss_sum(self.model, moved, self.share_prefix)
                    followed = loss
                else:  # the gradient follows the weighted sum; the plain one is reported
                    followed, loss, _ = weighted_loss_sum(self.model, moved, self.weights, self.share_prefix)
                acc.backward(followed * self.world / supervised)  # ranks' gradients are averaged: this makes them a sum
            except torch.OutOfMemoryError:
                raise UserError(*_out_of_memory(self.out, self.step, batch, t)) from None
            step_loss += loss.item()
            self.tokens += int(batch["attention_mask"].sum())
            self.pads += n_pad
        step_loss = _total(acc, step_loss)
        if not math.isfinite(step_loss):
            raise RuntimeError(f"loss became {step_loss} at step {self.step + 1}: stopped, nothing saved; "
                               "lower the learning rate")
        acc.clip_grad_norm_(self.params, t.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.window_loss, self.window_n = self.window_loss + step_loss, self.window_n + supervised

    # ------------------------------------------------------------------ between steps
    def evaluate_now(self, line: dict) -> None:
        t0 = time.perf_counter()
        line["eval_loss"] = eval_loss(self.bare, self.plan.validation, self.tokenizer.pad_token_id, self.t.batch_size,
                                      self.share_prefix)
        for callback in self.callbacks:
            line.update(callback.on_evaluate(self.bare, self.tokenizer, self.step))
        self.bare.train()
        self.stopper.see(self.step, line)
        if self.keeper is not None:
            if self.step < self.schedule.total // 10:  # the total as fitted now: a refit may shrink it later
                line["too_early_to_keep"] = True
            elif self.keeper.see(self.step, line, self.bare):
                line["best"] = True
        self.eval_clock[1] = time.perf_counter() - t0
        self.eval_clock[0] += self.eval_clock[1]
        line["eval_seconds"] = round(self.eval_clock[1], 2)  # what the budget is spending on evaluations

    def so_far(self) -> dict:
        """The run's figures until now, kept in a checkpoint for a resumed run's report."""
        return {"tokens": self.tokens, "pads": self.pads, "seconds": round(time.perf_counter() - self.started, 3)}

    def after_step(self) -> bool:
        """Fit the budget, log, evaluate, checkpoint; True when the run should leave its loop."""
        t, schedule, step, main = self.t, self.schedule, self.step, self.main
        if self.budget is not None and schedule.fitted is None:
            if self.timed_from is None:  # the first step pays one-off costs: time the ones after it
                self.timed_from = (step, time.perf_counter(), self.eval_clock[0])
            elif step - self.timed_from[0] >= CALIBRATION_STEPS or step >= schedule.total:
                step_seconds = (time.perf_counter() - self.timed_from[1]) / (step - self.timed_from[0])
                left = self.budget - (time.perf_counter() - self.started)
                if (schedule.total - step) * step_seconds < EPOCHS_FIT_SHARE * left:
                    schedule.within(self.budget, step, step_seconds)
                else:
                    self.probe = {}
                    if main:
                        self.evaluate_now(self.probe)
                    schedule.fit(self.budget, time.perf_counter() - self.started, step, step_seconds,
                                 self.eval_clock[1], t.evals, reserve=self.eval_clock[1] + 5)
                _broadcast_fit(self.acc, schedule)
                self.timed_from = (step, time.perf_counter(), self.eval_clock[0])
                if main:
                    schedule.save(self.out)
        eval_every = schedule.eval_every
        if main and (step % t.log_every == 0 or step == schedule.total or self.probe
                     or (eval_every and step % eval_every == 0)):
            self.last_loss = self.window_loss / self.window_n
            elapsed = time.perf_counter() - self.started
            micro = self.plan.micro
            line = {"step": step, "phase": self.plan.phase_of_batch[min(step * t.grad_accum, len(micro)) - 1],
                    "loss": round(self.last_loss, 6), "lr": self.scheduler.get_last_lr()[0],
                    "tokens_per_s": round(self.tokens * self.world / elapsed, 1)}
            self.window_loss, self.window_n = 0.0, 0
            if self.probe:  # the evaluation that timed itself for the budget is this step's
                line.update(self.probe)
                self.probe = {}
            elif eval_every and (step % eval_every == 0 or step == schedule.total):
                self.evaluate_now(line)
            self.metrics.write(json.dumps(line) + "\n")
            self.metrics.flush()
            for sink in self.sinks:
                sink.log(step, {k: v for k, v in line.items() if isinstance(v, float | int) and k != "step"})
            if self.progress:
                self.progress(step, schedule.total, line)
        # Refit a few times per evaluation interval: a run that was slowed for a while (measured: a test
        # suite beside it) otherwise ends minutes early, its last fit planned for the slow spell.
        refit_every = max(MIN_EVAL_INTERVAL, (eval_every or 0) // 4)
        if self.budget is not None and schedule.fitted and eval_every and step % refit_every == 0 \
                and step > self.timed_from[0] and step < schedule.total:
            # The steps since the last fit predict the next ones: a machine that was busy for a while
            # (another job) no longer makes the rest of the run plan for its slowest minutes.
            trained_for = time.perf_counter() - self.timed_from[1] - (self.eval_clock[0] - self.timed_from[2])
            schedule.refit(self.budget, time.perf_counter() - self.started, step,
                           trained_for / (step - self.timed_from[0]), self.eval_clock[1],
                           reserve=self.eval_clock[1] + 5, at_eval=step % eval_every == 0)
            self.timed_from = (step, time.perf_counter(), self.eval_clock[0])
            _broadcast_fit(self.acc, schedule)
            if main:
                schedule.save(self.out)
        if _broadcast_stop(self.acc, self.stopper.stop):
            return True
        due = (t.save_every and step % t.save_every == 0) or \
            (t.save_minutes and time.perf_counter() - self.saved_at >= 60 * t.save_minutes)
        if main and due and step < schedule.total:
            checkpoint.save(self.out, step, self.bare, self.optimizer, self.scheduler, self.so_far())
            self.saved_at = time.perf_counter()
        if self.stop is not None and step < schedule.total and self.stop():
            saved = checkpoint.latest(self.out)
            if saved is None or saved.name != f"step-{step}":
                saved = checkpoint.save(self.out, step, self.bare, self.optimizer, self.scheduler, self.so_far())
            raise Interrupted(step, saved)
        return False

    def close(self) -> None:
        if self.metrics:
            self.metrics.close()
        for sink in self.sinks:
            sink.close()

    # ------------------------------------------------------------------ finish
    def finish(self) -> RunResult:
        """The kept weights saved with run.json and the report (rank 0); the figures of the run."""
        from dsft.train.report import write_run_report

        acc, out, p, step = self.acc, self.out, self.plan, self.step
        tokens, pads = int(_total(acc, self.tokens)), int(_total(acc, self.pads))
        acc.wait_for_everyone()
        seconds = time.perf_counter() - self.started
        if not self.main:
            return RunResult(out, step, self.last_loss, None, tokens, pads / max(1, tokens + pads), seconds,
                             is_main=False)
        kept = self.keeper.restore(self.bare, step)
        final_eval = eval_loss(self.bare, p.validation, self.tokenizer.pad_token_id, self.t.batch_size,
                               self.share_prefix)
        _save(self.bare, self.tokenizer, self.cfg, out)
        result = RunResult(out, step, self.last_loss, final_eval, tokens, pads / max(1, tokens + pads), seconds)
        tokenizer = self.tokenizer
        (out / "run.json").write_text(json.dumps({
            "steps": step, "train_loss": self.last_loss, "eval_loss": final_eval, "tokens": tokens,
            "pad_fraction": result.pad_fraction, "seconds": round(seconds, 1),
            "tokens_per_s": round(result.tokens_per_s, 1), "data": p.counts, "skipped": p.skipped,
            "train_examples": len(p.examples), "validation_examples": len(p.validation),
            "augmented": p.augmented, "resumed": self.resumed, "resumed_from_step": self.resumed_from,
            "notes": self.notes, "processes": self.world, "early_stopping": self.stopper.report(),
            "kept": kept, "schedule": self.schedule.fitted,
            "chat": {"family": tokenizer.init_kwargs.get("chat_family"),
                     "options": tokenizer.init_kwargs.get("chat_options")},
        }, indent=2), encoding="utf-8")
        write_run_report(out, self.cfg, result)
        return result


def _out_of_memory(out: Path, step: int, batch: dict, t) -> tuple[str, str]:
    """An OOM the memory check did not foresee (other processes on the GPU, fragmentation): what ran
    out, the checkpoint there is, and what to change."""
    rows, length = batch["input_ids"].shape
    last = checkpoint.latest(out)
    kept = f"; the last checkpoint is {last}" if last else "; no checkpoint was saved yet"
    fix = f"--batch-size {max(1, t.batch_size // 2)} (training.grad_accum: {t.grad_accum * 2} keeps the step)"
    if not t.gradient_checkpointing:
        fix += ", training.gradient_checkpointing: true"
    return (f"out of GPU memory at step {step + 1} on a micro-batch of {rows} x {length} tokens{kept}",
            f"{fix}, or a shorter --max-length; then start over with --overwrite")


def _broadcast_fit(acc, schedule: Schedule) -> None:
    """Rank 0 timed the evaluation; every rank must take the same number of steps."""
    if acc.num_processes == 1:
        return
    from accelerate.utils import broadcast

    numbers = torch.tensor([float(schedule.total), float(schedule.eval_every or 0)], device=acc.device)
    numbers = broadcast(numbers, from_process=0)
    schedule.total, schedule.eval_every = int(numbers[0].item()), int(numbers[1].item()) or None


def _save(model, tokenizer, cfg: TrainConfig, out: Path) -> None:
    for p in model.parameters():
        if p.requires_grad and not torch.isfinite(p).all():
            raise RuntimeError("non-finite weights: refusing to save")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
