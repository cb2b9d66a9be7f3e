"""Profiles: what a profile does to a request (defaults under explicit values, system prompt, thinking, context
cap) and their storage (unique names, duplicates, the in-memory index the APIs read)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from mlx_manager.db.session import open_database
from mlx_manager.engine.types import ChatPrompt, SamplingParams, TextPrompt
from mlx_manager.manager import profiles
from mlx_manager.manager.errors import Conflict, InvalidInput, NotFound
from mlx_manager.manager.profiles import ProfileDefaults, ProfileIndex, Target, resolve_target

PROFILE = ProfileDefaults(
    name="brief",
    model="tiny-llama",
    temperature=0.2,
    top_p=0.5,
    max_tokens=3,
    system_prompt="Be brief.",
    thinking=False,
    context_length=64,
)


class Lookup:
    def get(self, name: str) -> ProfileDefaults | None:
        return PROFILE if name == PROFILE.name else None


def test_a_profile_name_resolves_to_its_model_and_anything_else_to_itself() -> None:
    assert resolve_target(Lookup(), "brief") == Target("tiny-llama", PROFILE)
    assert resolve_target(Lookup(), "tiny-qwen3") == Target("tiny-qwen3")
    assert resolve_target(None, "brief") == Target("brief")


def test_profile_values_fill_in_what_the_request_left_out() -> None:
    target = resolve_target(Lookup(), "brief")
    params = target.params(SamplingParams(), explicit=set())
    assert (params.temperature, params.top_p, params.max_tokens, params.max_context) == (0.2, 0.5, 3, 64)
    explicit = target.params(SamplingParams(temperature=0.9, max_tokens=7), explicit={"temperature", "max_tokens"})
    assert (explicit.temperature, explicit.top_p, explicit.max_tokens) == (0.9, 0.5, 7)
    assert target.params(SamplingParams(max_context=32), set()).max_context == 32  # the lower cap holds


def test_the_system_prompt_is_added_only_when_the_request_has_none() -> None:
    target = resolve_target(Lookup(), "brief")
    plain = target.prompt(ChatPrompt(messages=[{"role": "user", "content": "hi"}]))
    assert plain.messages[0] == {"role": "system", "content": "Be brief."} and len(plain.messages) == 2
    own = [{"role": "system", "content": "Mine."}, {"role": "user", "content": "hi"}]
    assert target.prompt(ChatPrompt(messages=own)).messages == own
    assert target.prompt(TextPrompt(text="raw")) == TextPrompt(text="raw")


def test_thinking_becomes_enable_thinking_unless_the_request_chose() -> None:
    target = resolve_target(Lookup(), "brief")
    messages = [{"role": "user", "content": "hi"}]
    assert target.prompt(ChatPrompt(messages=messages)).template_kwargs == {"enable_thinking": False}
    chose = ChatPrompt(messages=messages, template_kwargs={"enable_thinking": True})
    assert target.prompt(chose).template_kwargs == {"enable_thinking": True}
    effort = ChatPrompt(messages=messages, template_kwargs={"reasoning_effort": "high"})
    assert target.prompt(effort).template_kwargs == {"reasoning_effort": "high"}


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    return open_database(tmp_path / "db.sqlite")


def test_crud_with_unique_names_and_duplicates(db: Engine) -> None:
    with Session(db, expire_on_commit=False) as s:
        row = profiles.create(s, {"name": "brief", "model": "tiny-llama", "max_tokens": 3})
        assert row.id is not None
        with pytest.raises(Conflict):
            profiles.create(s, {"name": "brief", "model": "other"})
        copies = [profiles.duplicate(s, row.id).name for _ in range(2)]
        assert copies == ["brief-copy", "brief-copy-2"]
        named = profiles.duplicate(s, row.id, "terse")
        assert (named.name, named.model, named.max_tokens) == ("terse", "tiny-llama", 3)
        updated = profiles.update(s, row.id, {"temperature": 0.3, "max_tokens": None})
        assert (updated.temperature, updated.max_tokens) == (0.3, None) and updated.updated_at >= updated.created_at
        with pytest.raises(Conflict):
            profiles.update(s, row.id, {"name": "terse"})
        profiles.delete(s, row.id)
        with pytest.raises(NotFound):
            profiles.get_profile(s, row.id)
        assert [p.name for p in profiles.list_profiles(s)] == ["brief-copy", "brief-copy-2", "terse"]


def test_max_tokens_must_leave_room_in_the_context(db: Engine) -> None:
    with Session(db) as s, pytest.raises(InvalidInput, match="context_length"):
        profiles.create(s, {"name": "p", "model": "m", "max_tokens": 100, "context_length": 100})


def test_the_index_serves_lookups_from_memory_after_a_reload(db: Engine) -> None:
    index = ProfileIndex(db)
    assert index.get("brief") is None
    with Session(db) as s:
        profiles.create(s, {"name": "brief", "model": "tiny-llama", "thinking": True})
    assert index.get("brief") is None  # until reloaded: every change goes through the routes, which reload
    index.reload()
    found = index.get("brief")
    assert found is not None and found.model == "tiny-llama" and found.thinking is True
    assert [p.name for p in index.all()] == ["brief"]
