"""The audit log: entries from access fields (metadata only), written in batches off the event loop without ever
raising, searched with filters and pages, exported, and pruned by age."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from mlx_manager.db.models import ApiKey, AuditEntry
from mlx_manager.db.session import open_database
from mlx_manager.manager import api_keys, audit, users

NOW = 1_800_000_000.0
DAY = 86400.0


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    return open_database(tmp_path / "db.sqlite")


def _fields(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "request_id": "req-1", "method": "POST", "path": "/v1/chat/completions", "status": 200, "model": "m",
        "prompt_tokens": 5, "completion_tokens": 3, "latency_ms": 12.5, "endpoint": "/v1/chat/completions",
        "time": NOW, "user_id": 1, "api_key_id": 2,
    }  # fmt: skip
    return base | over


def _add(db: Engine, *entries: AuditEntry) -> None:
    with Session(db) as s:
        s.add_all(entries)
        s.commit()


def test_only_the_model_apis_are_audited() -> None:
    assert audit.audited("/v1/chat/completions") and audit.audited("/anthropic/v1/messages")
    assert audit.audited("/v1/messages") and audit.audited("/rerank")
    assert not any(audit.audited(p) for p in ("/api/users", "/admin/models", "/metrics", "/health"))


def test_the_writer_batches_entries_and_key_uses_off_the_loop(db: Engine) -> None:
    with Session(db, expire_on_commit=False) as s:
        alice = users.register(s, "alice", "correct horse")
        key, _ = api_keys.create(s, alice, "k")

    async def main() -> None:
        writer = audit.AuditWriter(db)
        writer.start()
        for i in range(5):
            writer.record_access(_fields(request_id=f"req-{i}", api_key_id=key.id))
        writer.record_access(_fields(path="/api/users"))  # not audited
        writer.key_used(key.id or 0, NOW)
        await writer.stop()  # flushes

    asyncio.run(main())
    with Session(db) as s:
        rows = s.exec(select(AuditEntry)).all()
        assert sorted(r.request_id for r in rows) == [f"req-{i}" for i in range(5)]
        assert {(r.user_id, r.api_key_id, r.prompt_tokens, r.completion_tokens, r.backend) for r in rows} == {
            (1, key.id, 5, 3, "local")
        }
        stored_key = s.get(ApiKey, key.id)
        assert stored_key is not None and stored_key.last_used_at == NOW


def test_a_failing_database_loses_the_batch_but_raises_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = open_database(tmp_path / "broken.sqlite")
    with broken.begin() as conn:
        conn.exec_driver_sql("DROP TABLE audit_log")

    async def main() -> None:
        writer = audit.AuditWriter(broken)
        writer.start()
        writer.record_access(_fields())
        for _ in range(400):  # until the first write has failed
            if "Could not write 1 audit entries" in caplog.text:
                break
            await asyncio.sleep(0.05)
        writer.record_access(_fields(request_id="req-2"))  # still taking entries after a failure
        await writer.stop()

    asyncio.run(main())
    assert caplog.text.count("Could not write 1 audit entries") == 2


def test_a_writer_that_is_not_running_keeps_nothing(db: Engine) -> None:
    writer = audit.AuditWriter(db, max_pending=2)
    writer.record_access(_fields())
    assert writer._entries == []


def test_search_filters_and_pages_newest_first(db: Engine) -> None:
    _add(
        db,
        *(audit.entry_from_access(_fields(request_id=f"a{i}", time=NOW + i)) for i in range(5)),
        audit.entry_from_access(_fields(request_id="b", model="other", status=404, user_id=2, time=NOW + 10)),
        audit.entry_from_access(_fields(request_id="c", endpoint="/v1/messages", time=NOW - DAY)),
    )
    with Session(db) as s:
        page, total = audit.search(s, audit.AuditFilter(model="m", endpoint="/v1/chat/completions"), 2, 0)
        assert total == 5 and [e.request_id for e in page] == ["a4", "a3"]
        page, _ = audit.search(s, audit.AuditFilter(model="m", endpoint="/v1/chat/completions"), 2, 4)
        assert [e.request_id for e in page] == ["a0"]
        assert [e.request_id for e in audit.search(s, audit.AuditFilter(status=404), 10, 0)[0]] == ["b"]
        assert audit.search(s, audit.AuditFilter(user_id=2), 10, 0)[1] == 1
        window = audit.AuditFilter(since=NOW + 1, until=NOW + 3)
        assert [e.request_id for e in audit.search(s, window, 10, 0)[0]] == ["a2", "a1"]
        assert [e.request_id for e in audit.export_rows(s, audit.AuditFilter(since=NOW + 3))] == ["a3", "a4", "b"]


def test_csv_and_json_exports_hold_every_column_with_names_and_iso_times(db: Engine) -> None:
    with Session(db) as s:
        user = users.register(s, "ada", "a long passphrase")
        key, _ = api_keys.create(s, user, "laptop")
        user_id, key_id = user.id, key.id
    named = audit.entry_from_access(_fields(user_id=user_id, api_key_id=key_id))
    _add(db, named, audit.entry_from_access(_fields(request_id="gone", user_id=999, api_key_id=998, time=NOW + 1)))
    with Session(db) as s:
        rows = audit.export_rows(s, audit.AuditFilter())
        parsed = list(csv.DictReader(io.StringIO(audit.as_csv(s, rows))))
        dicts = audit.as_dicts(s, rows)
    assert list(parsed[0]) == list(audit.NAMED_COLUMNS) and set(audit.COLUMNS) < set(parsed[0])
    assert parsed[0]["request_id"] == "req-1" and parsed[0]["completion_tokens"] == "3"
    assert parsed[0]["time"] == "2027-01-15T08:00:00.000Z"  # ISO 8601, UTC
    assert (parsed[0]["username"], parsed[0]["api_key_name"]) == ("ada", "laptop")
    assert (parsed[1]["username"], parsed[1]["api_key_name"]) == ("", "")  # deleted: ids only
    assert dicts[0]["latency_ms"] == 12.5 and dicts[0]["time"] == NOW and dicts[1]["username"] is None


def test_model_listings_can_be_left_out(db: Engine) -> None:
    listing = {"method": "GET", "path": "/v1/models", "endpoint": "/v1/models"}
    _add(
        db,
        audit.entry_from_access(_fields(request_id="list", **listing)),
        audit.entry_from_access(_fields(request_id="card", method="GET", endpoint="/v1/models/m")),
        audit.entry_from_access(_fields(request_id="claude", method="GET", endpoint="/anthropic/v1/models")),
        audit.entry_from_access(_fields(request_id="chat")),
    )
    with Session(db) as s:
        assert audit.search(s, audit.AuditFilter(), 10, 0)[1] == 4
        kept = audit.search(s, audit.AuditFilter(hide_listings=True), 10, 0)[0]
    assert [e.request_id for e in kept] == ["chat"]


def test_pruning_removes_entries_past_the_retention_and_zero_keeps_all(db: Engine) -> None:
    _add(db, *(audit.entry_from_access(_fields(request_id=f"d{d}", time=NOW - d * DAY - 1)) for d in (0, 5, 40)))
    assert audit.prune(db, 0, now=NOW) == 0
    assert audit.prune(db, 30, now=NOW) == 1
    assert audit.prune(db, 1, now=NOW) == 1
    with Session(db) as s:
        assert [e.request_id for e in s.exec(select(AuditEntry)).all()] == ["d0"]
