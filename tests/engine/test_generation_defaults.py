"""Which sampling value a request gets: its own, else the model's, else the server's, else the API's."""

from __future__ import annotations

import json
from pathlib import Path

from mlx_manager.engine.generation_defaults import (
    API_DEFAULTS,
    effective,
    fill,
    from_mapping,
    read_generation_config,
    resolved,
)
from mlx_manager.engine.types import SamplingDefaults, SamplingParams

MODEL = SamplingDefaults(temperature=0.6, top_p=0.95)
SERVER = SamplingDefaults(temperature=0.0, top_k=20)


def test_request_values_win_then_model_then_server_then_api() -> None:
    params = fill(SamplingParams(top_p=0.5), MODEL, SERVER)
    assert (params.temperature, params.top_p, params.top_k, params.min_p, params.repetition_penalty) == (
        0.6,
        0.5,
        20,
        API_DEFAULTS.min_p,
        API_DEFAULTS.repetition_penalty,
    )


def test_an_explicit_zero_is_a_value_not_a_gap() -> None:
    assert fill(SamplingParams(temperature=0.0, top_k=0), MODEL, SERVER).temperature == 0.0
    assert fill(SamplingParams(temperature=0.0, top_k=0), MODEL, SERVER).top_k == 0


def test_resolved_names_the_source_of_each_value() -> None:
    sources = {k: src for k, (_, src) in resolved(None, MODEL, SERVER).items()}
    assert sources == {"temperature": "model", "top_p": "model", "top_k": "server", "min_p": "api",
                       "repetition_penalty": "api"}  # fmt: skip


def test_generation_config_values_out_of_range_or_of_the_wrong_type_are_ignored() -> None:
    got = from_mapping({"temperature": 9, "top_p": 0.9, "top_k": 2.5, "min_p": True, "repetition_penalty": 1.1})
    assert got.items() == {"top_p": 0.9, "repetition_penalty": 1.1}
    assert from_mapping({"top_k": 40.0, "temperature": float("nan")}).items() == {"top_k": 40}


def test_a_missing_or_broken_generation_config_gives_no_defaults(tmp_path: Path) -> None:
    assert read_generation_config(tmp_path).items() == {}
    (tmp_path / "generation_config.json").write_text("{not json")
    assert read_generation_config(tmp_path).items() == {}
    (tmp_path / "generation_config.json").write_text(json.dumps({"temperature": 0.7, "eos_token_id": 2}))
    assert read_generation_config(tmp_path).items() == {"temperature": 0.7}


def test_effective_fills_what_nobody_set_with_the_api_defaults() -> None:
    assert effective(SamplingParams(temperature=0.2)).temperature == 0.2
    assert effective(SamplingParams()) == API_DEFAULTS
