"""Request and response bodies of the /api routes (Base / Create / Update / Public per resource), and the
RFC 7807 problem every error is. Times are Unix epoch seconds."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from mlx_manager.api.manager.fields import Count, PartialUpdate, PositiveInt, Strict
from mlx_manager.manager.settings_store import ManagedSettings

# --- problems -----------------------------------------------------------------------------------


class InvalidParam(BaseModel):
    loc: list[str]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 7807 problem details (`application/problem+json`); `code` names the problem for programs."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str
    code: str | None = None
    errors: list[InvalidParam] | None = Field(default=None, description="Each invalid field (validation errors).")
    request_id: str | None = Field(default=None, description="The request's X-Request-ID, to find it in the log.")


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: its error statuses, each a Problem."""
    return {status: {"model": Problem, "description": "A problem (RFC 7807)."} for status in statuses}


# --- users ----------------------------------------------------------------------------------------

Username = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")]
Password = Annotated[str, Field(min_length=8, max_length=1024)]


class UserBase(Strict):
    username: Username


class UserCreate(UserBase):
    password: Password


class RegisterRequest(UserCreate):
    setup_token: str | None = Field(
        default=None,
        max_length=1024,
        description="For the first account where the server asks for it (`setup_required`): the one-time setup"
        " token from the server's log, or the server's API key.",
    )


class PasswordChange(Strict):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: Password


class SessionsRevoked(BaseModel):
    user_id: int
    sessions_ended: int


class UserUpdate(PartialUpdate):
    is_admin: bool | None = None
    is_approved: bool | None = None


class UserPublic(BaseModel):
    id: int
    username: str
    is_admin: bool
    is_approved: bool
    created_at: float
    last_login_at: float | None


class LoginRequest(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SessionToken(BaseModel):
    access_token: str = Field(description="Send as 'Authorization: Bearer TOKEN' to /api and the model APIs.")
    token_type: Literal["bearer"] = "bearer"
    expires_at: float
    user: UserPublic


class AuthStatus(BaseModel):
    has_users: bool = Field(description="False until the first account (the admin) is registered.")
    setup_required: bool = Field(
        default=False,
        description="True while no account exists and making the first one needs the setup token (from the"
        " server's log) or the server's API key, sent as `setup_token`.",
    )
    registration_open: bool = Field(default=True, description="Whether POST /api/auth/register takes new users.")


# --- API keys -------------------------------------------------------------------------------------


class ApiKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=100)


class ApiKeyPublic(BaseModel):
    id: int
    user_id: int
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The key itself: shown this once, never again.")


# --- audit ----------------------------------------------------------------------------------------


class AuditEntryPublic(BaseModel):
    id: int
    time: float
    request_id: str
    user_id: int | None
    api_key_id: int | None
    method: str
    endpoint: str
    model: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    backend: str


class AuditPage(BaseModel):
    items: list[AuditEntryPublic]
    total: int = Field(description="Entries matching the filters, all pages together.")
    limit: int
    offset: int


# --- profiles -------------------------------------------------------------------------------------

ProfileName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")]
ModelName = Annotated[str, Field(min_length=1, max_length=512)]
Temperature = Annotated[float, Field(ge=0, le=2)]
TopP = Annotated[float, Field(gt=0, le=1)]
SystemPrompt = Annotated[str, Field(max_length=200_000)]


class ProfileBase(Strict):
    name: ProfileName = Field(description="Usable as the `model` of API requests.")
    model: ModelName = Field(description="The model the profile runs.")
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: PositiveInt | None = None
    system_prompt: SystemPrompt | None = Field(default=None, description="Used when a request has no system prompt.")
    thinking: bool | None = Field(default=None, description="enable_thinking for templates that have it.")
    context_length: PositiveInt | None = Field(default=None, description="A cap on prompt + completion tokens.")


class ProfileCreate(ProfileBase):
    pass


class ProfileUpdate(PartialUpdate):
    """Only the fields sent change; null clears an optional one."""

    clearable = frozenset({"temperature", "top_p", "max_tokens", "system_prompt", "thinking", "context_length"})

    name: ProfileName | None = None
    model: ModelName | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: PositiveInt | None = None
    system_prompt: SystemPrompt | None = None
    thinking: bool | None = None
    context_length: PositiveInt | None = None


class ProfileDuplicate(Strict):
    name: ProfileName | None = Field(default=None, description="The copy's name; default '<name>-copy'.")


class ProfilePublic(ProfileBase):
    id: int
    created_at: float
    updated_at: float


# --- settings -------------------------------------------------------------------------------------


class SettingsPublic(ManagedSettings):
    overridden: list[str] = Field(description="Settings saved here, overriding the server's configuration.")


class SettingsUpdate(PartialUpdate):
    """Only the fields sent change; null removes the saved value (the configured one applies again)."""

    clearable = frozenset(ManagedSettings.model_fields)

    memory_budget_bytes: Count | None = None
    max_models: PositiveInt | None = None
    idle_ttl_seconds: Annotated[float, Field(ge=0)] | None = None
    room_wait_seconds: Annotated[float, Field(ge=0)] | None = None
    preload: list[Annotated[str, Field(min_length=1, max_length=512)]] | None = None
    require_api_key: bool | None = None
    audit_retention_days: Count | None = None
    allow_registration: bool | None = None
