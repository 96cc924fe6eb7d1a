"""The training loss of a batch, computed only where it is needed.

Two savings, both exact (same loss and gradients as the plain forward, to float rounding; tested):

- Logits only at supervised positions. The output layer is vocabulary x hidden per position; an
  example is mostly prompt (system text, tool schemas, the user's turn), so computing logits for
  every position spends most of a step on numbers the loss ignores. transformers' `logits_to_keep`
  takes the positions.
- A shared prefix computed once. Rows of one dataset usually start with the same system text and
  tool schemas (hundreds of tokens; the supervised reply is tens). When every row of a batch starts
  with the same unsupervised tokens, they are run once, their key/value cache is expanded to the
  batch, and only the rest of each row is run on top of it. Gradients flow through the cache into
  the prefix, so the prefix's weights learn as they would in the plain forward.

Measured on the tiny DeepSeek-V3 model, 8 tool-use rows of ~1,000 tokens (822 shared, ~114
supervised), forward + backward on 2 CPU cores: plain 5.3 s, logits kept 1.2 s, with the shared
prefix 0.21 s.
"""

from __future__ import annotations

import inspect
from functools import cache

import torch

from dsft.train.batching import Example, collate, length_grouped_batches

MIN_PREFIX = 16  # below this, running the prefix separately costs more than it saves


@cache
def _accepts(cls: type, name: str) -> bool:
    return name in inspect.signature(cls.forward).parameters


def _base(model):
    """The transformers model under a PEFT or accelerate wrapper (whose forward passes kwargs on)."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


def shared_prefix(batch: dict[str, torch.Tensor]) -> int:
    """How many leading tokens every row shares with none of them supervised, less one: the last
    shared token is run with each row, so its logit (which predicts the row's next token) exists."""
    ids, labels = batch["input_ids"], batch["labels"]
    if ids.size(0) < 2:
        return 0
    same = (ids == ids[:1]).all(0) & (labels == -100).all(0) & (batch["attention_mask"] == 1).all(0)
    return max(0, int(same.int().cumprod(0).sum()) - 1)


def _logits_and_targets(model, batch: dict[str, torch.Tensor], share_prefix: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits that predict supervised positions, and their targets (-100 where unsupervised)."""
    base = type(_base(model))
    ids, attention, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    start = shared_prefix(batch) if share_prefix and _accepts(base, "use_cache") else 0
    kwargs = {}
    if start >= MIN_PREFIX:
        cache_arg = "cache" if _accepts(base, "cache") else "past_key_values"
        pre = model(input_ids=ids[:1, :start], attention_mask=attention[:1, :start], use_cache=True,
                    **({"logits_to_keep": 1} if _accepts(base, "logits_to_keep") else {}))
        kv = getattr(pre, "cache", None) or pre.past_key_values
        rows = ids.size(0)
        for layer in kv.layers:
            layer.keys = layer.keys.expand(rows, *layer.keys.shape[1:])
            layer.values = layer.values.expand(rows, *layer.values.shape[1:])
        kwargs = {cache_arg: kv, "use_cache": True}
    else:
        start = 0
    targets = labels[:, start + 1:]
    if _accepts(base, "logits_to_keep"):
        keep = (targets != -100).any(0).nonzero().squeeze(1)
        kwargs["logits_to_keep"] = keep
        targets = targets[:, keep]
        logits = model(input_ids=ids[:, start:], attention_mask=attention, **kwargs).logits
    else:
        logits = model(input_ids=ids[:, start:], attention_mask=attention, **kwargs).logits[:, :-1]
    return logits, targets


def loss_sum(model, batch: dict[str, torch.Tensor], share_prefix: bool = True) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over supervised tokens, and their count."""
    logits, targets = _logits_and_targets(model, batch, share_prefix)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                                             ignore_index=-100, reduction="sum")
    return loss, int((targets != -100).sum())


def decision_tokens(tokenizer) -> list[int]:
    """Ids of the tokens that end a JSON value and decide what follows: another key or item (`,"`,
    `","`), or the end of an object or array (`}`, `"}`, `]}` ...): every token made only of
    `" , } ]` with at least one of `, } ]`."""
    ids = []
    for token, i in tokenizer.get_vocab().items():
        text = tokenizer.convert_tokens_to_string([token])
        if text and set(text) <= set('",}]') and set(text) & set(",}]"):
            ids.append(i)
    return sorted(ids)


def weighted_loss_sum(model, batch: dict[str, torch.Tensor], weights: torch.Tensor,
                      share_prefix: bool = True) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The summed cross-entropy with each supervised token's term times `weights[target]` (what the
    gradient follows), the plain sum (what is reported, so losses stay comparable), and the count."""
    logits, targets = _logits_and_targets(model, batch, share_prefix)
    flat = targets.reshape(-1)
    per = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), flat, ignore_index=-100,
                                            reduction="none")
    w = weights.to(per.device)[flat.clamp(min=0)]
    return (per * w).sum(), per.detach().sum(), int((flat != -100).sum())


def eval_loss(model, examples: list[Example], pad_id: int, batch_size: int, share_prefix: bool = True) -> float | None:
    """Mean loss per trained token over `examples` (validation during training, perplexity in eval)."""
    if not examples:
        return None
    model.eval()
    total, count = 0.0, 0
    for idx in length_grouped_batches([len(e.ids) for e in examples], batch_size, 0, 0):
        batch, _ = collate([examples[i] for i in idx], pad_id)
        loss, n = loss_sum(model, batch, share_prefix)
        total, count = total + loss.item(), count + n
    model.train()
    return total / max(count, 1)
