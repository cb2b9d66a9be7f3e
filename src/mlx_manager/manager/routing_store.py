"""Backends, routing rules and credentials in the database, and the routing table built from them (in memory,
rebuilt after every change, so requests never wait on SQLite)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from mlx_manager.db.models import Backend, Credential, RoutingRule
from mlx_manager.manager.errors import Conflict, InvalidInput
from mlx_manager.manager.rows import get_row, save
from mlx_manager.manager.secret_box import SecretBox
from mlx_manager.routing.base_url import normalize_base_url
from mlx_manager.routing.router import BackendConfig, RoutingTable
from mlx_manager.routing.rules import Rule, RuleError

log = logging.getLogger(__name__)
KINDS = ("local", "openai", "anthropic")


class RoutingStore:
    def __init__(self, db: Engine, box: SecretBox) -> None:
        self.db = db
        self.box = box
        self._table = RoutingTable()
        self._lock = threading.Lock()
        self.reload()

    def table(self) -> RoutingTable:
        return self._table

    def reload(self) -> None:
        with Session(self.db) as session:
            credentials = {c.id: c for c in session.exec(select(Credential)).all()}
            backends: dict[str, BackendConfig] = {}
            names: dict[int, str] = {}
            for b in session.exec(select(Backend)).all():
                names[b.id or 0] = b.name
                if not b.enabled:
                    continue
                credential = credentials.get(b.credential_id) if b.credential_id is not None else None
                api_key = self.box.open(credential.secret_encrypted) if credential is not None else None
                if credential is not None and api_key is None:
                    log.warning(
                        "Credential %r does not open with the credential key (restored without its key file?)",
                        credential.name,
                    )
                kind: Any = b.kind
                backends[b.name] = BackendConfig(b.name, kind, b.base_url, api_key, b.timeout_seconds)
            rules = []
            for r in session.exec(select(RoutingRule).where(RoutingRule.enabled == True)).all():  # noqa: E712
                targets = [names[i] for i in r.backend_ids if i in names]
                try:
                    match: Any = r.match_type
                    rules.append(Rule.create(r.pattern, targets, match, r.priority, r.remote_model, r.id or 0))
                except RuleError as exc:
                    log.warning("Routing rule %s is skipped: %s", r.id, exc)
        with self._lock:
            self._table = RoutingTable(tuple(rules), backends)

    # --- changes (each in its own session; the caller reloads) --------------------------------

    def add_credential(self, session: Session, name: str, provider: str, secret: str) -> Credential:
        if session.exec(select(Credential).where(Credential.name == name)).first():
            raise Conflict(f"A credential named '{name}' exists.", "name_taken")
        return save(session, Credential(name=name, provider=provider, secret_encrypted=self.box.seal(secret)))

    def add_backend(self, session: Session, values: dict[str, Any]) -> Backend:
        values = {**values, "base_url": stored_url(values)}
        check_backend(session, values)
        if session.exec(select(Backend).where(Backend.name == values["name"])).first():
            raise Conflict(f"A backend named '{values['name']}' exists.", "name_taken")
        return save(session, Backend(**values))

    def add_rule(self, session: Session, values: dict[str, Any]) -> RoutingRule:
        check_rule(session, values)
        return save(session, RoutingRule(**values))

    def update(self, session: Session, model: type[Any], row_id: int, values: dict[str, Any]) -> Any:
        row = self._get(session, model, row_id)
        merged = {**row.model_dump(), **values}
        if isinstance(row, Backend):
            if "base_url" in values:
                values = {**values, "base_url": stored_url(merged)}
                merged["base_url"] = values["base_url"]
            check_backend(session, merged)
        elif isinstance(row, RoutingRule):
            check_rule(session, merged)
        return save(session, row, **values)

    def delete(self, session: Session, model: type[Any], row_id: int) -> None:
        session.delete(self._get(session, model, row_id))
        session.commit()

    @staticmethod
    def _get(session: Session, model: type[Any], row_id: int) -> Any:
        what = model.__tablename__.removesuffix("s").replace("_", " ")
        return get_row(session, model, row_id, f"No {what} with id {row_id}.")


def check_backend(session: Session, values: dict[str, Any]) -> None:
    if values.get("kind") not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}.", "invalid_kind")
    if values["kind"] != "local" and not str(values.get("base_url") or "").startswith(("http://", "https://")):
        raise InvalidInput("A remote backend needs a base_url starting with http:// or https://.", "invalid_url")
    credential = values.get("credential_id")
    if credential is not None and session.get(Credential, credential) is None:
        raise InvalidInput(f"No credential with id {credential}.", "unknown_credential")


def stored_url(values: dict[str, Any]) -> str | None:
    """A remote backend's base URL in the one form the clients use, however it was pasted."""
    url = values.get("base_url")
    return normalize_base_url(str(values.get("kind")), url) if url and values.get("kind") != "local" else url


def check_rule(session: Session, values: dict[str, Any]) -> None:
    ids = list(values.get("backend_ids") or [])
    known = {b.id for b in session.exec(select(Backend)).all()}
    missing = [i for i in ids if i not in known]
    if missing:
        raise InvalidInput(f"No backend with id {missing[0]}.", "unknown_backend")
    try:
        Rule.create(values["pattern"], [str(i) for i in ids], values.get("match_type", "exact"))
    except RuleError as exc:
        raise InvalidInput(str(exc), "invalid_rule") from exc
