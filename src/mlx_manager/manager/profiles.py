"""Profiles: a model plus generation defaults, usable as the `model` of any generation request.

`resolve_target` is the one place the OpenAI, Anthropic and Responses APIs turn a requested name into what runs:
the profile's model, its values as defaults for what the request left out (explicit values win), its system prompt
when the request has none, `thinking` as the template's `enable_thinking`, `context_length` as a cap, and
`kv_bits` / `kv_group_size` as the KV setting to load the model with. The engine only ever sees a model id, a prompt,
sampling parameters and that KV setting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from pydantic import ConfigDict
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from mlx_manager.db.models import Profile, ProfileBase
from mlx_manager.engine.types import ChatPrompt, KVSetting, Prompt, SamplingParams
from mlx_manager.manager.errors import Conflict, InvalidInput
from mlx_manager.manager.rows import get_row

P = TypeVar("P", bound=Prompt)
# The request fields a profile gives defaults for, by their engine name.
DEFAULTED = ("temperature", "top_p", "max_tokens")
# Template kwargs through which a request already chose whether the model thinks.
_THINKING_KWARGS = ("enable_thinking", "reasoning_effort")
# What a profile row holds besides its id and times.
_FIELDS = tuple(ProfileBase.model_fields)
# A profile's KV quantization group when it sets kv_bits alone (the server's default too).
DEFAULT_KV_GROUP = 64


class ProfileDefaults(ProfileBase):
    """A profile as requests see it (ProfileIndex keeps these in memory), with when it was made."""

    model_config = ConfigDict(frozen=True)  # type: ignore[assignment]  # SQLModel ignores the class keyword
    created: int = 0

    @classmethod
    def of(cls, row: Profile) -> ProfileDefaults:
        # Rows were validated when written; a reload only copies them.
        return cls.model_construct(**{k: getattr(row, k) for k in _FIELDS}, created=int(row.created_at))


class ProfileLookup(Protocol):
    def get(self, name: str) -> ProfileDefaults | None: ...


@dataclass(frozen=True)
class Target:
    """What a request runs on: a model, and the profile (if the request named one) that shapes the request."""

    model: str
    profile: ProfileDefaults | None = None

    def prompt(self, prompt: P) -> P:
        profile = self.profile
        if profile is None or not isinstance(prompt, ChatPrompt):
            return prompt
        messages = prompt.messages
        if profile.system_prompt and not any(m.get("role") == "system" for m in messages):
            messages = [{"role": "system", "content": profile.system_prompt}, *messages]
        kwargs = prompt.template_kwargs
        if profile.thinking is not None and not any(k in kwargs for k in _THINKING_KWARGS):
            kwargs = {**kwargs, "enable_thinking": profile.thinking}
        return replace(prompt, messages=messages, template_kwargs=kwargs)

    def params(self, params: SamplingParams, explicit: Collection[str]) -> SamplingParams:
        """`explicit`: the DEFAULTED names the request set itself."""
        profile = self.profile
        if profile is None:
            return params
        changes: dict[str, Any] = {
            name: getattr(profile, name)
            for name in DEFAULTED
            if getattr(profile, name) is not None and name not in explicit
        }
        if profile.context_length is not None:
            caps = [n for n in (params.max_context, profile.context_length) if n]
            changes["max_context"] = min(caps)
        return replace(params, **changes) if changes else params

    def kv(self) -> KVSetting | None:
        """The KV setting the profile loads its model with (kv_bits 0: float); None: the server's."""
        profile = self.profile
        if profile is None or profile.kv_bits is None:
            return None
        return KVSetting(profile.kv_bits or None, profile.kv_group_size or DEFAULT_KV_GROUP)


def resolve_target(profiles: ProfileLookup | None, requested: str) -> Target:
    profile = profiles.get(requested) if profiles is not None else None
    return Target(profile.model if profile else requested, profile)


class ProfileIndex:
    """Profiles by name, in memory: looked up on every request without touching the database. Every change
    goes through this process (the routes below), which reloads it."""

    def __init__(self, db: Engine) -> None:
        self.db = db
        self._by_name: dict[str, ProfileDefaults] = {}
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        with Session(self.db) as session:
            rows = session.exec(select(Profile)).all()
        with self._lock:
            self._by_name = {row.name: ProfileDefaults.of(row) for row in rows}

    def get(self, name: str) -> ProfileDefaults | None:
        return self._by_name.get(name)

    def all(self) -> list[ProfileDefaults]:
        return sorted(self._by_name.values(), key=lambda p: p.name)


# --- CRUD ---------------------------------------------------------------------------------------


def _check(values: dict[str, Any]) -> None:
    if values.get("kv_group_size") is not None and not values.get("kv_bits"):
        raise InvalidInput("kv_group_size needs kv_bits 4 or 8: float KV has no groups.", "kv_group_size_without_bits")
    max_tokens, context = values.get("max_tokens"), values.get("context_length")
    if max_tokens is not None and context is not None and max_tokens >= context:
        raise InvalidInput(
            f"max_tokens ({max_tokens}) must be less than context_length ({context}): the prompt needs room too.",
            "max_tokens_exceeds_context",
        )


def list_profiles(session: Session) -> list[Profile]:
    return list(session.exec(select(Profile).order_by(col(Profile.name))).all())


def get_profile(session: Session, profile_id: int) -> Profile:
    return get_row(session, Profile, profile_id, f"Profile {profile_id} not found.", "profile_not_found")


def _save(session: Session, row: Profile) -> Profile:
    session.add(row)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"A profile named '{row.name}' already exists.", "profile_exists") from exc
    session.refresh(row)
    return row


def create(session: Session, values: dict[str, Any]) -> Profile:
    _check(values)
    return _save(session, Profile(**{k: v for k, v in values.items() if k in _FIELDS}))


def update(session: Session, profile_id: int, changes: dict[str, Any]) -> Profile:
    row = get_profile(session, profile_id)
    merged = {**{k: getattr(row, k) for k in _FIELDS}, **{k: v for k, v in changes.items() if k in _FIELDS}}
    _check(merged)
    for key, value in merged.items():
        setattr(row, key, value)
    row.updated_at = time.time()
    return _save(session, row)


def delete(session: Session, profile_id: int) -> None:
    session.delete(get_profile(session, profile_id))
    session.commit()


def duplicate(session: Session, profile_id: int, name: str | None = None) -> Profile:
    """A copy under `name`, or "<name>-copy" (then "<name>-copy-2", …) when none is given."""
    source = get_profile(session, profile_id)
    values = {k: getattr(source, k) for k in _FIELDS}
    if name is None:
        taken = set(session.exec(select(Profile.name)).all())
        name, n = f"{source.name}-copy", 2
        while name in taken:
            name, n = f"{source.name}-copy-{n}", n + 1
    values["name"] = name
    return _save(session, Profile(**values))
