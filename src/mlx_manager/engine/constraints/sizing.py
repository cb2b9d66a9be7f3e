"""How long a forced tool call is, as text: at the shortest the grammar allows, and at a typical size.

Both are sample calls written the way the grammar writes them; the caller counts their tokens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlx_manager.engine.constraints.specs import ToolCallSpec, ToolFunction, call_envelope

# A string argument in a typical call holds its maxLength, at most this many characters.
STRING_CHARS = 16
_DEPTH = 6  # nested schemas deeper than this are sampled as null


@dataclass
class SampleCall:
    """A call as text (string arguments left empty when typical), the characters those strings stand for, and
    the places in its arguments where the JSON grammar allows whitespace."""

    text: str
    string_chars: int = 0
    gaps: int = 0


@dataclass
class _Sampler:
    shortest: bool
    string_chars: int = field(default=0)

    def value(self, schema: Any, depth: int = 0) -> Any:
        if not isinstance(schema, Mapping) or depth > _DEPTH:
            return None
        if "const" in schema:
            return schema["const"]
        pick = min if self.shortest else max
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return pick(schema["enum"], key=lambda v: len(json.dumps(v)))
        branches = schema.get("anyOf") or schema.get("oneOf")
        if isinstance(branches, list) and branches:
            # Each branch is sampled on its own count, so only the chosen one adds string characters.
            samples = [(_Sampler(self.shortest), b) for b in branches]
            values = [(s.value(b, depth + 1), s) for s, b in samples]
            chosen, sampler = pick(values, key=lambda vs: len(json.dumps(vs[0])) + vs[1].string_chars)
            self.string_chars += sampler.string_chars
            return chosen
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object" or (kind is None and "properties" in schema):
            required = set(schema.get("required") or ())
            props = schema.get("properties") or {}
            return {k: self.value(v, depth + 1) for k, v in props.items() if not self.shortest or k in required}
        if kind == "array":
            count = int(schema.get("minItems", 0 if self.shortest else 1))
            return [self.value(schema.get("items"), depth + 1) for _ in range(count)]
        if kind == "string":
            if self.shortest:
                return "x" * int(schema.get("minLength", 0))
            self.string_chars += min(int(schema.get("maxLength", STRING_CHARS)), STRING_CHARS)
            return ""
        if kind in ("integer", "number"):
            return schema.get("minimum", 0) if self.shortest else schema.get("maximum", 123456)
        if kind == "boolean":
            return True
        return None


def sample_call(spec: ToolCallSpec, fn: ToolFunction, *, shortest: bool) -> SampleCall:
    """One call of `fn` framed as the grammar frames it (begin, prefix, envelope, arguments, suffix, end), with
    the smallest arguments its schema obviously allows, or arguments of typical size (every property).
    A rough guide for sizing, not a validator: shapes it does not know are sampled as null."""
    sampler = _Sampler(shortest)
    args = sampler.value(fn.parameters or {"type": "object"})
    compact = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
    body = compact if shortest else json.dumps(args, ensure_ascii=False)
    # Whitespace may follow an opening bracket, precede a closing one, and surround each ':' and ','.
    gaps = sum(compact.count(c) for c in "{}[]") + 2 * sum(compact.count(c) for c in ":,")
    head, tail = call_envelope(spec, fn.name)
    text = spec.begin + spec.prefix + head + body + tail + spec.suffix + spec.end
    return SampleCall(text, sampler.string_chars, gaps)
