"""Settings, resolved CLI > environment (MLX_MANAGER_*) > TOML file > defaults."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import psutil
from limits import parse_many
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from mlx_manager import paths
from mlx_manager.sampling_defaults import SamplingDefaults

# The bottom of the package: the engine, the manager and the API read their defaults here; this module imports
# nothing of theirs.

LOCAL_CONFIG_FILE = Path("mlx-manager.toml")

# Per-request values that agent clients put at the head of the system prompt. Left in, they change the first tokens
# of every prompt and defeat the prefix cache; Claude Code's billing header is one.
DEFAULT_VOLATILE_PATTERNS: tuple[str, ...] = (r"(?m)^x-anthropic-billing-header:[^\n]*\n?",)
DEFAULT_LOGIN_RATE = "10/minute;100/hour"  # failed sign-ins (and password checks), per client and per username
DEFAULT_REGISTER_RATE = "10/minute;100/hour"  # registrations, per client
DEFAULT_KEYS_RATE = "30/minute;300/hour"  # API keys made, per client and per user


def config_files() -> list[Path]:
    """TOML files in increasing priority: the user's config, then ./mlx-manager.toml."""
    return [p for p in (paths.user_config_file(), LOCAL_CONFIG_FILE) if p.is_file()]


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3}
_UNITS |= {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "t": 1000**4, "tb": 1000**4, "tib": 1 << 40}


def parse_bytes(value: str) -> int:
    """'48GB', '512MiB', '1000000' or '75%' (of the machine's RAM) as bytes; a ValueError names what it takes."""
    text = value.strip().lower().replace(" ", "")
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(%|[kmgt]?i?b?)", text)
    if match is None or match.group(2) not in (*_UNITS, "%"):
        raise ValueError(f"'{value}' is not an amount of memory: use bytes, '48GB', '512MiB' or '75%'")
    number, unit = float(match.group(1)), match.group(2)
    if unit == "%":
        if not 0 < number <= 100:
            raise ValueError(f"'{value}': a percentage of RAM is above 0 and at most 100")
        return int(psutil.virtual_memory().total * number / 100)
    return int(number * _UNITS[unit])


def _split_list(value: Any) -> Any:
    # Env vars give "a:b" (os.pathsep) or "a,b"; TOML and CLI already give lists.
    if isinstance(value, str):
        sep = os.pathsep if os.pathsep in value else ","
        return [item.strip() for item in value.split(sep) if item.strip()]
    return value


