"""The tiny model generator: every family loads in mlx-lm, generates, and looks like its real checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx_lm import stream_generate
from mlx_lm.sample_utils import make_logits_processors, make_sampler

from mlx_manager.testing.tiny_models import FAMILIES, write_tiny_model, write_tiny_models
from tests.testing.helpers import folder_of as _folder
from tests.testing.helpers import hf_tokenizer as _hf_tokenizer
from tests.testing.helpers import load_model as _load
from tests.testing.helpers import read_json as _json

BASE_FAMILIES = ("llama", "qwen3", "mistral", "gemma3")
# Families added later; the shaped-model tests stay on the base ones to keep the suite fast.
MORE_FAMILIES = ("glm4", "deepseek-r1", "phi4", "gpt-oss", "qwen2.5")
FLOAT_FAMILIES = BASE_FAMILIES + MORE_FAMILIES

# Tokens each family's real tokenizer has as single added tokens.
SPECIAL_TOKENS = {
    "llama": [
        "<|begin_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
        "<|eom_id|>",
        "<|end_of_text|>",
        "<|python_tag|>",
    ],
    "qwen3": [
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
        "<think>",
        "</think>",
        "<tool_call>",
        "</tool_call>",
        "<tool_response>",
        "</tool_response>",
    ],
    "mistral": [
        "<s>",
        "</s>",
        "[INST]",
        "[/INST]",
        "[SYSTEM_PROMPT]",
        "[/SYSTEM_PROMPT]",
        "[TOOL_CALLS]",
        "[AVAILABLE_TOOLS]",
        "[/AVAILABLE_TOOLS]",
        "[TOOL_RESULTS]",
        "[/TOOL_RESULTS]",
    ],
    "gemma3": ["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "<pad>"],
    "glm4": [
        "[gMASK]",
        "<sop>",
        "<|system|>",
        "<|user|>",
        "<|assistant|>",
        "<|observation|>",
        "<|endoftext|>",
        "<think>",
        "</think>",
        "<tool_call>",
        "</tool_call>",
        "<arg_key>",
        "</arg_key>",
        "<arg_value>",
        "</arg_value>",
        "<tool_response>",
        "</tool_response>",
    ],
    "deepseek-r1": [
        "<｜begin▁of▁sentence｜>",
        "<｜end▁of▁sentence｜>",
        "<｜User｜>",
        "<｜Assistant｜>",
        "<think>",
        "</think>",
        "<｜tool▁calls▁begin｜>",
        "<｜tool▁calls▁end｜>",
        "<｜tool▁call▁begin｜>",
        "<｜tool▁call▁end｜>",
        "<｜tool▁sep｜>",
        "<｜tool▁outputs▁begin｜>",
        "<｜tool▁outputs▁end｜>",
        "<｜tool▁output▁begin｜>",
        "<｜tool▁output▁end｜>",
    ],
    "phi4": [
        "<|system|>",
        "<|user|>",
        "<|assistant|>",
        "<|end|>",
        "<|endoftext|>",
        "<|tool|>",
        "<|/tool|>",
        "<|tool_call|>",
        "<|/tool_call|>",
        "<|tool_response|>",
    ],
    "qwen2.5": ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>", "</tool_call>"],
    "gpt-oss": [
        "<|start|>",
        "<|end|>",
        "<|message|>",
        "<|channel|>",
        "<|constrain|>",
        "<|return|>",
        "<|call|>",
        "<|endoftext|>",
    ],
}
# generation_config.json eos_token_id: the tokens that end an assistant turn.
END_TOKENS = {
    "llama": {"<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"},
    "qwen3": {"<|im_end|>", "<|endoftext|>"},
    "mistral": {"</s>"},
    "gemma3": {"<eos>", "<end_of_turn>"},
    "glm4": {"<|endoftext|>", "<|user|>", "<|observation|>"},
    "deepseek-r1": {"<｜end▁of▁sentence｜>"},
    "phi4": {"<|end|>", "<|endoftext|>"},
    "gpt-oss": {"<|return|>", "<|call|>"},
    "qwen2.5": {"<|im_end|>", "<|endoftext|>"},
}
# The BOS token the tokenizer adds to every encoding (None: it adds none).
BOS = {
    "llama": "<|begin_of_text|>",
    "qwen3": None,
    "mistral": "<s>",
    "gemma3": "<bos>",
    "glm4": None,
    "deepseek-r1": "<｜begin▁of▁sentence｜>",
    "phi4": None,
    "gpt-oss": None,
    "qwen2.5": None,
}
# tokenizer_config.json bos_token: Phi-4-mini and gpt-oss name one but never add it.
BOS_TOKEN = {**BOS, "phi4": "<|endoftext|>", "gpt-oss": "<|startoftext|>"}
# The engine family detect_family picks for each folder.
ENGINE_FAMILY = {
    "glm4": "glm4",
    "deepseek-r1": "deepseek-r1",
    "phi4": "phi4",
    "gpt-oss": "gpt-oss",
    "qwen2.5": "qwen2.5",
}

SYSTEM_AND_USER = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi!"}]
RENDERED_SYSTEM_AND_USER = {
    "llama": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
    "Today Date: 26 Jul 2024\n\nYou are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "qwen3": "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "mistral": "<s>[SYSTEM_PROMPT]You are terse.[/SYSTEM_PROMPT][INST]Hi![/INST]",
    # Gemma 3 has no system role: the system prompt opens the first user turn.
    "gemma3": "<bos><start_of_turn>user\nYou are terse.\n\nHi!<end_of_turn>\n<start_of_turn>model\n",
    "glm4": "[gMASK]<sop><|system|>\nYou are terse.<|user|>\nHi!<|assistant|>",
    # R1 opens the reasoning block in the generation prompt.
    "deepseek-r1": "<｜begin▁of▁sentence｜>You are terse.<｜User｜>Hi!<｜Assistant｜><think>\n",
    "phi4": "<|system|>You are terse.<|end|><|user|>Hi!<|end|><|assistant|>",
    "gpt-oss": "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
    "Knowledge cutoff: 2024-06\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. "
    "Channel must be included for every message.<|end|><|start|>developer<|message|># Instructions\n\n"
    "You are terse.<|end|><|start|>user<|message|>Hi!<|end|><|start|>assistant",
    "qwen2.5": "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
}
MULTI_TURN = [
    *SYSTEM_AND_USER,
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Bye."},
]
ASSISTANT_TURN = {
    "llama": "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>",
    "qwen3": "<|im_start|>assistant\nHello!<|im_end|>\n",
    "mistral": "[INST]Hi![/INST]Hello!</s>[INST]Bye.[/INST]",
    "gemma3": "<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\nBye.<end_of_turn>",
    "glm4": "<|assistant|>\n<think></think>\nHello!<|user|>\nBye.<|assistant|>",
    "deepseek-r1": "<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>Bye.<｜Assistant｜><think>\n",
    "phi4": "<|assistant|>Hello!<|end|><|user|>Bye.<|end|><|assistant|>",
    "gpt-oss": "<|start|>assistant<|channel|>final<|message|>Hello!<|end|><|start|>user<|message|>Bye.<|end|>",
    "qwen2.5": "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye.<|im_end|>\n",
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
TOOL_CONVERSATION = [
    *SYSTEM_AND_USER,
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "22 degrees"},
]
TOOL_MARKERS = {
    "llama": [
        "Environment: ipython",
        '"name": "get_weather"',
        '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>',
        "<|start_header_id|>ipython<|end_header_id|>\n\n",
    ],
    "qwen3": [
        "<tools>\n",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
        "<|im_start|>user\n<tool_response>\n22 degrees\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
    ],
    "mistral": [
        '[AVAILABLE_TOOLS][{"type": "function", "function": {"name": "get_weather"',
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}]</s>',
        '[TOOL_RESULTS]{"content": "22 degrees", "call_id": "call_1"}[/TOOL_RESULTS]',
    ],
    "glm4": [
        "<|system|>\n# Tools\n",
        '{"type": "function", "function": {"name": "get_weather"',
        "<|assistant|>\n<think></think>\n<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value>"
        "</tool_call><|observation|>",
        "<|observation|><tool_response>22 degrees</tool_response><|assistant|>",
    ],
    "deepseek-r1": [
        "- `get_weather`:\n```json\n",
        "<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
        '{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>',
        "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>22 degrees<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"
        "<｜Assistant｜><think>\n",
    ],
    "phi4": [
        '<|system|>You are terse.<|tool|>[{"name": "get_weather", "description": "Get the weather for a city"',
        "}}]<|/tool|><|end|>",
        '<|assistant|><|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]<|/tool_call|><|end|>',
        "<|tool_response|>22 degrees<|end|><|assistant|>",
    ],
    "qwen2.5": [
        '<tools>\n{"type": "function", "function": {"name": "get_weather"',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
        "<|im_start|>user\n<tool_response>\n22 degrees\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
    ],
    "gpt-oss": [
        "Calls to these tools must go to the commentary channel: 'functions'.<|end|>",
        "# Tools\n\n## functions\n\nnamespace functions {\n\n// Get the weather for a city\n"
        "type get_weather = (_: {\ncity: string,\n}) => any;\n\n} // namespace functions<|end|>",
        '<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}'
        "<|call|>",
        "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>22 degrees<|end|>"
        "<|start|>assistant",
    ],
}


def test_write_tiny_models_returns_a_folder_per_family_including_the_4bit_variant(tmp_path: Path) -> None:
    folders = write_tiny_models(tmp_path, ["qwen3", "llama-4bit"])
    assert folders == {"qwen3": tmp_path / "tiny-qwen3", "llama-4bit": tmp_path / "tiny-llama-4bit"}
    assert set(FAMILIES) >= {*BASE_FAMILIES, "llama-4bit"}


@pytest.mark.parametrize("family", FLOAT_FAMILIES)
def test_folder_has_the_files_and_settings_of_a_real_checkpoint(tiny_dir: Path, family: str) -> None:
    folder = _folder(tiny_dir, family)
    config = _json(folder / "config.json")
    assert config["torch_dtype"] == "float32"
    assert config["max_position_embeddings"] == 2048
    tokenizer_config = _json(folder / "tokenizer_config.json")
    assert tokenizer_config["chat_template"]
    assert tokenizer_config["bos_token"] == BOS_TOKEN[family]
    assert tokenizer_config["eos_token"] in END_TOKENS[family]
    assert tokenizer_config["pad_token"]
    assert tokenizer_config["add_bos_token"] is (BOS[family] is not None)
    assert _json(folder / "special_tokens_map.json")["eos_token"]["content"] == tokenizer_config["eos_token"]
    assert config["vocab_size"] >= len(_hf_tokenizer(folder))
    weights = mx.load(str(folder / "model.safetensors"))
    assert isinstance(weights, dict)
    assert {w.dtype for w in weights.values()} == {mx.float32}


@pytest.mark.parametrize("family", FAMILIES)
def test_model_loads_with_mlx_lm_and_generates_up_to_max_tokens(tiny_dir: Path, family: str) -> None:
    model, tokenizer = _load(_folder(tiny_dir, family))
    prompt = tokenizer.apply_chat_template(SYSTEM_AND_USER, add_generation_prompt=True)
    responses = list(stream_generate(model, tokenizer, prompt, max_tokens=64))
    # Special tokens are suppressed in the weights, so a greedy run never ends early.
    assert len(responses) == 64
    assert responses[-1].finish_reason == "length"
    assert "".join(r.text for r in responses).strip()


@pytest.mark.parametrize("family", FLOAT_FAMILIES)
def test_sampling_never_emits_special_or_padding_ids(tiny_dir: Path, family: str) -> None:
    model, tokenizer = _load(_folder(tiny_dir, family))
    mx.random.seed(0)
    prompt = tokenizer.encode("Tell me a story.")
    tokens = [r.token for r in stream_generate(model, tokenizer, prompt, 200, sampler=make_sampler(temp=1.5))]
    special = set(tokenizer.all_special_ids) | set(tokenizer.eos_token_ids)
    assert not special & set(tokens)
    assert max(tokens) < len(tokenizer.vocab)


@pytest.mark.parametrize("family", FLOAT_FAMILIES)
def test_logit_bias_can_still_force_the_end_of_turn_token(tiny_dir: Path, family: str) -> None:
    model, tokenizer = _load(_folder(tiny_dir, family))
    end = tokenizer.convert_tokens_to_ids(sorted(END_TOKENS[family])[0])
    processors = make_logits_processors(logit_bias={end: 100.0})
    prompt = tokenizer.encode("Hello")
    responses = list(stream_generate(model, tokenizer, prompt, 8, logits_processors=processors))
    assert responses[-1].token == end
    assert responses[-1].finish_reason == "stop"


@pytest.mark.parametrize("family", FLOAT_FAMILIES)
def test_special_tokens_encode_to_single_ids_and_are_never_split(tiny_dir: Path, family: str) -> None:
    tokenizer = _hf_tokenizer(_folder(tiny_dir, family))
    for token in SPECIAL_TOKENS[family]:
        token_id = tokenizer.convert_tokens_to_ids(token)
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id], token
        ids = tokenizer.encode(f"ab{token}cd", add_special_tokens=False)
        assert ids.count(token_id) == 1, token
        assert tokenizer.decode(ids) == f"ab{token}cd"


@pytest.mark.parametrize("family", FLOAT_FAMILIES)
def test_any_utf8_text_round_trips_and_bos_is_added_as_the_family_does(tiny_dir: Path, family: str) -> None:
    tokenizer = _hf_tokenizer(_folder(tiny_dir, family))
    text = "Héllo wörld — 你好 🙂\n\tdef f(x): return {'a': 1.5e-3}"
    ids = tokenizer.encode(text)
    bos = BOS[family]
    assert (ids[0] == tokenizer.convert_tokens_to_ids(bos)) if bos else (ids[0] != tokenizer.bos_token_id)
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("family", FLOAT_FAMILIES)
def test_generation_config_eos_ids_are_the_family_end_of_turn_tokens(tiny_dir: Path, family: str) -> None:
    folder = _folder(tiny_dir, family)
    tokenizer = _hf_tokenizer(folder)
    eos = _json(folder / "generation_config.json")["eos_token_id"]
    eos_ids = set(eos) if isinstance(eos, list) else {eos}
    assert eos_ids == {tokenizer.convert_tokens_to_ids(t) for t in END_TOKENS[family]}
    assert set(_load(folder)[1].eos_token_ids) == eos_ids


@pytest.mark.parametrize("family", FLOAT_FAMILIES)
def test_chat_template_renders_system_and_user_with_generation_prompt(tiny_dir: Path, family: str) -> None:
    tokenizer = _hf_tokenizer(_folder(tiny_dir, family))
    rendered = tokenizer.apply_chat_template(SYSTEM_AND_USER, tokenize=False, add_generation_prompt=True)
    assert rendered == RENDERED_SYSTEM_AND_USER[family]


@pytest.mark.parametrize("family", FLOAT_FAMILIES)
def test_chat_template_renders_assistant_turns_of_a_multi_turn_conversation(tiny_dir: Path, family: str) -> None:
    tokenizer = _hf_tokenizer(_folder(tiny_dir, family))
    rendered = tokenizer.apply_chat_template(MULTI_TURN, tokenize=False, add_generation_prompt=True)
    assert ASSISTANT_TURN[family] in rendered


@pytest.mark.parametrize("family", sorted(TOOL_MARKERS))
def test_chat_template_renders_tools_tool_calls_and_tool_results(tiny_dir: Path, family: str) -> None:
    tokenizer = _hf_tokenizer(_folder(tiny_dir, family))
    rendered = tokenizer.apply_chat_template(TOOL_CONVERSATION, tools=TOOLS, tokenize=False, add_generation_prompt=True)
    for marker in TOOL_MARKERS[family]:
        assert marker in rendered


def test_qwen3_template_switches_thinking_with_enable_thinking(tiny_dir: Path) -> None:
    tokenizer = _hf_tokenizer(_folder(tiny_dir, "qwen3"))
    off = tokenizer.apply_chat_template(MULTI_TURN, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    on = tokenizer.apply_chat_template(MULTI_TURN, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert on.endswith("<|im_start|>assistant\n")
    # Reasoning from earlier turns is dropped from the history.
    history = [*SYSTEM_AND_USER, {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nHello!"}, MULTI_TURN[-1]]
    rendered = tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
    assert "hmm" not in rendered and "<|im_start|>assistant\nHello!<|im_end|>" in rendered


def test_glm4_template_switches_thinking_with_enable_thinking(tiny_dir: Path) -> None:
    tokenizer = _hf_tokenizer(_folder(tiny_dir, "glm4"))
    off = tokenizer.apply_chat_template(MULTI_TURN, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    on = tokenizer.apply_chat_template(MULTI_TURN, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert off.endswith("<|user|>\nBye./nothink<|assistant|>\n<think></think>")
    assert on.endswith("<|user|>\nBye.<|assistant|>")
    # Reasoning from turns before the last user query is dropped.
    history = [*SYSTEM_AND_USER, {"role": "assistant", "content": "<think>hmm</think>Hello!"}, MULTI_TURN[-1]]
    rendered = tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
    assert "hmm" not in rendered and "<|assistant|>\n<think></think>\nHello!<|user|>" in rendered


def test_deepseek_r1_template_drops_earlier_reasoning(tiny_dir: Path) -> None:
    tokenizer = _hf_tokenizer(_folder(tiny_dir, "deepseek-r1"))
    history = [*SYSTEM_AND_USER, {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nHello!"}, MULTI_TURN[-1]]
    rendered = tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
    assert "hmm" not in rendered and "<｜Assistant｜>\n\nHello!<｜end▁of▁sentence｜>" in rendered
    assert rendered.endswith("<｜User｜>Bye.<｜Assistant｜><think>\n")


def test_gpt_oss_template_takes_the_reasoning_effort(tiny_dir: Path) -> None:
    tokenizer = _hf_tokenizer(_folder(tiny_dir, "gpt-oss"))
    high = tokenizer.apply_chat_template(
        SYSTEM_AND_USER, tokenize=False, add_generation_prompt=True, reasoning_effort="high"
    )
    assert high.startswith("<|start|>system<|message|>") and "\nReasoning: high\n" in high
    assert high.endswith("<|start|>user<|message|>Hi!<|end|><|start|>assistant")


@pytest.mark.parametrize("family", MORE_FAMILIES)
def test_engine_detects_the_family_from_config_and_special_tokens(tiny_dir: Path, family: str) -> None:
    from mlx_manager.engine.discovery import read_json, special_tokens
    from mlx_manager.engine.families import detect_family

    folder = _folder(tiny_dir, family)
    assert detect_family(read_json(folder / "config.json"), special_tokens(folder)).name == ENGINE_FAMILY[family]


def test_gpt_oss_is_a_small_moe_with_sinks_and_sliding_window(tiny_dir: Path) -> None:
    folder = _folder(tiny_dir, "gpt-oss")
    config = _json(folder / "config.json")
    assert config["model_type"] == "gpt_oss"
    assert (config["num_local_experts"], config["num_experts_per_tok"]) == (4, 2)
    assert config["layer_types"] == ["sliding_attention", "full_attention"]
    weights = mx.load(str(folder / "model.safetensors"))
    assert isinstance(weights, dict)
    assert "model.layers.0.self_attn.sinks" in weights
    assert weights["model.layers.0.mlp.experts.gate_proj.weight"].shape[0] == 4


def test_4bit_variant_has_a_quantization_block_and_loads_quantized(tiny_dir: Path) -> None:
    folder = _folder(tiny_dir, "llama-4bit")
    config = _json(folder / "config.json")
    assert config["quantization"]["bits"] == 4
    assert config["quantization"]["group_size"] in (32, 64)
    assert config["quantization_config"] == config["quantization"]
    model, _ = _load(folder)
    assert any(isinstance(m, nn.QuantizedLinear) for _, m in model.named_modules())
    float_size = (_folder(tiny_dir, "llama") / "model.safetensors").stat().st_size
    assert (folder / "model.safetensors").stat().st_size < float_size / 4


def test_output_is_byte_identical_across_writes(tiny_dir: Path, tmp_path: Path) -> None:
    write_tiny_models(tmp_path)
    for family in FAMILIES:
        first, second = _folder(tiny_dir, family), _folder(tmp_path, family)
        names = sorted(p.name for p in first.iterdir())
        assert names == sorted(p.name for p in second.iterdir())
        for name in names:
            assert (first / name).read_bytes() == (second / name).read_bytes(), f"{family}/{name}"


def test_complete_folder_is_kept_and_a_stale_one_is_rewritten(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path, "mistral")
    weights = folder / "model.safetensors"
    written = weights.stat().st_mtime_ns
    assert write_tiny_model(tmp_path, "mistral") == folder
    assert weights.stat().st_mtime_ns == written
    (folder / ".complete").write_text("an older generator\n")
    weights.write_bytes(b"garbage")
    write_tiny_model(tmp_path, "mistral")
    assert weights.read_bytes() != b"garbage"
    assert (folder / ".complete").read_text() != "an older generator\n"


def test_unknown_family_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown tiny model family"):
        write_tiny_model(tmp_path, "gpt2")


def test_command_line_writes_only_the_requested_families(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlx_manager.testing.tiny_models", str(tmp_path), "--family", "gemma3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == str(tmp_path / "tiny-gemma3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-gemma3"]
