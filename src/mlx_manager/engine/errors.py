"""Engine errors. The API layers map each to their protocol's status and shape."""

from __future__ import annotations


class EngineError(Exception):
    """Base class; `param` names the request field at fault, when there is one."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ModelNotFoundError(EngineError):
    def __init__(self, model_id: str, available: list[str]) -> None:
        hint = f" Available: {', '.join(available[:10])}." if available else " No models were found on disk."
        super().__init__(
            f"The model '{model_id}' does not exist or is not an MLX model this server can load.{hint}"
            " Add folders with --model-dir or MLX_MANAGER_MODEL_DIRS, or import a GGUF with"
            " `mlx-manager import`.",
            param="model",
        )
        self.model_id = model_id


class ModelLoadError(EngineError):
    pass


class MemoryBudgetError(EngineError):
    """The model cannot fit even after evicting every unpinned model."""


class ContextLengthError(EngineError):
    def __init__(self, prompt_tokens: int, max_tokens: int, context_length: int, param: str = "messages") -> None:
        super().__init__(
            f"This model's maximum context length is {context_length} tokens. However, you requested"
            f" {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the prompt, {max_tokens} for the"
            " completion). Please reduce the prompt or max_tokens.",
            param=param,
        )
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.context_length = context_length


class InvalidRequestError(EngineError):
    pass


class KVSettingConflict(InvalidRequestError):
    """A load asked for a KV setting (kv_bits) other than the one the loaded model runs."""


class QueueFullError(EngineError):
    """Admission control said no; the client should retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueTimeoutError(QueueFullError):
    """A request waited in the queue past its time limit (queue_timeout_seconds): a 503 with Retry-After."""


class MemoryPressureError(QueueFullError):
    """The machine is short of memory (engine/memory): new requests get a 503 with Retry-After until it is not."""


class ModelUnavailableError(EngineError):
    """A model that is configured but cannot serve now (a distributed model whose rank died or hung): a 503."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after
