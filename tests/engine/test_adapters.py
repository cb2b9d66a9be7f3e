"""LoRA adapters on a shared base, in process: PEFT's format converts to mlx-lm's result, several adapters and the
base run in one batch each with its own rows, a wrong adapter is a 400, and discovery ties adapters to bases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest
from mlx_lm import generate, load

from mlx_manager.engine.adapters.discovery import discover_adapters
from mlx_manager.engine.adapters.formats import read_weights
from mlx_manager.engine.adapters.lora import AdapterSet, RowModel
from mlx_manager.engine.discovery import discover_models
from mlx_manager.engine.errors import InvalidRequestError
from mlx_manager.engine.types import AdapterRef
from mlx_manager.testing.tiny_adapters import write_tiny_adapter

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def adapters(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("adapters")
    one = write_tiny_adapter(tiny_models["tiny-llama"], out, "one", seed=1)
    two = write_tiny_adapter(tiny_models["tiny-llama"], out, "two", seed=2, num_layers=1)
    other = write_tiny_adapter(tiny_models["tiny-qwen3"], out, "qwen", seed=3)
    wide = write_tiny_adapter(tiny_models["tiny-llama"], out, "wide", seed=4)["mlx"]
    weights = mx.load(str(wide / "adapters.safetensors"))
    assert isinstance(weights, dict)
    # As if trained on a wider model: every A takes twice the base's input features.
    wider = {k: mx.concatenate([v, v]) if k.endswith("lora_a") else v for k, v in weights.items()}
    mx.save_safetensors(str(wide / "adapters.safetensors"), wider)
    return {
        "one-mlx": one["mlx"],
        "one-peft": one["peft"],
        "two-mlx": two["mlx"],
        "qwen-mlx": other["mlx"],
        "wide-mlx": wide,
    }


def attach(aset: AdapterSet, folder: Path, fmt: str = "mlx") -> str:
    ref = AdapterRef("tiny-llama", folder.name, str(folder), fmt)  # type: ignore[arg-type]
    aset.install(ref, read_weights(ref, aset.linear_modules()))
    return ref.id


def greedy(model: Any, tokenizer: Any) -> str:
    return str(generate(model, tokenizer, PROMPT, max_tokens=16))


def test_peft_adapter_answers_as_its_mlx_lm_twin_and_as_mlx_lm_itself(
    tiny_models: dict[str, Path], adapters: dict[str, Path]
) -> None:
    base = tiny_models["tiny-llama"]
    reference = greedy(*load(str(base), adapter_path=str(adapters["one-mlx"]))[:2])
    model, tokenizer = load(str(base))[:2]
    plain = greedy(model, tokenizer)
    assert reference != plain  # the random adapter changes the answer
    aset = AdapterSet(model)
    mlx_id = attach(aset, adapters["one-mlx"])
    peft_id = attach(aset, adapters["one-peft"], "peft")
    outputs = {}
    for adapter_id in (mlx_id, peft_id):
        aset.rows.active = [(adapter_id, None)]
        outputs[adapter_id] = greedy(model, tokenizer)
    aset.rows.active = []
    assert outputs == {mlx_id: reference, peft_id: reference}
    assert greedy(model, tokenizer) == plain  # attached adapters change nothing for the base's rows
    # The adapter costs its own arrays, A and B of each layer it changes, nothing of the base.
    stored = mx.load(str(adapters["one-mlx"] / "adapters.safetensors"))
    assert isinstance(stored, dict)
    live = aset.live[mlx_id]
    assert live.modules == len(stored) // 2 and live.memory_bytes == sum(a.nbytes for a in stored.values())


def test_one_batch_runs_base_and_two_adapters_each_on_its_own_rows(
    tiny_models: dict[str, Path], adapters: dict[str, Path]
) -> None:
    model, tokenizer = load(str(tiny_models["tiny-llama"]))[:2]
    aset = AdapterSet(model)
    one, two = attach(aset, adapters["one-mlx"]), attach(aset, adapters["two-mlx"])
    tokens = mx.array([tokenizer.encode(PROMPT)] * 3)
    by_uid = {10: None, 11: one, 12: two}
    row_model = RowModel(model, lambda: aset, by_uid.get)

    def call(uids: list[int]) -> mx.array:
        return batch_call(row_model, uids, tokens[: len(uids)])

    mixed = call([10, 11, 12])
    alone = [call([uid]) for uid in (10, 11, 12)]
    base_only = model(tokens)  # the same batch shape with every row on the base
    assert mx.array_equal(mixed[0], base_only[0])  # exactly: the base row gets zeros added
    for row, single in enumerate(alone):
        assert mx.allclose(mixed[row], single[0], atol=1e-4)
    assert not mx.allclose(mixed[1], mixed[0], atol=1e-2) and not mx.allclose(mixed[1], mixed[2], atol=1e-2)


def batch_call(row_model: RowModel, uids: list[int], tokens: mx.array) -> mx.array:
    """Call the model as mlx-lm's batches do: from a method of an object whose `uids` are the rows."""

    class Batch:
        def __init__(self) -> None:
            self.uids = uids

        def step(self) -> mx.array:
            return row_model(tokens)

    return Batch().step()


