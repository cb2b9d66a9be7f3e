"""The families the tiny-model generator writes: tokens, chat template and config of each, as plain data."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from mlx_manager.testing.chat_templates import (
    GEMMA3_CHAT_TEMPLATE,
    LLAMA3_CHAT_TEMPLATE,
    MISTRAL_CHAT_TEMPLATE,
    QWEN3_CHAT_TEMPLATE,
)
from mlx_manager.testing.chat_templates_more import (
    DEEPSEEK_R1_CHAT_TEMPLATE,
    GLM4_CHAT_TEMPLATE,
    GPT_OSS_CHAT_TEMPLATE,
    PHI4_CHAT_TEMPLATE,
    QWEN25_CHAT_TEMPLATE,
)

# The tiny shape, which some family configs refer to (the generator reads it from here).
NUM_LAYERS = 2
HEAD_DIM = 32
CONTEXT_LENGTH = 2048

# Llama 3's pre-tokenizer split (digits in runs of up to three); Qwen's is the same with single digits.
_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN_SPLIT_PATTERN = _SPLIT_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")
# What Qwen2.5 and Qwen3 tokenizers share: ChatML turns, no BOS, <|endoftext|> as pad, NFC and single digits.
_QWEN_TOKENS: dict[str, Any] = {
    "added_first": False,
    "bos": None,
    "eos": "<|im_end|>",
    "pad": "<|endoftext|>",
    "unk": None,
    "add_bos": False,
    "stop_tokens": ("<|im_end|>", "<|endoftext|>"),
    "config_eos": ("<|im_end|>",),
    "tokenizer_class": "Qwen2Tokenizer",
    "nfc": True,
    "split_pattern": _QWEN_SPLIT_PATTERN,
}
_QWEN_CONTROL = (
    "<|endoftext|> <|im_start|> <|im_end|> <|object_ref_start|> <|object_ref_end|> <|box_start|> <|box_end|> "
    "<|quad_start|> <|quad_end|> <|vision_start|> <|vision_end|> <|vision_pad|> <|image_pad|> <|video_pad|>"
)


def _qwen_added(extra: str = "") -> tuple[tuple[str, bool], ...]:
    """Qwen's control tokens, then its tool-call and fill-in-the-middle ones (not special), then `extra`."""
    tools = (
        "<tool_call> </tool_call> <|fim_prefix|> <|fim_middle|> <|fim_suffix|> <|fim_pad|> <|repo_name|> <|file_sep|>"
    )
    return tokens_of(_QWEN_CONTROL) + tokens_of(f"{tools} {extra}".strip(), special=False)