class GenerationSettings(BaseModel):
    """[generation]: sampling defaults for requests that leave a value out, below each model's own
    generation_config.json and above the API's defaults."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repetition_penalty: float | None = Field(default=None, gt=0)

    def defaults(self) -> SamplingDefaults:
        return SamplingDefaults(**self.model_dump())


class Settings(BaseSettings):
    # Unknown keys in a TOML file are typos: say so instead of ignoring them.
    model_config = SettingsConfigDict(
        env_prefix="MLX_MANAGER_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    api_key: SecretStr | None = None
    allow_unauthenticated_remote: bool = Field(
        default=False, description="Allow binding to a non-loopback address without an API key."
    )
    allow_registration: bool = Field(
        default=True, description="Anyone may register an account (it waits for an admin's approval)."
    )
    login_rate_limit: str = Field(
        default=DEFAULT_LOGIN_RATE, description="Failed sign-ins allowed per client address and per username."
    )
    register_rate_limit: str = Field(
        default=DEFAULT_REGISTER_RATE, description="Registrations allowed per client address."
    )
    key_rate_limit: str = Field(default=DEFAULT_KEYS_RATE, description="API keys made per client address and per user.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = Field(default=False, description="Log JSON lines instead of human-readable ones.")
    log_file: bool = Field(default=True, description="Also log to a rotating file in the state dir's logs/.")

    model_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    scan_hf_cache: bool = True
    max_models: int = Field(default=4, ge=1)
    memory_budget_fraction: float = Field(default=0.75, gt=0, le=1)
    memory_budget_bytes: int | None = Field(
        default=None,
        ge=0,
        description="The pool's budget, also MLX's memory limit: bytes, or '48GB', '512MiB', '75%' (of RAM);"
        " unset: memory_budget_fraction of RAM.",
    )
    preload: Annotated[list[str], NoDecode] = Field(default_factory=list)
    distributed_config: Path | None = Field(
        default=None, description="JSON list of distributed models (id, path, hostfile, strategy, backend)."
    )
    idle_ttl_seconds: float = Field(default=0, ge=0, description="Unload idle models after this long; 0 = never.")

    max_num_seqs: int = Field(default=32, ge=1, description="Sequences decoded together per model.")
    prefill_step_size: int = Field(default=512, ge=16, description="Prompt tokens per prefill chunk.")
    step_prefill_tokens: int = Field(
        default=64,
        ge=0,
        description="Prompt tokens prefilled per scheduler step, in chunks, next to the running decode, so arriving"
        " requests do not stall it; 0 = no limit.",
    )
    max_waiting: int = Field(default=256, ge=0, description="Queued requests per model before 429.")
    speculative: Literal["off", "lookup", "draft"] = Field(
        default="lookup",
        description="Speculative decoding (engine/speculative): prompt lookup, or lookup then a draft model.",
    )
    speculative_max_draft: int = Field(default=8, ge=0, description="Draft tokens a sequence proposes per step.")
    speculative_max_batch: int = Field(
        default=4, ge=0, description="No speculation while more sequences than this decode together."
    )
    speculative_draft_model: Path | None = Field(
        default=None, description="Folder of a smaller model with the same tokenizer, for speculative = draft."
    )
    prefix_cache_bytes: int = Field(default=1 << 30, ge=0, description="KV bytes kept for prefix reuse per model.")
    prefix_block_size: int = Field(default=32, ge=1)
    disk_cache_bytes: int = Field(
        default=10 << 30,
        ge=0,
        description="Bytes of prefix-cache files kept on disk for all models together (the cold tier); 0 = off.",
    )
    disk_cache_dir: Path | None = Field(
        default=None, description="Folder of the prefix cache's disk tier; default: kv-cache in the data dir."
    )
    kv_bits: Literal[4, 8] | None = Field(
        default=None,
        description="Quantize each model's KV cache to 4 or 8 bits (none: float); a model's own setting from"
        " POST /admin/models/{id}/load?kv_bits= wins while it stays loaded.",
    )
    kv_group_size: Literal[32, 64, 128] = Field(
        default=64, description="Values per quantization group of the KV cache (a smaller one if the head needs it)."
    )
    room_wait_seconds: float = Field(default=120, ge=0, description="How long a load waits for busy models.")
    memory_reserve_bytes: int = Field(
        default=1 << 30, ge=0, description="Memory left free for the system; a load that would cut into it is a 507."
    )

    volatile_prompt_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_VOLATILE_PATTERNS),
        description="Regexes removed from system messages before templating, so per-request markers at the"
        " head of agent prompts do not defeat the prefix cache.",
    )

    breaker_failures: int = Field(default=5, ge=1, description="Failures in a row that open a backend's breaker.")
    breaker_cooldown_seconds: float = Field(default=30, gt=0, description="How long a breaker stays open.")
    backend_retries: int = Field(default=1, ge=0, description="Resends to one backend after a failure safe to retry.")
    health_check_seconds: float = Field(default=15, ge=0, description="Probe remote backends this often; 0 = never.")
    drain_seconds: float = Field(
        default=30, ge=0, description="On SIGTERM, how long in-flight requests may finish before they are ended."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Browser origins allowed to call the API (CORS); none by default."
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host header names served besides loopback names and the bound address (DNS rebinding);"
        " '*' serves any.",
    )
    max_request_bytes: int = Field(default=64 << 20, ge=1024, description="Largest request body accepted (413).")
    max_tools: int = Field(default=128, ge=1, description="Most tools one request may offer.")
    max_prompt_bytes: int = Field(
        default=16 << 20, ge=1024, description="Most bytes of text in one prompt, checked before templating (400)."
    )
    max_messages: int = Field(default=10_000, ge=1, description="Most messages in one request (400).")
    default_max_tokens: int = Field(default=4096, ge=1)
    # Time limits per endpoint (api/request/limits.py); each is also a live setting.
    chat_timeout_seconds: float = Field(
        default=900, ge=0, description="A chat generation (chat completions, Messages, Responses) running longer"
        " ends with finish_reason length; 0 = no limit.",
    )  # fmt: skip
    completions_timeout_seconds: float = Field(default=600, ge=0, description="The same for text completions.")
    embeddings_timeout_seconds: float = Field(default=120, ge=0, description="Embeddings taking longer are a 504.")
    queue_timeout_seconds: float = Field(
        default=300, ge=0, description="A request still queued for a batch slot this long is a 503; 0 = no limit."
    )
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    max_n: int = Field(default=8, ge=1)
    max_stop_sequences: int = Field(default=16, ge=1)
    max_audio_bytes: int = Field(
        default=25 << 20, ge=1, description="Largest audio file accepted by /v1/audio/transcriptions (413)."
    )
    max_audio_seconds: float = Field(default=3600, gt=0, description="Longest audio transcribed, in seconds (400).")
    max_speech_chars: int = Field(
        default=4096, ge=1, description="Longest text /v1/audio/speech speaks, in characters (400), as OpenAI's."
    )
    audio_timeout_seconds: float = Field(
        default=900, ge=0, description="A transcription running longer is stopped (504, or an error event when"
        " streamed); 0 = no limit.",
    )  # fmt: skip
    max_image_bytes: int = Field(default=20 << 20, ge=1, description="Largest image accepted, encoded (400).")
    max_image_pixels: int = Field(default=4096 * 4096, ge=1, description="Most pixels (width x height) per image.")
    vision_feature_cache_bytes: int = Field(
        default=256 << 20,
        ge=0,
        description="Bytes of encoded image features a vision model keeps, so a repeated image is not encoded again;"
        " 0 = off.",
    )
    download_disk_reserve_bytes: int = Field(
        default=1 << 30, ge=0, description="Disk space a model download must leave free in the HF cache (else 507)."
    )
    use_openblas: bool = Field(default=True, description="On Linux, preload the system OpenBLAS for mlx.")
    cpu_dtype: Literal["auto", "keep", "float32"] = Field(
        default="auto",
        description="On MLX's CPU backend (no Metal/CUDA GPU), run quantized and bf16/fp16 checkpoints in float32,"
        " several times faster there: auto = when the float32 weights fit the pool's budget and free memory,"
        " float32 = always, keep = never.",
    )
    cpu_kernels: Literal["numpy", "mlx"] = Field(
        default="numpy",
        description="On MLX's CPU backend, attention and SwiGLU through NumPy on every core (numpy: ~6x faster"
        " prefill at a few thousand tokens of context) or MLX's own kernels (mlx); no effect on Metal/CUDA.",
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: Any) -> Any:
        # An empty key must not pass the remote-bind check while turning auth off.
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return value

    @field_validator("kv_bits", "kv_group_size", mode="before")
    @classmethod
    def _kv_numbers(cls, value: Any) -> Any:
        # From the environment or the command line these are strings; "none" (or 0) is float KV.
        if isinstance(value, str):
            value = value.strip().lower()
            return None if value in ("", "none", "0", "float") else int(value) if value.isdigit() else value
        return None if value == 0 else value

    @field_validator("memory_budget_bytes", mode="before")
    @classmethod
    def _memory_amount(cls, value: Any) -> Any:
        return parse_bytes(value) if isinstance(value, str) else value

    @field_validator("login_rate_limit", "register_rate_limit", "key_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        parse_many(value)  # '10/minute;100/hour': a typo fails at start, not at the first sign-in
        return value

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        # URLs hold ':' (os.pathsep), so origins are split on commas and spaces only.
        return [v for v in value.replace(",", " ").split()] if isinstance(value, str) else value

    @field_validator("model_dirs", "preload", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_files())
        return (init_settings, env_settings, toml)

    @property
    def is_loopback(self) -> bool:
        """An address only this machine reaches (a name such as 127.evil.example is not: DNS decides it)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False

    def all_model_dirs(self) -> list[Path]:
        """Configured folders plus the data dir's models folder, which always holds imported models."""
        dirs = [p.expanduser() for p in self.model_dirs]
        return [*dirs, paths.models_dir()]


def default(name: str) -> Any:
    """A setting's default value: the engine's, the router's and the API's own defaults read it here, so each
    value is written once (config stays the bottom: it imports nothing of theirs)."""
    return Settings.model_fields[name].get_default(call_default_factory=True)


def load_settings(**overrides: Any) -> Settings:
    """Settings with CLI overrides on top; None values mean 'not given on the command line'."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
