"""Offline generator of tiny random-weight model folders, one per supported family, for the test suite.

Each folder looks like a real Hugging Face / mlx-community checkpoint of its family (config.json,
model.safetensors, tokenizer.json, tokenizer_config.json with the family's chat template,
special_tokens_map.json, generation_config.json) but holds a ~0.6M-parameter float32 model and a
byte-level BPE tokenizer trained on a small embedded corpus, so it loads and generates in milliseconds.

``write_shaped_model`` writes the same family folder (tokenizer, templates, special tokens, suppressed
special/padding ids, float32) with other dimensions, e.g. those of a real ~0.5B model for benchmarks.
``--shape qwen2.5-0.5b`` writes OUT_DIR/shaped-llama-0.5b: Qwen2.5-0.5B's transformer (hidden 896, 24 layers,
14 heads of 64, 2 KV heads, intermediate 4864) on the llama architecture. Its vocabulary stays small (1024
ids), so its embedding and lm_head are far smaller than the real model's: 359,705,472 parameters (1.44 GB
float32) instead of Qwen2.5-0.5B's 494,032,768, whose tied 151,936 x 896 embedding/lm_head alone is
136,134,656. Decoding therefore skips most of the real model's lm_head work and runs somewhat faster.

    python -m mlx_manager.testing.tiny_models OUT_DIR [--family NAME ...] [--force]
    python -m mlx_manager.testing.tiny_models OUT_DIR --shape qwen2.5-0.5b [--family NAME] [--force]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import importlib
import io
import json
import math
import os
import shutil
import sys
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from mlx_manager.testing.chat_templates import TRAINING_CORPUS
from mlx_manager.testing.tiny_families import _SPLIT_PATTERN, CONTEXT_LENGTH, NUM_LAYERS
from mlx_manager.testing.tiny_families import SPECS as _SPECS
from mlx_manager.testing.tiny_families import FamilySpec as _Family

# Bump when the output changes in a way the source hash would not show (e.g. a dependency's format).
GENERATOR_VERSION = "1"
FAMILIES: tuple[str, ...] = (
    "llama",
    "qwen3",
    "mistral",
    "gemma3",
    "llama-4bit",
    "glm4",
    "deepseek-r1",
    "phi4",
    "gpt-oss",
    "qwen2.5",
)
# Families written on request by write_tiny_variant, not into the shared folder: their caches are not plain KV.
VARIANTS: tuple[str, ...] = ("qwen3.5", "gemma3-sliding")
MARKER_FILE = ".complete"

# Dimensions are multiples of 64 so every linear layer and the embedding quantize with group size 64.
HIDDEN_SIZE = 128
NUM_HEADS = 4
NUM_KV_HEADS = 2
INTERMEDIATE_SIZE = 256
MODEL_VOCAB_SIZE = 1024  # padded above the tokenizer's ~990 ids, as real checkpoints often are
BPE_VOCAB_SIZE = 960  # trained tokens (256 byte symbols + merges), before the family's added tokens
QUANT_GROUP_SIZE = 64
QUANT_BITS = 4
SHAPED_CONTEXT_LENGTH = 4096


@dataclass(frozen=True)
class _Shape:
    """Model dimensions; the defaults are the tiny models'."""

    hidden_size: int = HIDDEN_SIZE
    num_layers: int = NUM_LAYERS
    num_heads: int = NUM_HEADS
    num_kv_heads: int = NUM_KV_HEADS
    intermediate_size: int = INTERMEDIATE_SIZE
    vocab_size: int = MODEL_VOCAB_SIZE
    context_length: int = CONTEXT_LENGTH

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


_TINY_SHAPE = _Shape()


class ShapePreset(NamedTuple):
    """Named dimensions for ``--shape``; the folder is ``shaped-<family>-<tag>``."""

    tag: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int


