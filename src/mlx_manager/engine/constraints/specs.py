"""What a request may constrain its output to, as plain data, and how each becomes llguidance grammar text."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlx_manager.engine.errors import InvalidRequestError


class ConstraintError(InvalidRequestError, ValueError):
    """The requested output format cannot be enforced; `unsupported` names the JSON Schema keywords at fault.

    An InvalidRequestError so the API layers answer 400, and a ValueError for callers outside the engine.
    """

    def __init__(self, message: str, *, unsupported: Sequence[str] = (), param: str | None = "response_format"):
        super().__init__(message, param=param)
        self.unsupported = tuple(unsupported)


@dataclass(frozen=True)
class JsonObjectSpec:
    """`response_format: {"type": "json_object"}`: any JSON object."""


@dataclass(frozen=True, eq=False)
class JsonSchemaSpec:
    """`response_format: {"type": "json_schema", ...}`: a JSON value valid against `schema`.

    llguidance fixes the order of object properties to the order they are listed in the schema.
    """

    schema: Mapping[str, Any]


@dataclass(frozen=True, eq=False)
class ToolFunction:
    name: str
    parameters: Mapping[str, Any] | None = None  # a JSON Schema; None means any JSON object


@dataclass(frozen=True, eq=False)
class ToolCallSpec:
    """Forced tool calls (`tool_choice: "required"` or a named function).

    The output is ``begin CALL (separator CALL)* end`` where each CALL is
    ``prefix {"<name_key>": "<one of the names>", "<arguments_key>": <arguments>} suffix`` and the arguments
    validate against that function's parameters. Formats that write the name outside JSON give `head` instead,
    a template where ``{name}`` stands for the name: CALL is then ``prefix head <arguments> tail suffix``.
    Exactly one call unless `parallel` (then up to `max_calls`).
    The literals may hold special tokens of the tokenizer (e.g. ``[TOOL_CALLS]``): those are matched as the
    token, not as text.
    Hermes/Qwen: prefix="<tool_call>\\n", suffix="\\n</tool_call>", separator="\\n".
    Mistral: begin="[TOOL_CALLS][", end="]", separator=", ".
    gpt-oss: head="<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>", suffix="<|call|>".
    """

    functions: Sequence[ToolFunction]
    prefix: str = ""
    suffix: str = ""
    separator: str = "\n"
    begin: str = ""
    end: str = ""
    parallel: bool = False
    max_calls: int | None = None  # with `parallel`: None means no limit
    name_key: str = "name"
    arguments_key: str = "arguments"
    head: str | None = None
    tail: str = ""


@dataclass(frozen=True)
class Preamble:
    """Free text the model may write before its constrained answer: a reasoning block.

    ``open`` starts it ("" when the prompt already opened it, which makes it required), ``close`` ends it;
    `max_tokens` bounds its length (the grammar then forces ``close``), which needs ``close`` to begin with a
    special token (else a ConstraintError, or no bound when not `strict`).
    Gemma-style ``<think>``/``</think>``: open="<think>", close="</think>".
    """

    open: str
    close: str
    required: bool = False
    max_tokens: int | None = None
    # False: a budget the grammar cannot enforce (a plain-text ``close``) is dropped instead of refused.
    strict: bool = True


@dataclass(frozen=True, eq=False)
class FramedSpec:
    """A constrained answer in the family's framing: an optional `preamble`, then `prefix`, then `inner`."""

    inner: JsonObjectSpec | JsonSchemaSpec | ToolCallSpec
    preamble: Preamble | None = None
    prefix: str = ""


@dataclass(frozen=True)
class LarkSpec:
    """A raw llguidance Lark grammar, for formats the other specs do not cover."""

    grammar: str


ConstraintSpec = JsonObjectSpec | JsonSchemaSpec | ToolCallSpec | FramedSpec | LarkSpec | Mapping[str, Any]
Normalized = JsonObjectSpec | JsonSchemaSpec | ToolCallSpec | FramedSpec | LarkSpec
ANY_OBJECT: Mapping[str, Any] = {"type": "object"}


# The widest indentation the default whitespace pattern allows between two JSON tokens, for sizing outputs.
WIDEST_GAP = "\n" + " " * 20


@dataclass
class JsonOptions:
    """llguidance JSON compiler options applied to every schema (they override a schema's own x-guidance)."""

    # Whitespace between JSON tokens: one space, or a newline and some indentation (as llama.cpp's JSON grammar).
    # Bounded so a weak model cannot loop on whitespace forever, yet pretty-printed output stays possible.
    whitespace_pattern: str | None = r"(?: |\n[ \t]{0,20})?"
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        # lenient=False: unknown keywords are errors, never silently ignored.
        opts: dict[str, Any] = {"lenient": False, **self.extra}
        if self.whitespace_pattern is None:
            opts["whitespace_flexible"] = False
        else:
            opts["whitespace_pattern"] = self.whitespace_pattern
        return opts


def normalize(spec: ConstraintSpec) -> Normalized:
    """A bare mapping is a JSON Schema."""
    if isinstance(spec, JsonObjectSpec | JsonSchemaSpec | ToolCallSpec | FramedSpec | LarkSpec):
        return spec
    if isinstance(spec, Mapping):
        return JsonSchemaSpec(spec)
    raise TypeError(f"not a constraint spec: {type(spec).__name__}")


