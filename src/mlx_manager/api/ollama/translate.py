"""Ollama chat and generate requests to the engine's request, keep_alive durations, and the small subset of Go
templates a `template` may use. No MLX here."""

from __future__ import annotations

import json
import re
from typing import Any

from mlx_manager.api.errors import APIError
from mlx_manager.api.images import ImageRef, content, image_part
from mlx_manager.api.ollama.schemas import ChatRequest, GenerateRequest, Generating, Message, Options, Think
from mlx_manager.api.request import normalize as norm
from mlx_manager.api.request.model import EngineRequest
from mlx_manager.api.request.normalize import Limits, ToolChoice
from mlx_manager.engine.types import ChatPrompt, Prompt, SamplingParams, TextPrompt


def bad(message: str) -> APIError:
    return APIError(400, message)


# --- keep_alive --------------------------------------------------------------------------------------------------

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def keep_alive_seconds(value: str | float | None) -> float | None:
    """Seconds, from a number (seconds) or a Go duration ("5m", "1h30m", "-1"); negative: until unloaded; None:
    the server's idle TTL."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise bad('keep_alive must be a duration such as "5m" or a number of seconds.')
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    try:
        return float(text)  # "300", "-1": seconds
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    parts = _PART.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise bad(f'keep_alive \'{value[:50]}\' is not a duration such as "5m", "1h30m" or a number of seconds.')
    return sign * sum(float(n) * _UNITS[u] for n, u in parts)


# --- sampling ----------------------------------------------------------------------------------------------------

# Ollama's option names -> the engine's, for the ones a profile gives defaults for.
_RENAMES = {"num_predict": "max_tokens"}


def _sampling(req: Generating, limits: Limits) -> tuple[SamplingParams, frozenset[str]]:
    opts = req.options or Options()
    predict = opts.num_predict if opts.num_predict is not None and opts.num_predict > 0 else None  # -1, -2: no cap
    fmt = req.format
    if fmt == "json":
        structured = norm.response_format("json_object", None, "", "format")
    elif isinstance(fmt, dict):
        structured = norm.response_format("json_schema", fmt, 'format must be "json" or a JSON Schema.', "format")
    else:
        structured = None
    params = SamplingParams(
        max_tokens=predict,
        temperature=opts.temperature,
        top_p=opts.top_p,
        top_k=opts.top_k,
        min_p=opts.min_p,
        seed=opts.seed,
        stop=norm.stop_strings(opts.stop, limits, "options.stop"),
        presence_penalty=opts.presence_penalty or 0.0,
        frequency_penalty=opts.frequency_penalty or 0.0,
        repetition_penalty=opts.repeat_penalty,
        logprobs=req.logprobs,
        top_logprobs=req.top_logprobs if req.logprobs else 0,
        response_format=structured,
        max_context=opts.num_ctx,
    )
    set_here = {name for name in opts.model_fields_set if getattr(opts, name) is not None}
    if predict is None:
        set_here.discard("num_predict")
    return params, frozenset(_RENAMES.get(n, n) for n in set_here)


def _thinking(think: Think) -> dict[str, Any]:
    """`think` as the template's kwargs: true/false switch thinking (enable_thinking), a level is an effort."""
    if think is None:
        return {}
    if isinstance(think, bool):
        return {"enable_thinking": think}
    return norm.template_kwargs(think)


# --- chat --------------------------------------------------------------------------------------------------------


def chat_request(req: ChatRequest, limits: Limits) -> EngineRequest:
    params, explicit = _sampling(req, limits)
    tools = norm.tool_use(_tools(req.tools or []), _tool_choice(req.options or Options()))
    norm.one_constraint(tools, params.response_format, "format")
    prompt = ChatPrompt(
        messages=_messages(req.messages),
        template_kwargs=_thinking(req.think),
        tools=tools.tools or None,
        parse_tool_calls=bool(tools.tools),
        force_tool=tools.force,
    )
    return EngineRequest(req.model, prompt, params, explicit - {"tool_choice"})


