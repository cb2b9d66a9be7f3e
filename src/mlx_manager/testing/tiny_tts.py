"""A tiny random-weight Soprano (text to speech) folder for tests, written offline.

Soprano is mlx-audio's smallest self-contained TTS: a Qwen3 language model whose hidden states a Vocos decoder turns
into a waveform, one voice, no codec or voice pack fetched at load. The tokenizer is byte-level with Soprano's
markers; the weights are random, so the audio is noise, but every step (tokens, decoder, ISTFT) runs. The stop
token's output row is zero while the others are large, so the model never stops by itself: each sentence runs to the
server's token cap and its length is deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx

MARKERS = ("[STOP]", "[TEXT]", "[START]")
SAMPLE_RATE = 24_000  # not Soprano's 32 kHz default, so a test sees the rate come from config.json
SHAPE = {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "num_attention_heads": 2,
         "num_key_value_heads": 1, "head_dim": 32}  # fmt: skip


def _tokenizer(folder: Path) -> int:
    """A byte-level tokenizer (256 byte tokens, then the markers); returns the vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(MARKERS))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="[STOP]", pad_token="[STOP]")
    fast.save_pretrained(str(folder))
    return len(vocab) + len(MARKERS)


def write_tiny_soprano(folder: Path, *, seed: int = 0) -> Path:
    """A Soprano folder (config.json, model.safetensors, tokenizer files); kept if already there. Its config says
    "qwen3", as Soprano's checkpoints do: the folder's name (with "soprano" in it) is what tells it apart."""
    if (folder / "model.safetensors").is_file():
        return folder
    from mlx.utils import tree_flatten
    from mlx_audio.tts.models.soprano import Model, ModelConfig

    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = _tokenizer(folder)
    config = {"model_type": "qwen3", "vocab_size": vocab_size, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
              "max_position_embeddings": 2048, "tie_word_embeddings": False, "sample_rate": SAMPLE_RATE,
              **SHAPE}  # fmt: skip
    mx.random.seed(seed)
    model = Model(ModelConfig.from_dict({**config, "model_path": str(folder)}))
    params: dict[str, mx.array] = {
        k: v for k, v in dict(tree_flatten(model.parameters())).items() if isinstance(v, mx.array)
    }
    stop = vocab_size - len(MARKERS)  # "[STOP]", the first marker
    head = params["language_model.lm_head.weight"] * 8.0
    params["language_model.lm_head.weight"] = mx.concatenate([head[:stop], mx.zeros_like(head[stop : stop + 1]),
                                                              head[stop + 1 :]])  # fmt: skip
    mx.save_safetensors(str(folder / "model.safetensors"), params)
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder
