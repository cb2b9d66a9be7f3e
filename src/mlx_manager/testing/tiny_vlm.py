"""Offline generator of a tiny random-weight vision-language model for the tests: ``tiny-qwen2-vl``.

The folder is laid out like a Qwen2-VL-Instruct checkpoint converted by mlx-vlm (config.json with a vision_config,
model.safetensors in mlx-vlm's layout, the real Qwen2-VL chat template, preprocessor_config.json for the
image processor) but holds a ~0.8M-parameter float32 model: Qwen2-VL's vision tower (one 14-pixel patch
embedding, two blocks, the 2x2 patch merger) in front of the tiny Qwen2.5 language model, with the tiny
Qwen2.5 tokenizer (it already has <|vision_start|>, <|image_pad|> and <|vision_end|>). mlx-vlm runs it with its
own numpy image processor, so nothing needs torch or torchvision.

Images are resized to multiples of 28 pixels between MIN_PIXELS and MAX_PIXELS; each 28x28 block becomes one
image token, so a 56x56 image is 4 tokens and a 112x112 one 16 (see ``image_tokens``). As in the tiny text
models, special and unprintable tokens are never sampled, so generation runs to max_tokens.

    python -m mlx_manager.testing.tiny_vlm OUT_DIR [--force]
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from mlx_manager.testing import tiny_models as tm
from mlx_manager.testing.tiny_families import SPECS

NAME = "tiny-qwen2-vl"
PATCH = 14
MERGE = 2
MIN_PIXELS = 56 * 56
MAX_PIXELS = 224 * 224
_SEED = 31

# Qwen2-VL-7B-Instruct's chat template (it has no tools section: tools are injected into the system message).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def image_tokens(width: int, height: int) -> int:
    """Image tokens for an image whose sides are multiples of 28 within the pixel bounds (no resizing)."""
    block = PATCH * MERGE
    if width % block or height % block or not MIN_PIXELS <= width * height <= MAX_PIXELS:
        raise ValueError(f"{width}x{height} would be resized; use multiples of {block} within the pixel bounds")
    return (width // block) * (height // block)


class Tower(NamedTuple):
    """The vision tower's dimensions."""

    depth: int = 2
    embed_dim: int = 32
    num_heads: int = 2
    mlp_ratio: int = 2


SHAPED_NAME = "shaped-qwen2-vl-0.5b"
# Qwen2.5-0.5B's transformer (as tiny_models' qwen2.5-0.5b shape) behind an 8-block, 640-wide Qwen2-VL tower:
# about 0.41B parameters, float32. Images up to 448 x 448 pixels (256 image tokens).
SHAPED_TEXT = tm._Shape(
    hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2, intermediate_size=4864,
    context_length=tm.SHAPED_CONTEXT_LENGTH,
)  # fmt: skip
SHAPED_TOWER = Tower(depth=8, embed_dim=640, num_heads=10, mlp_ratio=4)
SHAPED_MAX_PIXELS = 448 * 448


def _config(ids: dict[str, int], text: Any = tm._TINY_SHAPE, tower: Tower = Tower()) -> dict[str, Any]:
    half = text.head_dim // 2  # mRoPE splits each head's rotary half into time, height and width sections
    return {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "model_type": "qwen2_vl",
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_layers,
        "num_attention_heads": text.num_heads,
        "num_key_value_heads": text.num_kv_heads,
        "max_position_embeddings": text.context_length,
        "vocab_size": text.vocab_size,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": {"type": "mrope", "mrope_section": [half // 4, half * 3 // 8, half * 3 // 8]},
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "torch_dtype": "float32",
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_config": {
            "model_type": "qwen2_vl",
            "depth": tower.depth,
            "embed_dim": tower.embed_dim,
            "hidden_size": text.hidden_size,  # the merger projects straight into the language model's width
            "num_heads": tower.num_heads,
            "mlp_ratio": tower.mlp_ratio,
            "hidden_act": "quick_gelu",
            "in_channels": 3,
            "in_chans": 3,
            "patch_size": PATCH,
            "spatial_patch_size": PATCH,
            "spatial_merge_size": MERGE,
            "temporal_patch_size": 2,
        },
    }


def _preprocessor_config(max_pixels: int = MAX_PIXELS) -> dict[str, Any]:
    return {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2VLProcessor",
        "patch_size": PATCH,
        "merge_size": MERGE,
        "temporal_patch_size": 2,
        "min_pixels": MIN_PIXELS,
        "max_pixels": max_pixels,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "do_convert_rgb": True,
    }