def _tool_choice(opts: Options) -> ToolChoice:
    choice = opts.tool_choice
    function = choice.get("function") if isinstance(choice, dict) else None
    named = str(function["name"]) if isinstance(function, dict) and function.get("name") else None
    return norm.tool_choice(choice, named, True, "{'function': {'name': ...}}")


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, tool in enumerate(tools):
        function = tool.get("function")
        if tool.get("type", "function") != "function" or not isinstance(function, dict) or not function.get("name"):
            raise APIError(400, f'tools[{i}] must be {{"type": "function", "function": {{"name": ...}}}}.')
    return [{**t, "type": "function"} for t in tools]


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    call_ids: dict[str, str] = {}  # a tool's name -> the id of the latest call of it, for tool results
    for i, msg in enumerate(messages):
        data: dict[str, Any] = {"role": msg.role, "content": _content(msg, i)}
        if msg.role == "assistant" and msg.thinking:
            data["reasoning_content"] = msg.thinking
        if msg.role == "assistant" and msg.tool_calls:
            calls = []
            for j, call in enumerate(msg.tool_calls):
                call_id = call.id or f"call_{i}_{j}"
                call_ids[call.function.name] = call_id
                arguments = json.dumps(call.function.arguments)
                calls.append(
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": call.function.name, "arguments": arguments},
                    }
                )
            data["tool_calls"] = calls
        if msg.role == "tool" and msg.tool_name:
            data["name"] = msg.tool_name
            if msg.tool_name in call_ids:
                data["tool_call_id"] = call_ids[msg.tool_name]
        out.append(data)
    return out


def _content(msg: Message, index: int) -> str | list[dict[str, Any]]:
    if not msg.images:
        return msg.content
    if msg.role != "user":
        raise APIError(400, f"messages[{index}]: images are only taken in user messages.")
    parts = [
        image_part(ImageRef(param=f"messages.{index}.images.{j}", kind="images", data=b64))
        for j, b64 in enumerate(msg.images)
    ]
    return content([*parts, {"type": "text", "text": msg.content}], "")


# --- generate ----------------------------------------------------------------------------------------------------


def generate_request(req: GenerateRequest, limits: Limits) -> EngineRequest:
    if req.suffix:
        raise bad("suffix (fill-in-the-middle) is not supported by this server: it needs a model-specific template.")
    if req.context:
        raise bad("context (token ids of an earlier reply) is not supported; send the conversation to /api/chat.")
    params, explicit = _sampling(req, limits)
    return EngineRequest(req.model, _generate_prompt(req), params, explicit)


def _generate_prompt(req: GenerateRequest) -> Prompt:
    text = req.prompt or ""
    if (req.raw or req.template) and req.images:
        raise bad("images need the model's own chat template: leave out raw and template.")
    if req.raw:
        return TextPrompt(text=text)
    if req.template:
        return TextPrompt(text=render_template(req.template, req.system or "", text))
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": req.system})
    messages.append(_messages([Message(role="user", content=text, images=req.images)])[0])
    return ChatPrompt(messages=messages, template_kwargs=_thinking(req.think))


# --- templates ---------------------------------------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)
_VARIABLES = {".System", ".Prompt"}


def render_template(template: str, system: str, prompt: str) -> str:
    """A `template` of Ollama's simple form: {{ .System }}, {{ .Prompt }}, {{ if .System }}...{{ end }} (and
    {{ if .Prompt }}), ending at {{ .Response }}. Anything else (.Messages, range, functions) is a 400."""
    values = {".System": system, ".Prompt": prompt}
    out: list[str] = []
    shown: list[bool] = []  # one per open {{ if }}: whether its body is written
    pos = 0
    for match in _ACTION.finditer(template):
        text = template[pos : match.start()]
        if match[1]:
            text = text.rstrip()
        if all(shown):
            out.append(text)
        pos = match.end()
        if match[3]:
            while pos < len(template) and template[pos].isspace():
                pos += 1
        action = match[2]
        if action in _VARIABLES:
            if all(shown):
                out.append(values[action])
        elif action == ".Response":
            return "".join(out)  # the model writes the rest
        elif action.startswith("if ") and action[3:].strip() in _VARIABLES:
            shown.append(bool(values[action[3:].strip()]))
        elif action == "end" and shown:
            shown.pop()
        else:
            raise bad(
                f"template uses '{{{{ {action[:60]} }}}}', which this server cannot render: only {{{{ .System }}}},"
                " {{ .Prompt }}, {{ .Response }} and {{ if .System }} / {{ if .Prompt }} ... {{ end }} are supported."
                " Leave template out to use the model's own chat template."
            )
    if shown:
        raise bad("template has an {{ if }} without its {{ end }}.")
    if all(shown):
        out.append(template[pos:])
    return "".join(out)
