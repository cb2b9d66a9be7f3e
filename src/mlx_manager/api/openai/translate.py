"""OpenAI chat and text completion requests to the engine's request. No MLX here."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mlx_manager.api.audio_parts import audio_part
from mlx_manager.api.errors import APIError
from mlx_manager.api.images import content, url_part
from mlx_manager.api.openai.schemas import ChatCompletionRequest, ChatMessage, CompletionRequest, SamplingFields
from mlx_manager.api.request import normalize as norm
from mlx_manager.api.request.model import EngineRequest
from mlx_manager.api.request.normalize import Limits, ToolChoice
from mlx_manager.engine.types import ChatPrompt, SamplingParams, TextPrompt


def unsupported(param: str, why: str) -> APIError:
    return APIError(400, f"'{param}' is not supported by this server yet: {why}", param=param, code="unsupported")


def _sampling(req: SamplingFields, limits: Limits, **given: Any) -> SamplingParams:
    norm.check_n(req.n, limits)
    return norm.sampling_params(
        req,
        temperature=req.temperature,
        top_p=req.top_p,
        seed=req.seed,
        stop=norm.stop_strings(req.stop, limits, "stop"),
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        logit_bias={int(k): v for k, v in (req.logit_bias or {}).items()},
        ignore_eos=req.ignore_eos,
        **given,
    )


# --- chat --------------------------------------------------------------------------------------------------------


def chat_request(req: ChatCompletionRequest, limits: Limits) -> EngineRequest:
    params = _sampling(
        req,
        limits,
        max_tokens=req.max_completion_tokens or req.max_tokens,
        logprobs=req.logprobs,
        top_logprobs=req.top_logprobs or 0,
        max_reasoning_tokens=req.max_reasoning_tokens,
    )
    choice = _tool_choice(req)
    tools = norm.tool_use(_tools(req) if choice.mode != "none" else [], choice)
    fmt = req.response_format
    schema = (fmt.json_schema or {}).get("schema") if fmt is not None else None
    missing = "response_format json_schema needs json_schema.schema (an object)."
    structured = norm.response_format(fmt.type if fmt else None, schema, missing, "response_format")
    norm.one_constraint(tools, structured, "response_format")
    if req.store:
        raise unsupported("store", "completions are not stored.")
    if req.continue_final_message and req.messages[-1].role != "assistant":
        raise APIError(400, "continue_final_message needs an assistant message last.", param="continue_final_message")
    prompt = ChatPrompt(
        messages=[_message_dict(m, i) for i, m in enumerate(req.messages)],
        template_kwargs=norm.template_kwargs(req.reasoning_effort, req.chat_template_kwargs),
        tools=tools.tools or None,
        parse_tool_calls=bool(tools.tools),
        parallel_tool_calls=tools.parallel,
        force_tool=tools.force,
        continue_final=req.continue_final_message,
    )
    params = replace(params, response_format=structured)
    explicit = norm.explicit_fields(req, {"max_completion_tokens": "max_tokens"})
    return EngineRequest(req.model, prompt, params, explicit, n=req.n, priority=req.priority)


def _tool_choice(req: ChatCompletionRequest) -> ToolChoice:
    choice = req.tool_choice
    function = choice.get("function") if isinstance(choice, dict) else None
    named = str(function["name"]) if isinstance(function, dict) and function.get("name") else None
    shape = "{'type': 'function', 'function': {'name': ...}}"
    return norm.tool_choice(choice, named, req.parallel_tool_calls is not False, shape)


def _tools(req: ChatCompletionRequest) -> list[dict[str, Any]]:
    tools = list(req.tools or [])
    for i, tool in enumerate(tools):
        function = tool.get("function")
        if tool.get("type") != "function" or not isinstance(function, dict) or "name" not in function:
            raise APIError(
                400, "Each tool must be {'type': 'function', 'function': {'name': ...}}.", param=f"tools.{i}"
            )
    return tools


def _message_dict(msg: ChatMessage, index: int) -> dict[str, Any]:
    data = msg.model_dump(exclude_none=True)
    if isinstance(msg.content, list):
        parts: list[dict[str, Any]] = []
        for j, part in enumerate(msg.content):
            param = f"messages.{index}.content.{j}"
            if part.type == "text":
                parts.append({"type": "text", "text": part.text or ""})
            elif part.type == "image_url" and msg.role == "user":
                parts.append(url_part((part.model_extra or {}).get("image_url"), param, "image_url"))
            elif part.type == "input_audio" and msg.role == "user":  # for models that hear (api/audio_parts)
                parts.append(audio_part((part.model_extra or {}).get("input_audio"), param))
            else:
                raise APIError(
                    400,
                    f"Content parts of type '{part.type}' are not supported in {msg.role} messages; send text"
                    " (and image_url parts in user messages, for vision models).",
                    param=param,
                )
        data["content"] = content(parts, "")
    if msg.role == "developer":  # templates know "system"; OpenAI's newer name means the same
        data["role"] = "system"
    return data


# --- text completions --------------------------------------------------------------------------------------------


def completion_requests(req: CompletionRequest, limits: Limits) -> list[EngineRequest]:
    """One engine request per prompt the client sent."""
    if req.suffix:
        raise unsupported("suffix", "fill-in-the-middle needs a model-specific template.")
    if req.best_of not in (None, req.n):
        raise unsupported("best_of", "only best_of == n is supported.")
    if req.echo and req.stream:
        raise unsupported("echo", "echo is only supported without streaming.")
    if req.echo and req.logprobs is not None:
        raise unsupported("echo", "echo with logprobs would need logprobs of the prompt tokens.")
    params = _sampling(
        req, limits, max_tokens=req.max_tokens, logprobs=req.logprobs is not None, top_logprobs=req.logprobs or 0
    )
    explicit = norm.explicit_fields(req)
    return [
        EngineRequest(req.model, p, params, explicit, n=req.n, priority=req.priority, endpoint="completions")
        for p in _prompts(req)
    ]


def _prompts(req: CompletionRequest) -> list[TextPrompt]:
    p = req.prompt
    if isinstance(p, str):
        return [TextPrompt(text=p)]
    if not p:
        raise APIError(400, "The prompt is empty.", param="prompt")
    if all(isinstance(x, int) for x in p):
        return [TextPrompt(token_ids=tuple(p))]  # type: ignore[arg-type]
    if all(isinstance(x, str) for x in p):
        return [TextPrompt(text=str(x)) for x in p]
    return [TextPrompt(token_ids=tuple(x)) for x in p]  # type: ignore[arg-type]