def _weights(config: dict[str, Any], suppressed: Sequence[int]) -> dict[str, mx.array]:
    """mlx-vlm's Qwen2-VL filled with seeded numpy draws; the language model gets the tiny models' anchor
    (residual dimension 0 stays constant) so lm_head can keep special and padding ids from ever being sampled."""
    from mlx_vlm.models import qwen2_vl

    model_config = qwen2_vl.ModelConfig.from_dict(dict(config))
    model_config.text_config = qwen2_vl.TextConfig.from_dict(cast(dict[str, Any], model_config.text_config))
    model_config.vision_config = qwen2_vl.VisionConfig.from_dict(config["vision_config"])
    model = qwen2_vl.Model(model_config)
    weights: dict[str, mx.array] = {}
    for name, param in cast("list[tuple[str, mx.array]]", tree_flatten(model.parameters())):
        if param.ndim == 1:  # norm scales start at one, biases at zero
            w = np.ones(param.shape) if name.endswith(".weight") else np.zeros(param.shape)
        else:
            rng = np.random.default_rng([_SEED, zlib.crc32(name.encode())])
            fan_in = math.prod(param.shape[1:])  # the patch embedding is a 3-D convolution
            w = rng.standard_normal(tuple(param.shape)) / math.sqrt(fan_in)
            if name.endswith("embed_tokens.weight"):
                w = rng.standard_normal(tuple(param.shape))
                w[:, 0] = tm._ANCHOR_VALUE
            elif name.startswith("language_model") and name.endswith(("o_proj.weight", "down_proj.weight")):
                w[0, :] = 0.0  # nothing writes to residual dimension 0
            elif name == "language_model.lm_head.weight":
                w[:, 0] = 0.0
                w[list(suppressed), :] = 0.0
                w[list(suppressed), 0] = -tm._SUPPRESSED_LOGIT_WEIGHT
        weights[name] = mx.array(np.asarray(w, dtype=np.float32))
    model.load_weights(list(weights.items()), strict=True)  # the names and shapes are exactly mlx-vlm's
    return weights


@functools.cache
def _marker() -> str:
    return tm.file_marker("tiny-vlm", __file__)


def _write_folder(folder: Path, shaped: bool = False) -> None:
    spec = SPECS["qwen2.5"]
    tokenizer = tm._build_tokenizer(spec)
    ids = {content: tm._id(tokenizer, content) for content, _ in spec.added}
    config = _config(ids, SHAPED_TEXT, SHAPED_TOWER) if shaped else _config(ids)
    folder.mkdir(parents=True)
    weights = _weights(config, tm._suppressed_ids(tokenizer, spec))
    mx.save_safetensors(str(folder / "model.safetensors"), weights, metadata={"format": "mlx"})
    tm._write_json(folder / "config.json", config)
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer_config = tm._tokenizer_config(spec, tokenizer)
    tokenizer_config.update(chat_template=QWEN2_VL_CHAT_TEMPLATE, processor_class="Qwen2VLProcessor")
    tm._write_json(folder / "tokenizer_config.json", tokenizer_config)
    tm._write_json(folder / "special_tokens_map.json", tm._special_tokens_map(spec))
    stop = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    tm._write_json(folder / "generation_config.json", {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": stop})
    max_pixels = SHAPED_MAX_PIXELS if shaped else MAX_PIXELS
    tm._write_json(folder / "preprocessor_config.json", _preprocessor_config(max_pixels))
    (folder / tm.MARKER_FILE).write_text(_marker() + "\n", encoding="utf-8")


def write_tiny_vlm(out_dir: Path, *, force: bool = False, shaped: bool = False) -> Path:
    """Write ``out_dir/tiny-qwen2-vl`` (``shaped``: ``out_dir/shaped-qwen2-vl-0.5b``, for benchmarks) unless a
    complete folder from this generator version is there."""
    name = SHAPED_NAME if shaped else NAME
    return tm.write_once(Path(out_dir) / name, tm.marked(_marker()), lambda f: _write_folder(f, shaped), force)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlx_manager.testing.tiny_vlm", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    parser.add_argument("--force", action="store_true", help="rewrite the folder even if it is complete")
    parser.add_argument("--shaped", action="store_true", help=f"write {SHAPED_NAME} (~0.41B, for benchmarks)")
    args = parser.parse_args(argv)
    print(write_tiny_vlm(args.out_dir, force=args.force, shaped=args.shaped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
