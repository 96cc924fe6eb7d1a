"""A copy circuit written into the tiny DeepSeek-V3 model's weights before any training.

Why: tool-use arguments are mostly copied from the user's words, and a model learning from
scratch on 2 CPU cores does not discover copying in time. Copying needs an induction circuit (a
head that writes "which token came before me" into each position, and a later head that finds
where the current token stood before and reads what followed it); gradient descent finds that
composition only after thousands of steps, measured here: the tiny model did not copy an 8-token
span at random positions after 2,100 steps, and after a 10-minute run each digit of a copied
tracking number still cost ln 10. A real DeepSeek model arrives with such circuits from
pretraining; the embedded default gets them from this construction instead. Nothing here is
fitted to any data: the weights are a function of the model's sizes and the seed.

The layout uses MLA's split of every head into a position-free part (`nope`) and a rotary part
(`rope`): position is matched in the rotary part only, content in the position-free part only.
The residual stream (hidden 128) is cut into subspaces:

  A   dims 0-62    the token's own content (the embedding; the tied output layer reads it)
  C   dim 63       a constant, the handle for attention by position
  B1  dims 64-111  the previous token's content (48-dim projection P of A), written by layer 0
  B2  dims 112-127 the token two back (P's first 16 rows), written by layer 0

Layer 0, heads 0 and 1: query and key from C only, rotary phases set so the score peaks one
(head 0) or two (head 1) positions back; values P·A and P[:16]·A go to B1 and B2.
Layer 1, head 0 (induction): query [P·A, B1[:16]] of this position against key [B1, B2] of an
earlier one, i.e. "the two tokens before that position are the two tokens ending here"; its value
is that position's A, added to A: the model predicts the token that followed last time.
Layer 1, heads 2 and 3 (lookup): values and outputs copy the content of the attended position,
queries and keys keep their random start: *where* to look (the value a `"city":"` should start
with) is what training learns, as a one-layer problem on the features above.
Everything else the circuit does not use starts silent (MLP and expert down-projections zero) or
keeps the default random start (layer-0 heads 2 and 3, the lookup heads' queries and keys).

Measured on 2 cores (held-out tokens, no training): next-token accuracy 0.99 on repeated random
spans, 0.86 on repeated digit strings (a 2-token context is ambiguous there); untrained, 0.00.
"""

from __future__ import annotations

import math

# The sizes the layout above is written for (`build_config` in tiny.py sets them).
LAYOUT = {"hidden_size": 128, "qk_nope_head_dim": 64, "v_head_dim": 64, "qk_rope_head_dim": 32,
          "kv_lora_rank": 128, "q_lora_rank": 64}
CONTENT, CONST, PREV, PREV2 = slice(0, 63), 63, slice(64, 112), slice(112, 128)
LOOKUP_HEADS = (2, 3)


N_PREV, N_PREV2 = PREV.stop - PREV.start, PREV2.stop - PREV2.start


def mismatch(config) -> str | None:
    """What in `config` the layout is not written for; None when it fits."""
    wrong = {k: getattr(config, k, None) for k, v in LAYOUT.items() if getattr(config, k, None) != v}
    if wrong:
        return str(wrong)
    if config.num_attention_heads < 4 or config.num_hidden_layers < 2:
        return "too few heads or layers"
    return None


def check_layout(config) -> None:
    if (wrong := mismatch(config)) is not None:
        raise ValueError(f"the copy circuit is laid out for {LAYOUT}, >= 4 heads and >= 2 layers; this config has "
                         f"{wrong}")


def _rope_amplitudes(theta: float, pairs: int, scaling: float, margin: float):
    """Per-frequency amplitudes so that a head matching by position scores the wanted offset
    `margin` logits above every other offset up to 4,096 back (equal weight on all frequencies)."""
    import torch

    freqs = theta ** (-torch.arange(pairs) / pairs)
    offsets = torch.arange(4096).float()
    score = torch.cos((offsets[:, None] - 1.0) * freqs[None]).sum(1)
    gap = score[1] - torch.cat([score[:1], score[2:]]).max()
    return freqs, torch.full((pairs,), math.sqrt(margin / (gap.item() * scaling) / pairs))


