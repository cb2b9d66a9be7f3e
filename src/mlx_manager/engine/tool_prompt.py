"""Getting tools and tool results into a prompt: through the chat template when it knows `tools`, otherwise by a
documented injection, so every family can be offered functions.

Injection (for templates without tool support, e.g. Gemma 3): the function list goes into the system message with
the instruction to answer a call with only a JSON object {"name": ..., "arguments": {...}}; earlier calls are shown
as that JSON and tool results become user turns starting with "Tool result".
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

INJECTION = (
    "You can call these functions. To call one, reply with only a JSON object of the form "
    '{{"name": <function name>, "arguments": <object>}} and nothing else.\n\nFunctions:\n{functions}'
)


def template_knows_tools(template: str | None) -> bool:
    return bool(template) and "tools" in str(template)


def _arguments_as_objects(message: dict[str, Any]) -> dict[str, Any]:
    """OpenAI sends arguments as a JSON string; templates expect a mapping."""
    calls = []
    for call in message.get("tool_calls") or []:
        function = dict(call.get("function") or {})
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            # On bad JSON leave what the client sent; the template renders it as text.
            with contextlib.suppress(ValueError):
                function["arguments"] = json.loads(arguments) if arguments.strip() else {}
        calls.append({**call, "function": function})
    return {**message, "tool_calls": calls}


def prepare(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, template: str | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Messages and extra template kwargs for a conversation that may involve tools."""
    messages = [_arguments_as_objects(m) if m.get("tool_calls") else m for m in messages]
    if template_knows_tools(template):
        return messages, ({"tools": tools} if tools else {})
    has_tool_turns = any(m.get("role") == "tool" or m.get("tool_calls") for m in messages)
    if not tools and not has_tool_turns:
        return messages, {}
    return _inject(messages, tools or []), {}


def _inject(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "tool":
            out.append({"role": "user", "content": f"Tool result: {m.get('content') or ''}"})
        elif m.get("tool_calls"):
            calls = [
                json.dumps({"name": c["function"].get("name"), "arguments": c["function"].get("arguments", {})})
                for c in m["tool_calls"]
            ]
            out.append({"role": "assistant", "content": "\n".join(calls)})
        else:
            out.append(m)
    if tools:
        functions = "\n".join(json.dumps(t.get("function", t)) for t in tools)
        note = INJECTION.format(functions=functions)
        if out and out[0].get("role") == "system":
            out[0] = {**out[0], "content": f"{out[0].get('content') or ''}\n\n{note}"}
        else:
            out.insert(0, {"role": "system", "content": note})
    # Templates that insist on alternating roles: merge consecutive user turns.
    merged: list[dict[str, Any]] = []
    for m in out:
        if merged and m.get("role") == "user" and merged[-1].get("role") == "user":
            merged[-1] = {**merged[-1], "content": _join(merged[-1].get("content"), m.get("content"))}
        else:
            merged.append(m)
    return merged


def _join(first: Any, second: Any) -> Any:
    """Two user turns' contents as one: text, or parts when either holds images (vision models)."""
    if not isinstance(first, list) and not isinstance(second, list):
        return f"{first or ''}\n\n{second or ''}"

    def parts(value: Any) -> list[Any]:
        return value if isinstance(value, list) else [{"type": "text", "text": value or ""}]

    return [*parts(first), {"type": "text", "text": "\n\n"}, *parts(second)]