def _qwen_config(*extra: tuple[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The config.json values Qwen2.5 and Qwen3 share, with `extra` before the sliding-window ones."""
    head = (("rms_norm_eps", 1e-6), ("rope_theta", 1000000.0), ("rope_scaling", None), ("hidden_act", "silu"))
    return (*head, *extra, ("sliding_window", None), ("use_sliding_window", False), ("max_window_layers", NUM_LAYERS))


@dataclass(frozen=True)
class FamilySpec:
    model_type: str
    architecture: str
    # Added tokens in id order as (content, special); non-special ones still encode to a single id.
    added: tuple[tuple[str, bool], ...]
    # Mistral and Gemma number their control tokens from 0; Llama and Qwen put them after the BPE vocab.
    added_first: bool
    bos: str | None
    eos: str
    pad: str | None
    unk: str | None
    add_bos: bool
    # generation_config.json eos_token_id: the tokens that end an assistant turn.
    stop_tokens: tuple[str, ...]
    # config.json eos_token_id, which for Qwen3 names only <|im_end|>.
    config_eos: tuple[str, ...]
    chat_template: str
    tokenizer_class: str
    config: tuple[tuple[str, Any], ...]
    generation: tuple[tuple[str, Any], ...]
    seed: int
    # Qwen's tokenizer class rebuilds its pipeline (NFC, single-digit split) in transformers 5, so match it.
    nfc: bool = False
    split_pattern: str = _SPLIT_PATTERN
    # Share of the embedding mixed into lm_head: greedy output then repeats recent tokens within a few dozen
    # steps, like real small models, so repetition penalties visibly change it. Gemma loops without help.
    copy_weight: float = 0.1


def tokens_of(names: str, special: bool = True) -> tuple[tuple[str, bool], ...]:
    return tuple((name, special) for name in names.split())


SPECS: dict[str, FamilySpec] = {
    "llama": FamilySpec(
        model_type="llama",
        architecture="LlamaForCausalLM",
        added=tokens_of(
            "<|begin_of_text|> <|end_of_text|> <|reserved_special_token_0|> <|reserved_special_token_1|> "
            "<|finetune_right_pad_id|> <|reserved_special_token_2|> <|start_header_id|> <|end_header_id|> "
            "<|eom_id|> <|eot_id|> <|python_tag|>"
        ),
        added_first=False,
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        pad="<|finetune_right_pad_id|>",
        unk=None,
        add_bos=True,
        stop_tokens=("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"),
        config_eos=("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"),
        chat_template=LLAMA3_CHAT_TEMPLATE,
        tokenizer_class="PreTrainedTokenizerFast",
        config=(
            ("rms_norm_eps", 1e-5),
            ("rope_theta", 500000.0),
            # Llama 3.1 rope scaling, stretched from 256 to the 2048-token context like 8k -> 128k.
            (
                "rope_scaling",
                {
                    "factor": 8.0,
                    "high_freq_factor": 4.0,
                    "low_freq_factor": 1.0,
                    "original_max_position_embeddings": CONTEXT_LENGTH // 8,
                    "rope_type": "llama3",
                },
            ),
            ("hidden_act", "silu"),
            ("attention_bias", False),
            ("mlp_bias", False),
            ("pretraining_tp", 1),
        ),
        generation=(("do_sample", True), ("temperature", 0.6), ("top_p", 0.9)),
        seed=3,
    ),
    "qwen3": FamilySpec(
        model_type="qwen3",
        architecture="Qwen3ForCausalLM",
        added=_qwen_added("<tool_response> </tool_response> <think> </think>"),
        **_QWEN_TOKENS,
        chat_template=QWEN3_CHAT_TEMPLATE,
        config=_qwen_config(("attention_bias", False)),
        generation=(("do_sample", True), ("temperature", 0.6), ("top_k", 20), ("top_p", 0.95)),
        seed=5,
    ),
    # Qwen2.5-7B-Instruct: qwen2 weights (q/k/v biases), ChatML and Hermes tool calls, no <think>.
    "qwen2.5": FamilySpec(
        model_type="qwen2",
        architecture="Qwen2ForCausalLM",
        added=_qwen_added(),
        **_QWEN_TOKENS,
        chat_template=QWEN25_CHAT_TEMPLATE,
        config=_qwen_config(),
        generation=(("do_sample", True), ("temperature", 0.7), ("top_k", 20), ("top_p", 0.8)),
        seed=23,
    ),
    "mistral": FamilySpec(
        model_type="mistral",
        architecture="MistralForCausalLM",
        # Tekken (v7) control-token order.
        added=tokens_of(
            "<unk> <s> </s> [INST] [/INST] [AVAILABLE_TOOLS] [/AVAILABLE_TOOLS] [TOOL_RESULTS] "
            "[/TOOL_RESULTS] [TOOL_CALLS] [IMG] <pad> [IMG_BREAK] [IMG_END] [PREFIX] [MIDDLE] [SUFFIX] "
            "[SYSTEM_PROMPT] [/SYSTEM_PROMPT] [TOOL_CONTENT]"
        ),
        added_first=True,
        bos="<s>",
        eos="</s>",
        pad="<pad>",
        unk="<unk>",
        add_bos=True,
        stop_tokens=("</s>",),
        config_eos=("</s>",),
        chat_template=MISTRAL_CHAT_TEMPLATE,
        # Tekken checkpoints (Nemo, Small 3) ship a byte-level tokenizer.json with the generic fast class.
        tokenizer_class="PreTrainedTokenizerFast",
        config=(
            ("rms_norm_eps", 1e-5),
            ("rope_theta", 1000000.0),
            ("hidden_act", "silu"),
            ("sliding_window", None),
        ),
        generation=(),
        seed=7,
    ),
    "gemma3": FamilySpec(
        model_type="gemma3_text",
        architecture="Gemma3ForCausalLM",
        added=tokens_of(
            "<pad> <eos> <bos> <unk> <mask> <start_of_turn> <end_of_turn> <start_of_image> <end_of_image> "
            "<image_soft_token>"
        ),
        added_first=True,
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        unk="<unk>",
        add_bos=True,
        stop_tokens=("<eos>", "<end_of_turn>"),
        config_eos=("<eos>", "<end_of_turn>"),
        chat_template=GEMMA3_CHAT_TEMPLATE,
        # Not GemmaTokenizer: transformers 5 would rebuild it as SentencePiece and mangle the byte-level vocab.
        tokenizer_class="PreTrainedTokenizerFast",
        config=(
            ("rms_norm_eps", 1e-6),
            ("rope_theta", 1000000.0),
            ("rope_local_base_freq", 10000.0),
            ("rope_scaling", None),
            ("query_pre_attn_scalar", HEAD_DIM),
            ("hidden_activation", "gelu_pytorch_tanh"),
            # One local and one global layer, so both cache kinds (rotating and plain) are exercised.
            ("sliding_window", 512),
            ("sliding_window_pattern", 2),
            ("layer_types", ["sliding_attention", "full_attention"]),
            ("attn_logit_softcapping", None),
            ("final_logit_softcapping", None),
            ("attention_bias", False),
        ),
        generation=(("cache_implementation", "hybrid"), ("do_sample", True), ("top_k", 64), ("top_p", 0.95)),
        seed=11,
        copy_weight=0.0,
    ),
    # GLM-4.5-style tokens and template on mlx-lm's dense glm4 (GLM-4-0414) architecture: sandwich norms,
    # fused gate_up_proj, partial rotary embeddings, q/k/v biases.
    "glm4": FamilySpec(
        model_type="glm4",
        architecture="Glm4ForCausalLM",
        added=tokens_of(
            "<|endoftext|> [MASK] [gMASK] [sMASK] <sop> <eop> <|system|> <|user|> <|assistant|> <|observation|>"
        )
        + tokens_of(
            "<think> </think> <tool_call> </tool_call> <tool_response> </tool_response> <arg_key> </arg_key> "
            "<arg_value> </arg_value>",
            special=False,
        ),
        added_first=False,
        bos=None,
        eos="<|endoftext|>",
        pad="<|endoftext|>",
        unk=None,
        add_bos=False,
        stop_tokens=("<|endoftext|>", "<|user|>", "<|observation|>"),
        config_eos=("<|endoftext|>", "<|user|>", "<|observation|>"),
        chat_template=GLM4_CHAT_TEMPLATE,
        tokenizer_class="PreTrainedTokenizerFast",
        config=(
            ("rms_norm_eps", 1e-5),
            ("rope_theta", 10000.0),
            ("partial_rotary_factor", 0.5),
            ("attention_bias", True),
            ("hidden_act", "silu"),
        ),
        generation=(("do_sample", True), ("temperature", 0.6), ("top_p", 0.95)),
        seed=13,
    ),
    # DeepSeek-R1-Distill-Qwen: Qwen2 weights with DeepSeek's full-width-bar tokens and the R1 template.
    "deepseek-r1": FamilySpec(
        model_type="qwen2",
        architecture="Qwen2ForCausalLM",
        added=tokens_of("<｜end▁of▁sentence｜> <｜User｜> <｜Assistant｜> <｜begin▁of▁sentence｜> <|EOT|>")
        + tokens_of(
            "<think> </think> <｜tool▁calls▁begin｜> <｜tool▁calls▁end｜> <｜tool▁call▁begin｜> <｜tool▁call▁end｜> "
            "<｜tool▁sep｜> <｜tool▁outputs▁begin｜> <｜tool▁outputs▁end｜> <｜tool▁output▁begin｜> "
            "<｜tool▁output▁end｜>",
            special=False,
        ),
        added_first=False,
        bos="<｜begin▁of▁sentence｜>",
        eos="<｜end▁of▁sentence｜>",
        pad="<｜end▁of▁sentence｜>",
        unk=None,
        add_bos=True,
        stop_tokens=("<｜end▁of▁sentence｜>",),
        config_eos=("<｜end▁of▁sentence｜>",),
        chat_template=DEEPSEEK_R1_CHAT_TEMPLATE,
        tokenizer_class="PreTrainedTokenizerFast",
        config=(
            ("rms_norm_eps", 1e-6),
            ("rope_theta", 10000.0),
            ("rope_scaling", None),
            ("hidden_act", "silu"),
            ("sliding_window", None),
            ("use_sliding_window", False),
            ("max_window_layers", NUM_LAYERS),
        ),
        generation=(("do_sample", True), ("temperature", 0.6), ("top_p", 0.95)),
        seed=17,
        split_pattern=_QWEN_SPLIT_PATTERN,
    ),
    # Phi-4-mini-instruct: mlx-lm's phi3 architecture (fused qkv_proj and gate_up_proj, partial rotary).
    "phi4": FamilySpec(
        model_type="phi3",
        architecture="Phi3ForCausalLM",
        added=tokens_of(
            "<|endoftext|> <|endofprompt|> <|assistant|> <|end|> <|user|> <|system|> <|tool|> <|/tool|> "
            "<|tool_call|> <|/tool_call|> <|tool_response|> <|tag|>"
        ),
        added_first=False,
        bos="<|endoftext|>",
        eos="<|endoftext|>",
        pad="<|endoftext|>",
        unk=None,
        add_bos=False,
        stop_tokens=("<|end|>", "<|endoftext|>"),
        config_eos=("<|endoftext|>",),
        chat_template=PHI4_CHAT_TEMPLATE,
        tokenizer_class="PreTrainedTokenizerFast",
        config=(
            ("rms_norm_eps", 1e-5),
            ("rope_theta", 10000.0),
            ("rope_scaling", None),
            ("partial_rotary_factor", 0.75),
            ("original_max_position_embeddings", CONTEXT_LENGTH),
            ("hidden_act", "silu"),
            ("sliding_window", CONTEXT_LENGTH),
        ),
        generation=(),
        seed=19,
    ),
    # gpt-oss: a 4-expert top-2 MoE with attention sinks, alternating sliding/full attention, harmony tokens.
    "gpt-oss": FamilySpec(
        model_type="gpt_oss",
        architecture="GptOssForCausalLM",
        added=tokens_of(
            "<|startoftext|> <|endoftext|> <|return|> <|constrain|> <|channel|> <|start|> <|end|> <|message|> <|call|>"
        ),
        added_first=False,
        bos="<|startoftext|>",
        eos="<|return|>",
        pad="<|endoftext|>",
        unk=None,
        add_bos=False,
        stop_tokens=("<|return|>", "<|call|>"),
        config_eos=("<|return|>",),
        chat_template=GPT_OSS_CHAT_TEMPLATE,
        tokenizer_class="PreTrainedTokenizerFast",
        config=(
            ("rms_norm_eps", 1e-5),
            ("rope_theta", 150000.0),
            # gpt-oss's YaRN (32x over 4096), stretched from 256 to the 2048-token context.
            (
                "rope_scaling",
                {
                    "beta_fast": 32.0,
                    "beta_slow": 1.0,
                    "factor": 8.0,
                    "original_max_position_embeddings": CONTEXT_LENGTH // 8,
                    "rope_type": "yarn",
                    "truncate": False,
                },
            ),
            ("attention_bias", True),
            ("hidden_act", "silu"),
            ("num_local_experts", 4),
            ("num_experts_per_tok", 2),
            ("experts_per_token", 2),
            ("router_aux_loss_coef", 0.9),
            ("swiglu_limit", 7.0),
            ("sliding_window", 128),
            ("layer_types", ["sliding_attention", "full_attention"]),
        ),
        generation=(("do_sample", True),),
        seed=23,
    ),
}


def _with_config(spec: FamilySpec, **changes: Any) -> tuple[tuple[str, Any], ...]:
    return tuple((key, changes.get(key, value)) for key, value in spec.config)


# Cache kinds beyond plain attention KV, written on request (not in the shared tiny-models folder): a hybrid of
# Gated DeltaNet (recurrent state, ArraysCache) and attention layers, as in Qwen3.5; and Gemma 3 with a window
# short prompts pass (RotatingKVCache past its size).
SPECS["qwen3.5"] = replace(
    SPECS["qwen3"],
    model_type="qwen3_5",
    architecture="Qwen3_5ForCausalLM",
    config=(
        ("rms_norm_eps", 1e-6),
        ("hidden_act", "silu"),
        ("attention_bias", False),
        ("full_attention_interval", 2),  # layer 0 linear attention, layer 1 full attention
        ("linear_num_key_heads", 2),
        ("linear_num_value_heads", 4),
        ("linear_key_head_dim", HEAD_DIM),
        ("linear_value_head_dim", HEAD_DIM),
        ("linear_conv_kernel_dim", 4),
        ("rope_parameters", {"rope_type": "default", "rope_theta": 1000000.0, "partial_rotary_factor": 0.25}),
    ),
    seed=29,
)
SPECS["gemma3-sliding"] = replace(SPECS["gemma3"], config=_with_config(SPECS["gemma3"], sliding_window=16), seed=31)
