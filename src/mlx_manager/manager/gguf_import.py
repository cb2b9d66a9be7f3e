"""Import a llama-architecture GGUF file as an MLX model folder that ``mlx_lm.load`` opens."""

from __future__ import annotations

import json
import math
import mmap
import os
import re
import shutil
import struct
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

GROUP_SIZE = 32
SUPPORTED_TYPES = ("F32", "F16", "Q4_0", "Q4_1", "Q8_0")
_LAYER_MODULES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}  # fmt: skip
_GLOBAL_MODULES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
# GGUF's scalar value types and their numpy dtypes, as the gguf package (llama.cpp's own) declares them.
_SCALARS: dict[int, np.dtype[Any]] = {int(t): np.dtype(d) for t, d in GGUFReader.gguf_scalar_to_np.items()}
_TOKEN_CONTROL, _TOKEN_USER_DEFINED = 3, 4
# llama.cpp pre-tokenizer names → HF pre-tokenizers that split text the same way.
_BYTE_LEVEL_PRE = ("gpt2", "default")
_DIGIT_SPLIT_PRE = ("smollm", "starcoder", "refact")
_LLAMA3_PRE = ("llama-bpe", "llama3")
_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# End-of-turn markers that chat templates use besides the GGUF's eos token.
_END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|eom_id|>")
_MAX_SHARD_BYTES = 5 << 30
# Float dtypes a GGUF can be expanded to with import_gguf(dtype=...).
FLOAT_DTYPES: dict[str, mx.Dtype] = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


class GGUFImportError(ValueError):
    """The GGUF file cannot be turned into an MLX model folder (unsupported or malformed content)."""