SHAPES: dict[str, ShapePreset] = {
    # Qwen2.5-0.5B's transformer (head_dim 64) with the tiny 1024-id vocabulary and an untied lm_head:
    # 359,705,472 parameters (~1.44 GB float32). The real model has 494,032,768: its tied 151,936 x 896
    # embedding/lm_head is 136,134,656 of them (plus 27,648 q/k/v biases the llama layers lack), so per
    # decoded token the shaped model skips the large lm_head matmul and runs somewhat faster.
    "qwen2.5-0.5b": ShapePreset(
        tag="0.5b", hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2, intermediate_size=4864
    ),
}

# Residual dimension 0 carries a constant so lm_head can give unwanted ids a logit of about -25 to -45:
# never sampled (even at temperature 2), yet a +100 logit_bias still forces them.
_ANCHOR_VALUE = 1.0
_SUPPRESSED_LOGIT_WEIGHT = 50.0


def _id(tokenizer: Tokenizer, content: str) -> int:
    token_id = tokenizer.token_to_id(content)
    if token_id is None:
        raise KeyError(f"token {content!r} is not in the tokenizer")
    return token_id


def _pre_tokenizer(pattern: str = _SPLIT_PATTERN) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )


@functools.cache
def _trained_bpe() -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Byte-level BPE trained once per process; returns the tokens in id order and the merges."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = _pre_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TRAINING_CORPUS.splitlines(keepends=True), trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    tokens = tuple(sorted(vocab, key=vocab.__getitem__))
    merges = tuple((a, b) for a, b in (m.split(" ", 1) if isinstance(m, str) else m for m in model["merges"]))
    return tokens, merges


def _build_tokenizer(spec: _Family) -> Tokenizer:
    tokens, merges = _trained_bpe()
    added_start, regular_start = (0, len(spec.added)) if spec.added_first else (len(tokens), 0)
    vocab = {token: regular_start + i for i, token in enumerate(tokens)}
    for i, (content, _) in enumerate(spec.added):
        if content in vocab:
            raise ValueError(f"added token {content!r} collides with a trained BPE token")
        vocab[content] = added_start + i

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=list(merges)))
    if spec.nfc:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = _pre_tokenizer(spec.split_pattern)
    tokenizer.decoder = decoders.ByteLevel()
    if spec.add_bos and spec.bos is not None:
        bos = (spec.bos, vocab[spec.bos])
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{spec.bos}:0 $A:0", pair=f"{spec.bos}:0 $A:0 {spec.bos}:1 $B:1", special_tokens=[bos]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    # One call per token in id order; the ids come from the vocab above, the call marks them unsplittable.
    for content, special in spec.added:
        token = AddedToken(content, special=special, normalized=False, lstrip=False, rstrip=False)
        if special:
            tokenizer.add_special_tokens([token])
        else:
            tokenizer.add_tokens([token])
    for content, _ in spec.added:
        if _id(tokenizer, content) != vocab[content]:
            raise RuntimeError(f"added token {content!r} did not keep its id")
    return tokenizer


def _suppressed_ids(tokenizer: Tokenizer, spec: _Family, vocab_size: int = MODEL_VOCAB_SIZE) -> list[int]:
    """Ids the random model must never emit: added tokens, vocab padding, and tokens that are not clean text.

    Keeping them out means generation always runs to max_tokens and every token decodes on its own.
    """
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    added = {_id(tokenizer, content) for content, _ in spec.added}
    suppressed = set(range(size, vocab_size)) | added
    for token_id in range(size):
        if token_id in added:
            continue
        text = tokenizer.decode([token_id], skip_special_tokens=False)
        if not text or "\ufffd" in text or any(not (ch.isprintable() or ch in "\n\t") for ch in text):
            suppressed.add(token_id)
    return sorted(suppressed)


