"""Offline generator of a tiny random-weight chat model that hears: ``tiny-gemma4-audio``.

Laid out like a Gemma 4 checkpoint converted by mlx-vlm (config.json with text, vision and audio configs,
model.safetensors in mlx-vlm's layout, processor_config.json), about 0.25M float32 parameters: a 2-layer Gemma 4
language model, a one-layer vision tower and a one-layer audio conformer. mlx-vlm's own Gemma 4 processor and
audio feature extractor (numpy, no torch) turn 16 kHz samples into log-mel features; each 40 ms of audio becomes
one <|audio|> token between <|audio> and <audio|> (a 1 s clip: 25). The tokenizer is the tiny Gemma 3 one with
Gemma 4's image and audio tokens added, named in tokenizer_config's extra_special_tokens as the processor reads them.

    python -m mlx_manager.testing.tiny_audio_chat OUT_DIR [--force]
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from mlx_manager.testing import tiny_models as tm
from mlx_manager.testing.tiny_families import SPECS, tokens_of

NAME = "tiny-gemma4-audio"
MS_PER_AUDIO_TOKEN = 40
_SEED = 5
_SPECIAL = {
    "image_token": "<|image|>",
    "boi_token": "<|image>",
    "eoi_token": "<image|>",
    "audio_token": "<|audio|>",
    "boa_token": "<|audio>",
    "eoa_token": "<audio|>",
}
# Gemma's turns; an audio part is the <|audio|> placeholder the processor expands, as Gemma 4's template writes it.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'audio' %}<|audio|>{% elif c['type'] == 'image' %}<|image|>{% else %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def audio_tokens(seconds: float) -> int:
    """<|audio|> tokens a clip of this length becomes (the processor's ceil(ms / 40))."""
    return math.ceil(seconds * 1000 / MS_PER_AUDIO_TOKEN)


def _config(ids: dict[str, int]) -> dict[str, Any]:
    vocab = tm.MODEL_VOCAB_SIZE
    return {
        "architectures": ["Gemma4ForConditionalGeneration"],
        "model_type": "gemma4",
        "vocab_size": vocab,
        "image_token_id": ids["<|image|>"],
        "audio_token_id": ids["<|audio|>"],
        "boi_token_id": ids["<|image>"],
        "eoi_token_id": ids["<image|>"],
        "boa_token_id": ids["<|audio>"],
        "eoa_token_id": ids["<audio|>"],
        "eos_token_id": [ids["<eos>"], ids["<end_of_turn>"]],
        "pad_token_id": ids["<pad>"],
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "text_config": {
            "model_type": "gemma4_text", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
            "num_attention_heads": 2, "head_dim": 32, "global_head_dim": 32, "num_key_value_heads": 1,
            "num_kv_shared_layers": 0, "vocab_size": vocab, "vocab_size_per_layer_input": vocab,
            "hidden_size_per_layer_input": 16, "sliding_window": 64, "sliding_window_pattern": 2,
            "max_position_embeddings": tm.CONTEXT_LENGTH, "use_double_wide_mlp": False, "tie_word_embeddings": True,
        },
        "vision_config": {
            "model_type": "gemma4_vision", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16, "global_head_dim": 16,
            "position_embedding_size": 64,
        },
        "audio_config": {
            "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "subsampling_conv_channels": [8, 4], "output_proj_dims": 32, "use_clipped_linears": False,
        },
    }  # fmt: skip


def _weights(config: dict[str, Any]) -> dict[str, mx.array]:
    """mlx-vlm's Gemma 4 with seeded normal matrices; scalars and vectors keep the model's own initial values
    (norm scales, layer scalars, the audio clip bounds)."""
    from mlx_vlm.models import gemma4

    model_config = gemma4.ModelConfig.from_dict(dict(config))
    model_config.text_config = gemma4.TextConfig.from_dict(config["text_config"])
    model_config.vision_config = gemma4.VisionConfig.from_dict(config["vision_config"])
    model_config.audio_config = gemma4.AudioConfig.from_dict(config["audio_config"])
    model = gemma4.Model(model_config)
    weights: dict[str, mx.array] = {}
    for name, param in cast("list[tuple[str, mx.array]]", tree_flatten(model.parameters())):
        if param.ndim <= 1:
            w = np.array(param)
        else:
            rng = np.random.default_rng([_SEED, zlib.crc32(name.encode())])
            w = rng.standard_normal(tuple(param.shape)) / math.sqrt(math.prod(param.shape[1:]))
        weights[name] = mx.array(np.asarray(w, dtype=np.float32))
    model.load_weights(list(weights.items()), strict=True)
    return weights


@functools.cache
def _marker() -> str:
    return tm.file_marker("tiny-audio-chat", __file__)


def _write_folder(folder: Path) -> None:
    spec = SPECS["gemma3"]
    spec = replace(spec, added=spec.added + tokens_of(" ".join(_SPECIAL[k] for k in sorted(_SPECIAL))))
    tokenizer = tm._build_tokenizer(spec)
    ids = {content: tm._id(tokenizer, content) for content, _ in spec.added}
    config = _config(ids)
    folder.mkdir(parents=True)
    weights = _weights(config)
    mx.save_safetensors(str(folder / "model.safetensors"), weights, metadata={"format": "mlx"})
    tm._write_json(folder / "config.json", config)
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer_config = tm._tokenizer_config(spec, tokenizer)
    tokenizer_config.update(
        extra_special_tokens=_SPECIAL, chat_template=CHAT_TEMPLATE, processor_class="Gemma4Processor"
    )
    tm._write_json(folder / "tokenizer_config.json", tokenizer_config)
    tm._write_json(folder / "special_tokens_map.json", tm._special_tokens_map(spec))
    tm._write_json(folder / "generation_config.json", tm._generation_config(spec, tokenizer))
    processor = {
        "processor_class": "Gemma4Processor",
        "audio_seq_length": 750,
        "audio_ms_per_token": MS_PER_AUDIO_TOKEN,
        "image_processor": {"max_soft_tokens": 16, "patch_size": 16, "pooling_kernel_size": 3},
    }
    tm._write_json(folder / "processor_config.json", processor)
    (folder / tm.MARKER_FILE).write_text(_marker() + "\n", encoding="utf-8")


def write_tiny_audio_chat(out_dir: Path, *, force: bool = False) -> Path:
    """Write ``out_dir/tiny-gemma4-audio`` unless a complete folder from this generator version is there."""
    return tm.write_once(Path(out_dir) / NAME, tm.marked(_marker()), _write_folder, force)


def main(argv: Sequence[str] | None = None) -> int:
    prog = "python -m mlx_manager.testing.tiny_audio_chat"
    parser = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").split("\n")[0])
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    parser.add_argument("--force", action="store_true", help="rewrite the folder even if it is complete")
    args = parser.parse_args(argv)
    print(write_tiny_audio_chat(args.out_dir, force=args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