def read_gguf_header(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Return the GGUF's scalar/string metadata and each tensor's GGML type name, without tensor data.

    ``mx.load`` silently dequantizes some unsupported types (K-quants, BF16) to float16, so the
    types have to come from the header itself.
    """
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse_header(buf)
    except (struct.error, ValueError, KeyError) as exc:  # UnicodeDecodeError is a ValueError
        raise GGUFImportError(f"{path} is not a readable GGUF file ({exc}).") from exc


def _parse_header(buf: mmap.mmap) -> tuple[dict[str, Any], dict[str, str]]:
    # The gguf package's own GGUFReader also reads every token and merge string (~60x slower on SmolLM2's 49k-token
    # vocabulary) and refuses tensor types whose data size it cannot check; this walk takes its type tables only.
    if buf[:4] != b"GGUF":
        raise ValueError("bad magic number, expected 'GGUF'")
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
    if version < 2:
        raise ValueError(f"GGUF version {version} is too old; re-convert it with a current llama.cpp")
    pos = 24

    def read_str() -> str:
        nonlocal pos
        (n,) = struct.unpack_from("<Q", buf, pos)
        pos += 8 + n
        return buf[pos - n : pos].decode("utf-8")

    def read_value(vtype: int) -> Any:
        nonlocal pos
        if vtype == GGUFValueType.STRING:
            return read_str()
        if vtype == GGUFValueType.ARRAY:  # arrays (token lists etc.) are skipped: mx.load returns them
            itype, count = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            if itype in _SCALARS:
                pos += count * _SCALARS[itype].itemsize
            else:
                for _ in range(count):
                    read_value(itype)
            return None
        dtype = _SCALARS[vtype]
        pos += dtype.itemsize
        return np.frombuffer(buf, dtype.newbyteorder("<"), 1, pos - dtype.itemsize)[0].item()

    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = read_str()
        (vtype,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        metadata[key] = read_value(vtype)
    types: dict[str, str] = {}
    for _ in range(n_tensors):
        name = read_str()
        (n_dims,) = struct.unpack_from("<I", buf, pos)
        (ggml_type,) = struct.unpack_from("<I", buf, pos + 4 + 8 * n_dims)
        pos += 4 + 8 * n_dims + 4 + 8
        types[name] = _type_name(ggml_type)
    return metadata, types


def _type_name(ggml_type: int) -> str:
    try:
        return GGMLQuantizationType(ggml_type).name
    except ValueError:
        return f"unknown type {ggml_type}"


def import_gguf(
    gguf_path: Path,
    models_dir: Path,
    name: str | None = None,
    *,
    overwrite: bool = False,
    dtype: str | None = None,
    sampling: dict[str, float] | None = None,
) -> Path:
    """Convert a llama GGUF (F32/F16/Q4_0/Q4_1/Q8_0 tensors) into ``models_dir / name`` and return it.

    By default quantized tensors stay quantized (config.json gets a ``quantization`` block) and float
    tensors keep their type. With ``dtype`` ("float32", "float16" or "bfloat16") every quantized tensor
    is dequantized and every tensor cast to that type, giving a plain float checkpoint: larger, but fast
    on CPUs where the quantized kernels are slow.

    The folder appears atomically: it is written beside the target and renamed at the end.
    The sampling values the model's authors publish in the GGUF (``general.sampling.*``) go into
    generation_config.json, where the server takes its per-model defaults from; ``sampling`` adds to or
    overrides them (e.g. a model card's recommendation the file lacks).

    Raises GGUFImportError for unsupported content, FileExistsError if the folder exists and
    ValueError for an unknown ``dtype``.
    """
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; choose from {', '.join(FLOAT_DTYPES)}")
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf_path}")
    header, tensor_types = read_gguf_header(gguf_path)
    name = _folder_name(name, gguf_path, header)
    target = Path(models_dir) / name
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it.")
    _check_supported(gguf_path, header, tensor_types)
    try:
        loaded = mx.load(str(gguf_path), return_metadata=True)
    except (RuntimeError, ValueError) as exc:
        raise GGUFImportError(f"mlx could not read {gguf_path.name}: {exc}") from exc
    raw, metadata = cast(tuple[dict[str, mx.array], dict[str, Any]], loaded)
    meta = {k: v.tolist() if isinstance(v, mx.array) else v for k, v in metadata.items()}
    weights, module_bits = _convert_weights(raw)
    if dtype is not None:
        weights, module_bits = _to_float(weights, module_bits, FLOAT_DTYPES[dtype])
    tokenizer, token_files = _build_tokenizer(meta)
    gen = token_files["generation_config.json"]
    gen.update({**_published_sampling(meta), **(sampling or {})})
    config = _build_config(meta, weights, module_bits, raw.get("rope_freqs.weight"), gen)
    if dtype is not None:
        config["torch_dtype"] = dtype

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp creates 0700; the final folder should look like any other model
        _save_weights(tmp, weights)
        tokenizer.save(str(tmp / "tokenizer.json"))
        for filename, content in {"config.json": config, **token_files}.items():
            (tmp / filename).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
        _replace_dir(tmp, target, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# llama.cpp's keys for the sampling values a GGUF's authors recommend, by generation_config.json name.
_SAMPLING_KEYS = {
    "temperature": "general.sampling.temp",
    "top_p": "general.sampling.top_p",
    "top_k": "general.sampling.top_k",
    "min_p": "general.sampling.min_p",
    "repetition_penalty": "general.sampling.penalty_repeat",
}


def _published_sampling(meta: dict[str, Any]) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for name, key in _SAMPLING_KEYS.items():
        value = meta.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = int(value) if name == "top_k" else round(float(value), 6)  # float32 in the file
    return out


def _folder_name(name: str | None, gguf_path: Path, header: dict[str, Any]) -> str:
    if name is not None:
        if not name.strip() or name.startswith(".") or any(c in name for c in "/\\\0"):
            raise GGUFImportError(f"invalid model folder name {name!r}: use a plain name without '/'")
        return name
    # The file stem usually carries the quant suffix the user chose; general.name is a fallback.
    for candidate in (gguf_path.stem, str(header.get("general.name") or "")):
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", candidate).strip(".-_")[:100]
        if safe:
            return safe
    return "gguf-model"


def _check_supported(path: Path, header: dict[str, Any], tensor_types: dict[str, str]) -> None:
    arch = header.get("general.architecture")
    if arch != "llama":
        raise GGUFImportError(
            f"{path.name}: architecture {arch!r} is not supported; only 'llama' GGUFs (Llama, SmolLM, "
            "TinyLlama, Mistral-style) can be imported. Use an MLX conversion of the model instead "
            "(e.g. `mlx_lm.convert --hf-path <repo>`)."
        )
    bad = {n: t for n, t in tensor_types.items() if t not in SUPPORTED_TYPES}
    if bad:
        example = {t: n for n, t in reversed(bad.items())}
        kinds = ", ".join(f"{t} ({c} tensors, e.g. {example[t]})" for t, c in Counter(bad.values()).items())
        raise GGUFImportError(
            f"{path.name}: unsupported tensor type(s) {kinds}. Supported: {', '.join(SUPPORTED_TYPES)}. "
            "Download a Q4_0, Q4_1, Q8_0 or F16 variant of the model, or quantize an F16 GGUF with "
            "`llama-quantize --pure <f16.gguf> <out.gguf> Q4_0`."
        )


def _mlx_name(gguf_name: str) -> str:
    base, _, suffix = gguf_name.rpartition(".")
    if (m := re.fullmatch(r"blk\.(\d+)\.(\w+)", base)) and m.group(2) in _LAYER_MODULES:
        return f"model.layers.{m.group(1)}.{_LAYER_MODULES[m.group(2)]}.{suffix}"
    if base in _GLOBAL_MODULES:
        return f"{_GLOBAL_MODULES[base]}.{suffix}"
    raise GGUFImportError(f"unexpected tensor {gguf_name!r}: not part of a supported llama model")


def _convert_weights(raw: dict[str, mx.array]) -> tuple[dict[str, mx.array], dict[str, int | None]]:
    """Rename tensors to mlx-lm llama names; return them and each matrix module's bits (None = float)."""
    weights: dict[str, mx.array] = {}
    for gguf_name, array in raw.items():
        if gguf_name != "rope_freqs.weight":  # becomes config rope_scaling instead
            weights[_mlx_name(gguf_name)] = array
    module_bits: dict[str, int | None] = {}
    for key, array in weights.items():
        module = key.removesuffix(".weight")
        if key.endswith(".weight") and array.ndim == 2:
            scales = weights.get(f"{module}.scales")
            # Packed uint32 width / number of groups = bits per weight when groups are 32 wide.
            module_bits[module] = None if scales is None else array.shape[-1] // scales.shape[-1]
    return weights, module_bits


def _to_float(
    weights: dict[str, mx.array], module_bits: dict[str, int | None], dtype: mx.Dtype
) -> tuple[dict[str, mx.array], dict[str, int | None]]:
    """Dequantize every quantized matrix and cast every tensor to ``dtype``; names are unchanged.

    Dequantization runs in float32 (the float16 scales and biases are exact there), then casts once.
    The arrays stay lazy, so each is computed only when its shard is saved.
    """
    floats: dict[str, mx.array] = {}
    for key, array in weights.items():
        module, _, suffix = key.rpartition(".")
        bits = module_bits.get(module) if suffix == "weight" else None
        if suffix in ("scales", "biases") and module_bits.get(module) is not None:
            continue  # folded into the dequantized weight
        if bits is not None:
            scales = weights[f"{module}.scales"].astype(mx.float32)
            biases = weights.get(f"{module}.biases")
            array = mx.dequantize(
                array,
                scales,
                None if biases is None else biases.astype(mx.float32),
                group_size=GROUP_SIZE,
                bits=bits,
            )
        floats[key] = array.astype(dtype)
    return floats, dict.fromkeys(module_bits)


def _quantization(module_bits: dict[str, int | None]) -> dict[str, Any] | None:
    counts = Counter(b for b in module_bits.values() if b is not None)
    if not counts:
        return None
    bits = counts.most_common(1)[0][0]
    quant: dict[str, Any] = {"group_size": GROUP_SIZE, "bits": bits}
    for module, b in sorted(module_bits.items()):
        if b != bits:  # per-module override: mlx-lm checks these before the default
            quant[module] = False if b is None else {"group_size": GROUP_SIZE, "bits": b}
    return quant


def _rope_scaling(meta: dict[str, Any], freqs: mx.array | None, head_dim: int) -> dict[str, Any] | None:
    kind = meta.get("llama.rope.scaling.type")
    if freqs is not None:
        # Llama 3.1+ stores its rope factors as a tensor; recover the llama3 parameters and verify.
        factor = float(cast(float, freqs.max().item()))
        scaling = {
            "rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        }  # fmt: skip
        theta = float(meta.get("llama.rope.freq_base", 10000.0))
        expected = []
        for i in range(0, head_dim, 2):
            wavelen = 2 * math.pi * theta ** (i / head_dim)
            smooth = min(max((8192 / wavelen - 1.0) / (4.0 - 1.0), 0.0), 1.0)
            expected.append(1 / ((1 - smooth) / factor + smooth))
        if freqs.shape != (head_dim // 2,) or not mx.allclose(freqs, mx.array(expected), rtol=1e-3).item():
            raise GGUFImportError("rope_freqs tensor does not match llama3 rope scaling; not supported")
        return scaling
    if kind in (None, "none"):
        return None
    if kind == "linear":
        return {"type": "linear", "factor": float(meta["llama.rope.scaling.factor"])}
    raise GGUFImportError(f"rope scaling type {kind!r} is not supported (only none, linear and llama3)")


def _f32(value: Any) -> float:
    """GGUF stores float32; drop the binary noise (9.99999974e-06 → 1e-05)."""
    return float(f"{float(value):.7g}")


def _build_config(
    meta: dict[str, Any],
    weights: dict[str, mx.array],
    module_bits: dict[str, int | None],
    rope_freqs: mx.array | None,
    gen: dict[str, Any],
) -> dict[str, Any]:
    hidden = int(meta["llama.embedding_length"])
    heads = int(meta["llama.attention.head_count"])
    rope_dims = meta.get("llama.rope.dimension_count", hidden // heads)
    head_dim = int(meta.get("llama.attention.key_length", rope_dims))
    embed_rows = weights["model.embed_tokens.weight"].shape[0]
    config: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": int(meta["llama.feed_forward_length"]),
        "num_hidden_layers": int(meta["llama.block_count"]),
        "num_attention_heads": heads,
        "num_key_value_heads": int(meta.get("llama.attention.head_count_kv", heads)),
        "rms_norm_eps": _f32(meta.get("llama.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": _f32(meta.get("llama.rope.freq_base", 10000.0)),
        # llama.cpp permutes q/k rows for interleaved rotary pairs, i.e. MLX's "traditional" RoPE.
        "rope_traditional": True,
        "max_position_embeddings": int(meta.get("llama.context_length", 2048)),
        "vocab_size": int(meta.get("llama.vocab_size", embed_rows)),
        "tie_word_embeddings": "lm_head.weight" not in weights,
        "attention_bias": "model.layers.0.self_attn.q_proj.bias" in weights,
        "mlp_bias": "model.layers.0.mlp.up_proj.bias" in weights,
        "bos_token_id": gen.get("bos_token_id"),
        "eos_token_id": gen.get("eos_token_id"),
    }
    if head_dim != hidden // heads:
        config["head_dim"] = head_dim
    if (scaling := _rope_scaling(meta, rope_freqs, head_dim)) is not None:
        config["rope_scaling"] = scaling
    if (quant := _quantization(module_bits)) is not None:
        config["quantization"] = quant
        config["quantization_config"] = quant
    return config


def _pre_tokenizer(pre: str) -> tuple[pre_tokenizers.PreTokenizer, bool]:
    """Return the HF pre-tokenizer matching llama.cpp's ``tokenizer.ggml.pre`` and BPE ignore_merges."""
    if pre in _BYTE_LEVEL_PRE:
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), False
    if pre in _DIGIT_SPLIT_PRE:
        digits = pre_tokenizers.Digits(individual_digits=True)
        return pre_tokenizers.Sequence([digits, pre_tokenizers.ByteLevel(add_prefix_space=False)]), False
    if pre in _LLAMA3_PRE:
        split = pre_tokenizers.Split(Regex(_LLAMA3_REGEX), behavior="isolated")
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        return pre_tokenizers.Sequence([split, byte_level]), True
    known = ", ".join(_BYTE_LEVEL_PRE + _DIGIT_SPLIT_PRE + _LLAMA3_PRE)
    raise GGUFImportError(f"tokenizer pre-tokenizer {pre!r} is not supported (supported: {known})")


def _build_tokenizer(meta: dict[str, Any]) -> tuple[Tokenizer, dict[str, dict[str, Any]]]:
    """Rebuild a byte-level BPE tokenizer; return it and the HF side files (config, special tokens)."""
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise GGUFImportError(
            f"tokenizer model {kind!r} is not supported; only byte-level BPE ('gpt2', as used by SmolLM, "
            "Llama 3, Qwen) can be rebuilt. SentencePiece ('llama') tokenizers need the original "
            "tokenizer files: use an MLX or Hugging Face copy of the model instead."
        )
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    token_types: list[int] = list(meta.get("tokenizer.ggml.token_type", [1] * len(tokens)))
    vocab: dict[str, int] = {}
    for i, token in enumerate(tokens):
        vocab.setdefault(token, i)
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    pre, ignore_merges = _pre_tokenizer(str(meta.get("tokenizer.ggml.pre", "default")))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=ignore_merges))
    tokenizer.pre_tokenizer = pre
    tokenizer.decoder = decoders.ByteLevel()

    def token_id(key: str) -> int | None:
        value = meta.get(f"tokenizer.ggml.{key}_token_id")
        return int(value) if value is not None and 0 <= int(value) < len(tokens) else None

    ids = {key: token_id(key) for key in ("bos", "eos", "unknown", "padding", "eot", "eom")}
    special_ids = {i for i, t in enumerate(token_types) if t == _TOKEN_CONTROL}
    special_ids |= {i for i in ids.values() if i is not None}
    specials = [AddedToken(tokens[i], special=True, normalized=False) for i in sorted(special_ids)]
    tokenizer.add_special_tokens(specials)
    user_defined = [i for i, t in enumerate(token_types) if t == _TOKEN_USER_DEFINED and i not in special_ids]
    tokenizer.add_tokens([AddedToken(tokens[i], special=False, normalized=False) for i in user_defined])

    bos_id = ids["bos"] if meta.get("tokenizer.ggml.add_bos_token") else None
    eos_id = ids["eos"] if meta.get("tokenizer.ggml.add_eos_token") else None
    if bos_id is not None or eos_id is not None:
        bos = [tokens[bos_id]] if bos_id is not None else []
        eos = [tokens[eos_id]] if eos_id is not None else []
        single = " ".join([*bos, "$A", *eos])
        used = [(tokens[i], i) for i in dict.fromkeys((bos_id, eos_id)) if i is not None]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=single, pair=" ".join([single, *bos, "$B:1", *eos]), special_tokens=used
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)

    template = str(meta.get("tokenizer.chat_template", ""))
    eos_ids = [i for i in (ids["eos"], ids["eot"], ids["eom"]) if i is not None]
    eos_ids += [vocab[t] for t in _END_OF_TURN_TOKENS if t in template and t in vocab]
    eos_ids = list(dict.fromkeys(eos_ids))

    def text(i: int | None) -> str | None:
        return tokens[i] if i is not None else None

    pad = ids["padding"] if ids["padding"] is not None else ids["eos"]
    special_map = {
        "bos_token": text(ids["bos"]), "eos_token": text(ids["eos"]),
        "unk_token": text(ids["unknown"]), "pad_token": text(pad),
    }  # fmt: skip
    special_map = {k: v for k, v in special_map.items() if v is not None}
    extra = [tokens[i] for i in sorted(special_ids) if tokens[i] not in special_map.values()]
    tokenizer_config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special_map,
        "additional_special_tokens": extra,
        "add_bos_token": bos_id is not None,
        "add_eos_token": eos_id is not None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(meta.get("llama.context_length", 2048)),
    }
    if template:
        tokenizer_config["chat_template"] = template
    generation_config = {
        "bos_token_id": ids["bos"],
        "eos_token_id": eos_ids[0] if len(eos_ids) == 1 else eos_ids,
        "pad_token_id": pad,
    }
    files = {
        "tokenizer_config.json": tokenizer_config,
        "special_tokens_map.json": {**special_map, "additional_special_tokens": extra},
        "generation_config.json": generation_config,
    }
    return tokenizer, files


def _save_weights(folder: Path, weights: dict[str, mx.array]) -> None:
    shards: list[dict[str, mx.array]] = [{}]
    size = 0
    for key, array in weights.items():
        if shards[-1] and size + array.nbytes > _MAX_SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][key] = array
        size += array.nbytes
    weight_map: dict[str, str] = {}
    for i, shard in enumerate(shards, 1):
        filename = f"model-{i:05d}-of-{len(shards):05d}" if len(shards) > 1 else "model"
        filename += ".safetensors"
        mx.save_safetensors(str(folder / filename), shard, metadata={"format": "mlx"})
        weight_map.update(dict.fromkeys(shard, filename))
    index = {"metadata": {"total_size": sum(a.nbytes for a in weights.values())}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _replace_dir(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move ``tmp`` to ``target``; an existing target is swapped out only once the new one is ready."""
    if not target.exists():
        os.rename(tmp, target)
        return
    if not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it.")
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.rename(target, old / "model")
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old / "model", target)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