def _model_config(spec: _Family, tokenizer: Tokenizer, shape: _Shape = _TINY_SHAPE) -> dict[str, Any]:
    eos_ids = [_id(tokenizer, t) for t in spec.config_eos]
    config: dict[str, Any] = {
        "architectures": [spec.architecture],
        "model_type": spec.model_type,
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": shape.num_layers,
        "num_attention_heads": shape.num_heads,
        "num_key_value_heads": shape.num_kv_heads,
        "head_dim": shape.head_dim,
        "max_position_embeddings": shape.context_length,
        "vocab_size": shape.vocab_size,
        "tie_word_embeddings": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": "float32",
        # Qwen has no BOS token but names <|endoftext|> (its pad) as bos_token_id.
        "bos_token_id": _id(tokenizer, spec.bos or spec.pad or spec.eos),
        "eos_token_id": eos_ids[0] if len(eos_ids) == 1 else eos_ids,
    }
    # transformers' Gemma 3, GLM-4, Phi-3 and gpt-oss configs default pad_token_id to an id outside the tiny vocab.
    if spec.model_type in ("gemma3_text", "glm4", "phi3", "gpt_oss") and spec.pad is not None:
        config["pad_token_id"] = _id(tokenizer, spec.pad)
    config.update(dict(spec.config))
    # Family settings written for the tiny dimensions, scaled to the requested ones (no-ops for tiny).
    rope_scaling = config.get("rope_scaling")
    if isinstance(rope_scaling, dict) and "original_max_position_embeddings" in rope_scaling:
        config["rope_scaling"] = {**rope_scaling, "original_max_position_embeddings": shape.context_length // 8}
    if "max_window_layers" in config:
        config["max_window_layers"] = shape.num_layers
    if "query_pre_attn_scalar" in config:
        config["query_pre_attn_scalar"] = shape.head_dim
    if "layer_types" in config:
        pattern = int(config.get("sliding_window_pattern", 2))
        config["layer_types"] = [
            "full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(shape.num_layers)
        ]
    return config


def _model_class(model_type: str) -> tuple[Any, Any]:
    # mlx-lm runs Mistral checkpoints with its Llama implementation.
    arch = "llama" if model_type == "mistral" else model_type
    module = importlib.import_module(f"mlx_lm.models.{arch}")
    return module.Model, module.ModelArgs


def _build_model(spec: _Family, config: dict[str, Any], suppressed: Sequence[int], shape: _Shape = _TINY_SHAPE) -> Any:
    """Instantiate the mlx-lm model and fill it with seeded random weights (numpy, so any platform agrees).

    Deeper models scale down what each layer adds to the residual stream, so the stream ends with the same
    size as in the tiny models: the final norm then shrinks the anchor dimension as much, which keeps the
    suppressed ids' logits as far below the rest, and activations stay well inside float32 at any depth.
    """
    # The tiny models keep their float64 draws so their bytes never change; other shapes draw float32 (faster).
    draw = np.float64 if shape == _TINY_SHAPE else np.float32
    residual_scale = math.sqrt(NUM_LAYERS / shape.num_layers)
    model_cls, args_cls = _model_class(spec.model_type)
    model = model_cls(args_cls.from_dict(config))
    weights: list[tuple[str, mx.array]] = []
    params = cast("list[tuple[str, mx.array]]", tree_flatten(model.parameters()))
    for name, param in params:
        if name.endswith((".bias", ".sinks")):
            # Biases (Qwen2, GLM-4, gpt-oss) and gpt-oss attention sinks start at zero; no tiny family has them.
            weights.append((name, mx.zeros_like(param).astype(mx.float32)))
            continue
        if param.ndim == 1:
            # Norm scales: Gemma stores offsets from 1 (HF initialises them to 0), the others plain ones.
            norm = mx.zeros_like(param) if spec.model_type == "gemma3_text" else mx.ones_like(param)
            weights.append((name, norm.astype(mx.float32)))
            continue
        rng = np.random.default_rng([spec.seed, zlib.crc32(name.encode())])
        # 2-D for linear layers and embeddings; gpt-oss stacks its experts as (experts, rows, cols).
        rows, cols = param.shape[-2:]
        if name.endswith("embed_tokens.weight"):
            w = rng.standard_normal((rows, cols), dtype=draw)
            w[:, 0] = _ANCHOR_VALUE
        else:
            w = rng.standard_normal(tuple(param.shape), dtype=draw) / math.sqrt(cols)
        if name.endswith(("o_proj.weight", "down_proj.weight", "out_proj.weight")):
            if residual_scale != 1.0:
                w *= residual_scale
            # Nothing writes to residual dimension 0, so it keeps the embedding's constant to the end.
            w[..., 0, :] = 0.0
        if name.endswith("lm_head.weight"):  # language_model.lm_head.weight in Qwen3.5's wrapper
            # Same draw as the embedding (same seed and name), so each token's output row leans to its input row.
            embed = np.random.default_rng([spec.seed, zlib.crc32(b"model.embed_tokens.weight")])
            w += spec.copy_weight * embed.standard_normal((rows, cols), dtype=draw) / math.sqrt(cols)
            w[:, 0] = 0.0
            w[list(suppressed), :] = 0.0
            w[list(suppressed), 0] = -_SUPPRESSED_LOGIT_WEIGHT
        weights.append((name, mx.array(w.astype(np.float32))))
    model.load_weights(weights, strict=True)
    mx.eval(model.parameters())
    return model


def _added_token_json(content: str, special: bool) -> dict[str, Any]:
    return {
        "content": content,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
        "special": special,
    }


def _tokenizer_config(spec: _Family, tokenizer: Tokenizer, context_length: int = CONTEXT_LENGTH) -> dict[str, Any]:
    decoder = {str(_id(tokenizer, content)): _added_token_json(content, special) for content, special in spec.added}
    config: dict[str, Any] = {
        "add_bos_token": spec.add_bos,
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "bos_token": spec.bos,
        "chat_template": spec.chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": spec.eos,
        "extra_special_tokens": {},
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": context_length,
        "pad_token": spec.pad,
        "split_special_tokens": False,
        "tokenizer_class": spec.tokenizer_class,
        "unk_token": spec.unk,
    }
    if spec.tokenizer_class == "Qwen2Tokenizer":
        config["errors"] = "replace"
        config["add_prefix_space"] = False
    return config


def _special_tokens_map(spec: _Family) -> dict[str, Any]:
    named = {"bos_token": spec.bos, "eos_token": spec.eos, "pad_token": spec.pad, "unk_token": spec.unk}
    entries = {key: _added_token_json(value, True) for key, value in named.items() if value is not None}
    for entry in entries.values():
        del entry["special"]
    return entries


def _generation_config(spec: _Family, tokenizer: Tokenizer) -> dict[str, Any]:
    eos = [_id(tokenizer, t) for t in spec.stop_tokens]
    config: dict[str, Any] = {"bos_token_id": _id(tokenizer, spec.bos or spec.pad or spec.eos)}
    config["eos_token_id"] = eos[0] if len(eos) == 1 else eos
    if spec.pad is not None and (spec.tokenizer_class == "Qwen2Tokenizer" or spec.model_type == "gemma3_text"):
        config["pad_token_id"] = _id(tokenizer, spec.pad)
    config.update(dict(spec.generation))
    return config


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@functools.cache
def _source_version() -> str:
    """Version string for the marker: any edit to this generator or its templates invalidates old folders."""
    digest = hashlib.sha256(GENERATOR_VERSION.encode())
    for module in (
        __name__,
        "mlx_manager.testing.tiny_families",
        "mlx_manager.testing.chat_templates",
        "mlx_manager.testing.chat_templates_more",
    ):
        source = getattr(sys.modules.get(module), "__file__", None)
        if source:
            digest.update(Path(source).read_bytes())
    return f"mlx-manager tiny-models v{GENERATOR_VERSION} {digest.hexdigest()[:16]}"


_REQUIRED_FILES = (
    "config.json",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
)


def _marker(family: str, shape: _Shape) -> str:
    """The marker text of a complete folder: the generator version, plus the dimensions for shaped models."""
    if shape == _TINY_SHAPE:
        return _source_version()
    dims = " ".join(f"{key}={value}" for key, value in vars(shape).items())
    return f"{_source_version()} {family} {dims}"


def _is_complete(folder: Path, marker_text: str | None = None) -> bool:
    marker = folder / MARKER_FILE
    expected = _source_version() if marker_text is None else marker_text
    if not marker.is_file() or marker.read_text(encoding="utf-8").strip() != expected:
        return False
    if not all((folder / name).is_file() for name in _REQUIRED_FILES):
        return False
    # mlx-lm writes model.safetensors, or numbered shards above its shard size; the index names them.
    try:
        index = json.loads((folder / "model.safetensors.index.json").read_text(encoding="utf-8"))
        shards = set(index["weight_map"].values())
    except (OSError, ValueError, KeyError, AttributeError):
        return False
    return bool(shards) and all((folder / shard).is_file() for shard in shards)


def _write_folder(folder: Path, family: str, shape: _Shape = _TINY_SHAPE) -> None:
    # Deferred so importing this module (e.g. for FAMILIES) stays cheap.
    from mlx_lm.utils import quantize_model, save_config, save_model

    base = family.removesuffix("-4bit")
    spec = _SPECS[base]
    tokenizer = _build_tokenizer(spec)
    if shape.vocab_size < tokenizer.get_vocab_size(with_added_tokens=True):
        raise ValueError(
            f"vocab_size {shape.vocab_size} is smaller than the {family} tokenizer "
            f"({tokenizer.get_vocab_size(with_added_tokens=True)} ids)"
        )
    config = _model_config(spec, tokenizer, shape)
    model = _build_model(spec, config, _suppressed_ids(tokenizer, spec, shape.vocab_size), shape)
    if family.endswith("-4bit"):
        with contextlib.redirect_stdout(io.StringIO()):  # quantize_model prints a bits-per-weight line
            model, config = quantize_model(model, config, group_size=QUANT_GROUP_SIZE, bits=QUANT_BITS)
    save_model(folder, model, donate_model=True)
    save_config(config, config_path=folder / "config.json")
    tokenizer.save(str(folder / "tokenizer.json"))
    _write_json(folder / "tokenizer_config.json", _tokenizer_config(spec, tokenizer, shape.context_length))
    _write_json(folder / "special_tokens_map.json", _special_tokens_map(spec))
    _write_json(folder / "generation_config.json", _generation_config(spec, tokenizer))
    # Written last: its presence (with the current version) is what marks the folder as usable.
    (folder / MARKER_FILE).write_text(_marker(family, shape) + "\n", encoding="utf-8")


def write_once(folder: Path, complete: Callable[[Path], bool], write: Callable[[Path], None], force: bool) -> Path:
    """`folder` written by `write` unless `complete` says a finished one is there (or `force`). Built beside the
    target and renamed, so a crash or a concurrent writer never leaves a half folder."""
    if not force and complete(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.{uuid.uuid4().hex}"
    try:
        write(staging)
        if not force and complete(folder):
            return folder  # a concurrent writer finished first
        if folder.exists():
            shutil.rmtree(folder)
        try:
            os.rename(staging, folder)
        except OSError:
            if not complete(folder):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def file_marker(label: str, source: str) -> str:
    """A marker for a generator module outside this one: this package's source version and that file's bytes."""
    digest = hashlib.sha256(_source_version().encode())
    digest.update(Path(source).read_bytes())
    return f"mlx-manager {label} {digest.hexdigest()[:16]}"


def marked(text: str) -> Callable[[Path], bool]:
    """A `complete` check for write_once: the folder's marker file holds `text`."""
    return lambda folder: (
        (folder / MARKER_FILE).is_file() and (folder / MARKER_FILE).read_text(encoding="utf-8").strip() == text
    )


def _write_model(out_dir: Path, folder_name: str, family: str, shape: _Shape, force: bool) -> Path:
    """Write ``out_dir/folder_name`` unless a complete folder with the same marker is there."""
    marker = _marker(family, shape)
    return write_once(
        Path(out_dir) / folder_name,
        lambda f: _is_complete(f, marker),
        lambda staging: _write_folder(staging, family, shape),
        force,
    )


def write_tiny_model(out_dir: Path, family: str, *, force: bool = False) -> Path:
    """Write ``out_dir/tiny-<family>`` unless a complete folder from this generator version is there."""
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny model family {family!r}; choose from {', '.join(FAMILIES)}")
    return _write_model(Path(out_dir), f"tiny-{family}", family, _TINY_SHAPE, force)


def write_tiny_variant(out_dir: Path, family: str, *, force: bool = False) -> Path:
    """Write ``out_dir/tiny-<family>`` for one of VARIANTS (a hybrid recurrent model, a short sliding window)."""
    if family not in VARIANTS:
        raise ValueError(f"unknown tiny model variant {family!r}; choose from {', '.join(VARIANTS)}")
    return _write_model(Path(out_dir), f"tiny-{family}", family, _TINY_SHAPE, force)


def write_tiny_models(out_dir: Path, families: Iterable[str] | None = None) -> dict[str, Path]:
    """Write the requested families (all of FAMILIES by default); returns family name -> folder."""
    return {family: write_tiny_model(out_dir, family) for family in (FAMILIES if families is None else families)}


def write_shaped_model(
    out_dir: Path,
    family: str,
    name: str,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    intermediate_size: int,
    vocab_size: int | None = None,
    context_length: int = SHAPED_CONTEXT_LENGTH,
    force: bool = False,
) -> Path:
    """Write ``out_dir/name``: the family's tiny model (tokenizer, templates, special tokens, suppressed
    special and padding ids so generation always runs to max_tokens, float32) with these dimensions.

    ``vocab_size`` defaults to the tiny models' 1024 (it must cover the ~1000-id tokenizer), so at real
    model dimensions the embedding and lm_head are far smaller than the real model's; see SHAPES.
    head_dim is hidden_size / num_heads. A complete folder written with the same generator version,
    family and dimensions is kept as it is unless ``force``.
    """
    if family not in _SPECS:
        raise ValueError(f"unknown model family {family!r} for a shaped model; choose from {', '.join(_SPECS)}")
    if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise ValueError(f"invalid model folder name {name!r}")
    shape = _Shape(
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        vocab_size=MODEL_VOCAB_SIZE if vocab_size is None else vocab_size,
        context_length=context_length,
    )
    if min(vars(shape).values()) <= 0:
        raise ValueError(f"model dimensions must be positive: {shape}")
    if hidden_size % num_heads or num_heads % num_kv_heads or shape.head_dim % 2:
        raise ValueError(
            f"hidden_size ({hidden_size}) must split into num_heads ({num_heads}) heads of an even size, "
            f"and num_heads must be a multiple of num_kv_heads ({num_kv_heads})"
        )
    return _write_model(Path(out_dir), name, family, shape, force)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlx_manager.testing.tiny_models",
        description="Write tiny random-weight model folders (OUT_DIR/tiny-<family>) for tests, or with --shape "
        "one family (default llama) at a named model's dimensions (OUT_DIR/shaped-<family>-<size>).",
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    parser.add_argument(
        "--family", action="append", choices=FAMILIES, metavar="NAME", help=f"one of {', '.join(FAMILIES)}"
    )
    parser.add_argument(
        "--shape", choices=sorted(SHAPES), metavar="SHAPE", help=f"real model dimensions: {', '.join(SHAPES)}"
    )
    parser.add_argument("--force", action="store_true", help="rewrite folders that are already complete")
    args = parser.parse_args(argv)
    if args.shape is not None:
        preset = SHAPES[args.shape]
        dims = preset._asdict()
        del dims["tag"]
        for family in args.family or ["llama"]:
            if family not in _SPECS:
                parser.error(f"--shape needs a float family ({', '.join(_SPECS)}), not {family!r}")
            name = f"shaped-{family}-{preset.tag}"
            print(write_shaped_model(args.out_dir, family, name, force=args.force, **dims))
        return 0
    for family in args.family or FAMILIES:
        print(write_tiny_model(args.out_dir, family, force=args.force))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