def wire(model, seed: int = 0, match: float = 6.0, copy_gain: float = 3.0, out_scale: float = 0.2,
         position_margin: float = 15.0) -> None:
    """Write the circuit into `model` (a `DeepseekV3ForCausalLM` with the sizes in LAYOUT), in place.

    `match` sharpens the induction head (a 2-token match beats a 1-token one by ~1.6 x match
    logits), `copy_gain` makes a copied token outvote the current one in the tied output layer,
    `out_scale` is the final norm's weight (logits of ~16 for a copied token)."""
    import torch

    config = model.config
    check_layout(config)
    nope, rope, vd, kl = config.qk_nope_head_dim, config.qk_rope_head_dim, config.v_head_dim, config.kv_lora_rank
    qk, kv = nope + rope, nope + vd
    n_content = CONTENT.stop - CONTENT.start
    gen = torch.Generator().manual_seed(seed)
    theta = (config.rope_parameters or {}).get("rope_theta", 10000.0)
    freqs, amp = _rope_amplitudes(theta, rope // 2, qk ** -0.5, position_margin)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        content = torch.randn(emb.shape[0], n_content, generator=gen)
        emb.zero_()
        emb[:, CONTENT] = content / content.norm(dim=1, keepdim=True) * math.sqrt(n_content)
        emb[:, CONST] = 1.0
        out = model.get_output_embeddings()
        if out is not None and out.weight.data_ptr() != emb.data_ptr():  # untied: start as the tied one
            out.weight.copy_(emb)
        proj = torch.linalg.qr(torch.randn(n_content, N_PREV, generator=gen))[0].T  # orthonormal rows
        for index, layer in enumerate(model.model.layers):
            att = layer.self_attn
            for norm in (layer.input_layernorm, layer.post_attention_layernorm, att.q_a_layernorm, att.kv_a_layernorm):
                norm.weight.fill_(1.0)
            qa, qb = att.q_a_proj.weight, att.q_b_proj.weight
            kva, kvb, o = att.kv_a_proj_with_mqa.weight, att.kv_b_proj.weight, att.o_proj.weight
            qa.zero_()
            kva.zero_()
            kva[:kl] = torch.eye(kl)  # the key/value latent is the normalised residual stream
            for head in (0, 1):
                qb[head * qk:(head + 1) * qk].zero_()
                kvb[head * kv:(head + 1) * kv].zero_()
            o[:, :2 * vd] = 0.0
            mlp = layer.mlp
            if hasattr(mlp, "experts"):
                mlp.shared_experts.down_proj.weight.zero_()
                for name, param in mlp.experts.named_parameters():
                    if "down" in name:
                        param.zero_()
            else:
                mlp.down_proj.weight.zero_()
            if index == 0:
                _previous_token_heads(qa, qb, kva, kvb, o, proj, freqs, amp, nope, qk, kv, vd, kl)
            elif index == 1:
                _induction_and_lookup_heads(qa, qb, kvb, o, proj, match, copy_gain, nope, kv, vd, n_content)
            else:  # deeper layers start as identities
                o.zero_()
        model.model.norm.weight.fill_(out_scale)


def _previous_token_heads(qa, qb, kva, kvb, o, proj, freqs, amp, nope, qk, kv, vd, kl) -> None:
    import torch

    rms = math.sqrt(0.5)  # an embedding row is 64 of 128 dims at unit scale: the norm multiplies by sqrt 2
    qa[0, CONST] = 1.0  # the query latent is the constant alone: 8 after its RMSNorm over 64 dims
    for head, back in ((0, 1), (1, 2)):
        for i in range(len(freqs)):  # query phase -back*freq against a key phase 0: peak `back` positions back
            qb[head * qk + nope + 2 * i, 0] = amp[i] * math.cos(back * freqs[i]) / 8
            qb[head * qk + nope + 2 * i + 1, 0] = -amp[i] * math.sin(back * freqs[i]) / 8
    for i in range(len(freqs)):
        kva[kl + 2 * i, CONST] = amp[i] * rms
    kvb[nope:nope + N_PREV, CONTENT] = proj
    kvb[kv + nope:kv + nope + N_PREV2, CONTENT] = proj[:N_PREV2]
    o[PREV, 0:N_PREV] = torch.eye(N_PREV) * rms
    o[PREV2, vd:vd + N_PREV2] = torch.eye(N_PREV2) * rms


def _induction_and_lookup_heads(qa, qb, kvb, o, proj, match, copy_gain, nope, kv, vd, n_content) -> None:
    import torch

    qa[0:N_PREV, CONTENT] = proj
    qa[N_PREV:nope, PREV.start:PREV.start + N_PREV2] = torch.eye(N_PREV2)
    qb[0:nope, 0:nope] = torch.eye(nope) * match
    kvb[0:N_PREV, PREV] = torch.eye(N_PREV)
    kvb[N_PREV:nope, PREV2] = torch.eye(N_PREV2)
    kvb[nope:nope + n_content, CONTENT] = torch.eye(n_content)
    o[CONTENT, 0:n_content] = torch.eye(n_content) * copy_gain
    for head in LOOKUP_HEADS:
        base = head * kv + nope
        kvb[base:base + vd] = 0.0
        kvb[base:base + n_content, CONTENT] = torch.eye(n_content)
        o[:, head * vd:(head + 1) * vd] = 0.0
        o[CONTENT, head * vd:head * vd + n_content] = torch.eye(n_content) * copy_gain
