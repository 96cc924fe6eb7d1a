"""Tool-use evaluation: generate the next assistant turn greedily and compare it with the reference.

Prompts come from `render_prompt` and generations are read by the family's parser: the same
renderer and parser as training and serving. The example's first trained assistant turn is the
one scored; everything before it is the prompt.

Metrics are those of `tool_metrics` (BFCL rules), averaged over examples; `parse_rate` counts
generations that parse (a well-formed tool-call block, or plain text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dsft.chat.parse import parse_assistant
from dsft.chat.render import render_prompt
from dsft.data.conversation import Conversation, ToolCall
from dsft.eval.tool_metrics import ExampleScore, aggregate, score_calls


@dataclass
class Case:
    prompt: Conversation
    reference: list[ToolCall]
    reference_text: str | None


@dataclass
class Scores:
    examples: list[ExampleScore] = field(default_factory=list)
    details: list[dict] = field(default_factory=list)
    text: list[tuple[str | None, str | None, str | None]] = field(default_factory=list)  # (pred, ref, label)
    code: list[bool] = field(default_factory=list)  # examples with metadata.tests: did the reply pass?
    extra: dict = field(default_factory=dict)  # e.g. perplexity, computed from the loss

    def add(self, case: Case, calls: list[ToolCall], parsed: bool, content: str | None, generated: str,
            names: list[str] | None = None) -> None:
        """Score one prediction for `case` (however it was produced) and keep what the summary needs;
        `names`: the tools the reply names, calls whose arguments did not parse included."""
        result = score_calls(calls, case.reference, case.prompt.tools or [], parsed=parsed, names=names)
        self.examples.append(result)
        tests = case.prompt.metadata.get("tests")
        if isinstance(tests, str) and tests.strip():
            from dsft.eval.code_exec import extract_code, passes

            self.code.append(passes(extract_code(content or ""), tests))
        if not case.reference:  # a text reply: scored as text too
            label = case.prompt.metadata.get("label")
            self.text.append((content, case.reference_text, None if label is None else str(label)))
        self.details.append({"generated": generated, "content": content or "", "parsed": parsed,
                             "name_ok": result.name_match, "exact": result.exact})

    def summary(self) -> dict:
        from dsft.eval.text_metrics import text_scores

        out = {**aggregate(self.examples), **self.extra}
        out["text"] = text_scores([p for p, _, _ in self.text], [r for _, r, _ in self.text],
                                  [label for _, _, label in self.text])
        if self.code:
            from dsft.eval.code_exec import pass_at_k

            out["code"] = {"n": len(self.code), "pass@1": sum(pass_at_k(1, int(ok), 1) for ok in self.code) / len(self.code)}
        from dsft.eval.diagnostics import repetition

        out["diagnostics"] = {"repetition": repetition([d["generated"] for d in self.details])}
        return out


def cases(convs: list[Conversation]) -> list[Case]:
    out = []
    for conv in convs:
        k = next((i for i, m in enumerate(conv.messages) if m.trained), None)
        if k is None or k == 0:
            continue
        prefix = conv.model_copy(update={"messages": conv.messages[:k]})
        turn = conv.messages[k]
        out.append(Case(prefix, list(turn.tool_calls or ()), turn.content))
    return out


def score_one(generated: str, case: Case, scores: Scores, parse=parse_assistant) -> None:
    parsed = parse(generated)
    scores.add(case, parsed.tool_calls, parsed.ok, parsed.content, generated, names=parsed.names)


class RepetitionStop:
    """Ends a row whose continuation has fallen into a loop: its last `repeats` x P tokens are one
    pattern of P <= `max_period` tokens over and over. Why: a briefly trained model that loses its
    place in a value writes `corcorcor...` or the same email again until the token budget runs out,
    and such rows made most of an evaluation's time (measured: 47-53 s for 48 rows, the looping
    ones running to the limit). A row cut here is scored as what it wrote: a wrong call. A
    correct answer holding 16 repeats of a 1-4 token pattern (16 identical digits, a 16-item array
    of one value) would be cut too; that is the price, and it is rare."""

    def __init__(self, prompt_width: int, max_period: int = 4, repeats: int = 16):
        self.width, self.max_period, self.repeats = prompt_width, max_period, repeats

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        new = input_ids[:, self.width:]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for period in range(1, self.max_period + 1):
            span = period * self.repeats
            if new.shape[1] >= span:
                tail = new[:, -span:]
                done |= (tail[:, period:] == tail[:, :-period]).all(dim=1)
        return done


@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int = 8,
             grammars: list[str | None] | None = None, wait_for: list[int | None] | None = None) -> list[str]:
    """Greedy, batched, left-padded; returns the decoded continuation with special tokens kept.
    `grammars` (one per prompt, None = free) hold each row to its tool-call grammar (chat/constrain.py)."""
    model.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    texts: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for row, i in enumerate(idx):
            ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
            attention[row, width - len(prompts[i]):] = 1
        extra = {}
        if grammars is not None and any(grammars[i] for i in idx):
            from transformers import LogitsProcessorList

            from dsft.chat.constrain import GrammarConstraint

            extra["logits_processor"] = LogitsProcessorList([GrammarConstraint(
                tokenizer, [grammars[i] for i in idx], model.config.get_text_config().vocab_size,
                None if wait_for is None else [wait_for[i] for i in idx])])
        from transformers import StoppingCriteriaList

        gen = model.generate(input_ids=ids, attention_mask=attention, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                             stopping_criteria=StoppingCriteriaList([RepetitionStop(width)]), **extra)
        for row, i in enumerate(idx):
            new = [t for t in gen[row, width:].tolist() if t != tokenizer.pad_token_id]
            texts[i] = tokenizer.decode(new, skip_special_tokens=False)
    return [texts[i] for i in range(len(prompts))]


def constraints(family, tokenizer, chosen: list[Case], prompts: list[list[int]]
                ) -> tuple[list[str | None] | None, list[int | None] | None]:
    """Each case's tool-call grammar (None for a case without tools) and the token after which it
    starts (a thinking turn's end of thinking); (None, None) when the family has no call grammar."""
    from dsft.chat.constrain import call_layout, grammar_for, thought_end

    if call_layout(family) is None:
        return None, None
    grammars = [grammar_for(family, tokenizer, c.prompt.tools or []) for c in chosen]
    return grammars, [thought_end(tokenizer, p) if g else None for g, p in zip(grammars, prompts)]


def room_for_answers(convs: list[Conversation], tokenizer, margin: int = 16) -> int:
    """Tokens to generate: the longest scored reference turn (its call block or reply and EOS) plus a
    margin, so a long but correct call is never cut off and scored as wrong."""
    from dsft.chat.render import RenderError, render

    longest = 1
    for conv in convs:
        try:
            mask = render(conv, tokenizer).mask
        except RenderError:
            continue
        first = mask.index(1) if 1 in mask else len(mask)
        run = next((k for k, m in enumerate(mask[first:]) if not m), len(mask) - first)
        longest = max(longest, run)
    return longest + margin


def evaluate(model, tokenizer, convs: list[Conversation], max_new_tokens: int | None = None, limit: int | None = None,
             batch_size: int = 32, samples: int = 1, temperature: float = 0.8, perplexity_too: bool = True,
             constrain: bool = True) -> Scores:
    """Greedy scoring of every example; with `samples` > 1, code examples (metadata.tests) are
    also sampled `samples` times at `temperature` for pass@k (k = 1, 5, 10 up to `samples`).
    `max_new_tokens` None: room for the longest reference turn (`room_for_answers`). `constrain`
    decodes tool calls under the grammar `dsft serve` uses (chat/constrain.py), so the figures are
    the served model's; the summary's `constrained` says whether it applied."""
    convs = convs[:limit] if limit else convs
    chosen = cases(convs)
    if max_new_tokens is None:
        max_new_tokens = room_for_answers(convs, tokenizer)
    from dsft.chat.detect import of

    family = of(tokenizer)[0]  # generations are read in the format the prompts were written in
    prompts = [render_prompt(c.prompt, tokenizer) for c in chosen]
    scores = Scores()
    grammars, wait_for = constraints(family, tokenizer, chosen, prompts) if constrain else (None, None)
    scores.extra["constrained"] = bool(grammars and any(grammars))
    for text, case in zip(generate(model, tokenizer, prompts, max_new_tokens, batch_size, grammars, wait_for), chosen):
        score_one(text, case, scores, family.parse)
    if perplexity_too:
        scores.extra["perplexity"] = perplexity(model, tokenizer, convs, batch_size)
    coded = [(case, prompt) for case, prompt in zip(chosen, prompts) if case.prompt.metadata.get("tests")]
    if samples > 1 and coded:
        scores.extra["code_sampled"] = _pass_at_k(model, tokenizer, coded, max_new_tokens, samples, temperature)
    return scores


@torch.no_grad()
def _pass_at_k(model, tokenizer, coded, max_new_tokens: int, samples: int, temperature: float) -> dict:
    from dsft.chat.parse import parse_assistant
    from dsft.eval.code_exec import extract_code, pass_at_k, passes

    model.eval()
    ks = [k for k in (1, 5, 10) if k <= samples]
    totals = {k: 0.0 for k in ks}
    for case, prompt in coded:
        ids = torch.tensor([prompt])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                             temperature=temperature, num_return_sequences=samples, max_new_tokens=max_new_tokens,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        texts = [tokenizer.decode([t for t in row[len(prompt):].tolist() if t != tokenizer.pad_token_id])
                 for row in out]
        correct = sum(passes(extract_code(parse_assistant(t).content or ""), case.prompt.metadata["tests"])
                      for t in texts)
        for k in ks:
            totals[k] += pass_at_k(samples, correct, k)
    return {"n": len(coded), "samples": samples, "temperature": temperature,
            **{f"pass@{k}": totals[k] / len(coded) for k in ks}}


def perplexity(model, tokenizer, convs: list[Conversation], batch_size: int = 8,
               max_length: int = 2048) -> float | None:
    """exp(mean negative log-likelihood per supervised token): assistant tokens with weight 1 only."""
    import math

    from dsft.train.batching import tokenize
    from dsft.train.loss import eval_loss

    examples, _ = tokenize(convs, tokenizer, max_length)
    loss = eval_loss(model, examples, tokenizer.pad_token_id, batch_size)
    return None if loss is None else math.exp(loss)


def base_of(path: str) -> str | None:
    """The base model of a run folder (adapter or full finetune), None for a plain model folder."""
    folder = Path(path)
    adapter = folder / "adapter_config.json"
    if adapter.is_file():
        return json.loads(adapter.read_text())["base_model_name_or_path"]
    if (folder / "config.yaml").is_file():
        import yaml

        return (yaml.safe_load((folder / "config.yaml").read_text()) or {}).get("model", {}).get("name_or_path")
    return None


def load_for_eval(path: str):
    """A run folder (LoRA adapter or full model) or a base model folder, ready for generation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dsft.errors import UserError
    from dsft.model.locate import locate
    from dsft.train.targets import exact_targets

    path = locate(path)
    folder = Path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        adapter = folder / "adapter_config.json"
        if adapter.exists():
            from dsft.train.methods import quiet_adapter_libraries

            quiet_adapter_libraries()  # before peft is imported: it imports bitsandbytes, which logs then
            from peft import PeftModel

            base_name = locate(json.loads(adapter.read_text())["base_model_name_or_path"], f"{path}'s base model")
            base = AutoModelForCausalLM.from_pretrained(base_name, use_safetensors=True, dtype=torch.float32)
            with exact_targets(base):
                model = PeftModel.from_pretrained(base, path)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load model {path!r}: {str(e).splitlines()[0]}",
                        "give a run folder from `dsft train` or a model folder") from None
    return model, tokenizer
