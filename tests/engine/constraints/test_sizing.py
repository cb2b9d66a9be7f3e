"""A forced call's size: its shortest form is a call the grammar takes, and reasoning is bounded to leave room."""

from __future__ import annotations

from typing import Any

import pytest

from mlx_manager.engine.constraints import FramedSpec, Preamble, ToolCallSpec, ToolFunction
from mlx_manager.engine.constraints.sizing import STRING_CHARS, sample_call
from mlx_manager.engine.errors import InvalidRequestError
from mlx_manager.engine.structured import _WRAPPERS, CALL_SHARE, Constraint, fit_forced_call
from tests.engine.constraints.helpers import TinyLM
from tests.engine.constraints.test_compile import accepts

ORDER = ToolFunction(
    "order",
    {
        "type": "object",
        "properties": {
            "item": {"type": "string", "minLength": 2, "maxLength": 40},
            "size": {"enum": ["small", "extra large"]},
            "count": {"type": "integer", "minimum": 1, "maximum": 99},
            "notes": {"type": "array", "items": {"type": "string"}},
            "gift": {"anyOf": [{"type": "boolean"}, {"type": "object", "properties": {"to": {"type": "string"}}}]},
        },
        "required": ["item", "size", "count"],
        "additionalProperties": False,
    },
)
THINK = Preamble(open="<think>", close="</think>")


def _count(lm: TinyLM) -> Any:
    return lambda text: len(lm.tokenizer.encode(text, add_special_tokens=False))


def _forced(preamble: Preamble | None) -> Constraint:
    calls = ToolCallSpec([ORDER], **_WRAPPERS["hermes"])
    return Constraint(FramedSpec(calls, preamble), "open" if preamble and preamble.required else "optional")


@pytest.mark.parametrize("fmt", ["hermes", "llama3_json", "mistral", "glm4"])
def test_the_shortest_sample_call_is_one_the_grammar_accepts(qwen: TinyLM, fmt: str) -> None:
    spec = ToolCallSpec([ORDER], **_WRAPPERS[fmt])
    shortest = sample_call(spec, ORDER, shortest=True)
    assert '"item":"xx"' in shortest.text and "notes" not in shortest.text  # required properties, minimal values
    assert accepts(qwen, spec, shortest.text)


def test_the_harmony_shortest_call_is_accepted_too(gpt_oss: TinyLM) -> None:
    spec = ToolCallSpec([ORDER], **_WRAPPERS["harmony"])
    assert accepts(gpt_oss, spec, sample_call(spec, ORDER, shortest=True).text)


def test_a_typical_call_has_every_property_and_counts_its_strings_and_gaps() -> None:
    typical = sample_call(ToolCallSpec([ORDER], **_WRAPPERS["hermes"]), ORDER, shortest=False)
    for key in ("item", "size", "count", "notes", "gift", "to"):
        assert f'"{key}"' in typical.text
    assert '"extra large"' in typical.text and "99" in typical.text
    # item (capped), one note, gift.to: three strings
    assert typical.string_chars == 3 * STRING_CHARS
    assert typical.gaps > 2 * 6  # around each of the six keys' colons at least


def test_a_call_that_cannot_fit_is_a_400_naming_max_tokens(qwen: TinyLM) -> None:
    count = _count(qwen)
    shortest = count(sample_call(ToolCallSpec([ORDER], **_WRAPPERS["hermes"]), ORDER, shortest=True).text)
    with pytest.raises(InvalidRequestError, match=f"at least {shortest} tokens") as err:
        fit_forced_call(_forced(None), shortest - 1, count)
    assert err.value.param == "max_tokens"
    assert fit_forced_call(_forced(None), shortest, count) is not None
    opened = Preamble(open="", close="</think>", required=True)  # the block must still be closed: one more
    with pytest.raises(InvalidRequestError, match=f"at least {shortest + 1} tokens"):
        fit_forced_call(_forced(opened), shortest, count)


def test_reasoning_stops_where_the_call_still_fits(qwen: TinyLM) -> None:
    count = _count(qwen)
    fitted = fit_forced_call(_forced(THINK), 2000, count)
    assert fitted is not None and fitted.spec.preamble is not None
    budget = fitted.spec.preamble.max_tokens
    assert budget is not None and 2000 - 2000 // CALL_SHARE - 10 < budget <= 2000 - 2000 // CALL_SHARE
    small = fit_forced_call(_forced(THINK), 300, count)
    assert small is not None and small.spec.preamble is not None
    typical_room = 300 - (small.spec.preamble.max_tokens or 0)
    assert typical_room > 300 // CALL_SHARE  # the call's estimate, not the share, decides here


def test_no_room_for_reasoning_drops_an_optional_block_and_closes_an_opened_one_at_once(qwen: TinyLM) -> None:
    count = _count(qwen)
    dropped = fit_forced_call(_forced(THINK), 60, count)
    assert dropped is not None and dropped.spec.preamble is None and dropped.reasoning == "none"
    opened = fit_forced_call(_forced(Preamble(open="", close="</think>", required=True)), 60, count)
    assert opened is not None and opened.spec.preamble is not None and opened.spec.preamble.max_tokens == 0


def test_a_budget_the_client_set_is_kept(qwen: TinyLM) -> None:
    chosen = Preamble(open="<think>", close="</think>", max_tokens=500)
    fitted = fit_forced_call(_forced(chosen), 600, _count(qwen))
    assert fitted is not None and fitted.spec.preamble == chosen