def test_an_adapter_of_other_shapes_is_a_400_naming_the_model(
    tiny_models: dict[str, Path], adapters: dict[str, Path]
) -> None:
    model = load(str(tiny_models["tiny-llama"]))[0]
    aset = AdapterSet(model)
    with pytest.raises(InvalidRequestError) as caught:
        attach(aset, adapters["wide-mlx"])
    assert caught.value.param == "model" and "does not fit the base model 'tiny-llama'" in caught.value.message
    assert "is 256 -> 128 in the base, the adapter has (512, 4)" in caught.value.message
    assert not aset.live


def test_a_truncated_or_vanished_adapter_is_a_400_not_a_crash(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    folder = write_tiny_adapter(tiny_models["tiny-llama"], tmp_path, "cut")["mlx"]
    weights = folder / "adapters.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    aset = AdapterSet(load(str(tiny_models["tiny-llama"]))[0])
    with pytest.raises(InvalidRequestError, match=r"adapters\.safetensors cannot be read"):
        attach(aset, folder)
    weights.unlink()
    with pytest.raises(InvalidRequestError, match="cannot be served"):
        attach(aset, folder)


def test_adapters_are_found_beside_models_and_tied_to_their_base_by_config(
    tiny_models_dir: Path, adapters: dict[str, Path]
) -> None:
    models = discover_models([tiny_models_dir], None)
    found = discover_adapters([tiny_models_dir, adapters["one-mlx"].parent], None, models)
    assert {"tiny-llama@one-mlx", "tiny-llama@one-peft", "tiny-llama@two-mlx", "tiny-qwen3@qwen-mlx"} <= set(found)
    info = found["tiny-llama@one-peft"]
    assert info.adapter is not None and info.adapter.format == "peft" and info.path == models["tiny-llama"].path
    # A folder given alone is the adapter; one whose base is not here is skipped.
    assert set(discover_adapters([adapters["one-mlx"]], None, models)) == {"tiny-llama@one-mlx"}
    assert discover_adapters([adapters["one-mlx"]], None, {}) == {}


def test_an_adapter_repo_in_the_hf_cache_is_served_under_its_repo_id(
    tiny_models_dir: Path, adapters: dict[str, Path], tmp_path: Path
) -> None:
    snapshot = tmp_path / "hub" / "models--someone--tiny-lora" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for f in adapters["one-peft"].iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (tmp_path / "hub" / "models--someone--tiny-lora" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--tiny-lora" / "refs" / "main").write_text("abc123")
    models = discover_models([tiny_models_dir], None)
    found = discover_adapters([], tmp_path / "hub", models)
    assert list(found) == ["tiny-llama@someone/tiny-lora"]
    assert found["tiny-llama@someone/tiny-lora"].adapter == AdapterRef(
        "tiny-llama", "someone/tiny-lora", str(snapshot), "peft"
    )


def test_an_adapter_on_a_quantized_base_answers_as_mlx_lm(
    tiny_models: dict[str, Path], adapters: dict[str, Path]
) -> None:
    base = tiny_models["tiny-llama-4bit"]
    reference = greedy(*load(str(base), adapter_path=str(adapters["one-mlx"]))[:2])
    model, tokenizer = load(str(base))[:2]
    aset = AdapterSet(model)
    peft_id = attach(aset, adapters["one-peft"], "peft")  # sized from the packed 4-bit weights
    aset.rows.active = [(peft_id, None)]
    assert greedy(model, tokenizer) == reference