def spec_key(spec: Normalized) -> str:
    """A cache key; schemas are not key-sorted because property order changes the grammar."""
    if isinstance(spec, JsonObjectSpec):
        return "json_object"
    if isinstance(spec, JsonSchemaSpec):
        return "json_schema:" + _dumps(spec.schema)
    if isinstance(spec, LarkSpec):
        return "lark:" + spec.grammar
    if isinstance(spec, FramedSpec):
        pre = spec.preamble
        head = [pre.open, pre.close, pre.required, pre.max_tokens, pre.strict] if pre else None
        return "framed:" + _dumps([head, spec.prefix]) + ":" + spec_key(spec.inner)
    fields = [
        [[f.name, f.parameters] for f in spec.functions],
        [spec.prefix, spec.suffix, spec.separator, spec.begin, spec.end, spec.head, spec.tail],
        [spec.parallel, spec.max_calls, spec.name_key, spec.arguments_key],
    ]
    return "tools:" + _dumps(fields)


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConstraintError(f"The schema is not valid JSON: {exc}") from exc


def tool_call_lark(spec: ToolCallSpec, options: JsonOptions, literal: Callable[[str], str]) -> str:
    """Lark grammar for `spec`; `literal(text)` renders text as a Lark expression (special tokens as tokens)."""
    return "\n".join(["start: answer", *tool_call_rules(spec, options, literal)]) + "\n"


def framed_lark(spec: FramedSpec, options: JsonOptions, literal: Callable[[str], str]) -> str:
    """Lark grammar for `spec`: ``preamble? gap? prefix answer`` (the preamble required when the prompt opened it)."""
    rules: list[str] = []
    parts: list[str] = []
    pre = spec.preamble
    if pre is not None:
        close = literal(pre.close)
        if not close:
            raise ConstraintError("A reasoning block needs a closing tag.", param=None)
        if close.startswith("<["):  # a special token ends the block: free text cannot contain it
            budget = f"[max_tokens={pre.max_tokens}]" if pre.max_tokens is not None else ""
            rules += [f"preamble: {_seq(literal(pre.open), 'body', close)}", f"body{budget}: /(?s:.*)/"]
        elif pre.max_tokens is not None and pre.strict:
            raise ConstraintError(
                f"A reasoning budget needs a single-token closing tag; {pre.close!r} is plain text.",
                param="max_reasoning_tokens",
            )
        else:  # plain-text tag: a lazy body that ends at the first close
            body = f"body[suffix={json.dumps(pre.close)}]: /(?s:.*)/"
            rules += [f"preamble: {_seq(literal(pre.open), 'body')}", body]
        rules.append(r"GAP: /[ \t\n]{1,4}/")
        parts.append("preamble GAP?" if pre.required else "(preamble GAP?)?")
    parts += [literal(spec.prefix), "answer"]
    inner = spec.inner
    if isinstance(inner, ToolCallSpec):
        rules += tool_call_rules(inner, options, literal)
    else:
        schema = dict(inner.schema) if isinstance(inner, JsonSchemaSpec) else dict(ANY_OBJECT)
        schema["x-guidance"] = options.as_dict()
        rules.append(f"answer: %json {_dumps(schema)}")
    return "\n".join([f"start: {_seq(*parts)}", *rules]) + "\n"


_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


def tool_call_rules(spec: ToolCallSpec, options: JsonOptions, literal: Callable[[str], str]) -> list[str]:
    """Lark rules whose root, `answer`, is the forced call(s) of `spec`."""
    if not spec.functions:
        raise ConstraintError("A forced tool call needs at least one function.", param="tools")
    if spec.max_calls is not None and spec.max_calls < 1:
        raise ConstraintError("max_calls must be at least 1.", param="tools")
    names = [f.name for f in spec.functions]
    if len(set(names)) != len(names):
        raise ConstraintError(f"Function names must be unique: {names}", param="tools")
    # The envelope is fixed text so each function's parameters schema stays a root document ($ref "#/..." works).
    rules = []
    for i, fn in enumerate(spec.functions):
        if not _NAME.match(fn.name):
            raise ConstraintError(
                f"Function name {fn.name!r} must be 1-128 letters, digits, '_', '-', '.' or ':'.", param="tools"
            )
        params = dict(fn.parameters) if fn.parameters is not None else dict(ANY_OBJECT)
        params["x-guidance"] = options.as_dict()
        head, tail = call_envelope(spec, fn.name)
        rules.append(f"fn_{i}: {_seq(literal(spec.prefix + head), f'args_{i}', literal(tail + spec.suffix))}")
        rules.append(f"args_{i}: %json {_dumps(params)}")
    call = " | ".join(f"fn_{i}" for i in range(len(spec.functions)))
    more = "*" if spec.max_calls is None else f"{{0,{spec.max_calls - 1}}}"
    repeat = spec.parallel and spec.max_calls != 1
    calls = f"call ({_seq(literal(spec.separator), 'call')}){more}" if repeat else "call"
    return [f"answer: {_seq(literal(spec.begin), calls, literal(spec.end))}", f"call: {call}", *rules]


def call_envelope(spec: ToolCallSpec, name: str) -> tuple[str, str]:
    """The fixed text before and after a call's arguments (inside `prefix` and `suffix`)."""
    if spec.head is None:
        return f"{{{json.dumps(spec.name_key)}: {json.dumps(name)}, {json.dumps(spec.arguments_key)}: ", "}"
    return spec.head.replace("{name}", name), spec.tail


def _seq(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def lark_literal(text: str, special: Mapping[str, int]) -> str:
    """`text` as a Lark expression: quoted strings, with any special token (by its text) as ``<[id]>``."""
    if not text:
        return ""
    pieces: list[str] = []
    if special:
        pattern = "|".join(re.escape(t) for t in sorted(special, key=len, reverse=True))
        pos = 0
        for m in re.finditer(pattern, text):
            if m.start() > pos:
                pieces.append(json.dumps(text[pos : m.start()]))
            pieces.append(f"<[{special[m.group()]}]>")
            pos = m.end()
        if pos < len(text):
            pieces.append(json.dumps(text[pos:]))
    else:
        pieces.append(json.dumps(text))
    return " ".join(pieces)
