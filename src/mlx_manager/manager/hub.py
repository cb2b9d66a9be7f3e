"""Hugging Face Hub search and model details through `huggingface_hub.HfApi`, honouring HF_ENDPOINT, HF_TOKEN and
HF_HUB_OFFLINE. Blocking (HfApi is synchronous): callers run these in a thread."""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from huggingface_hub import HfApi
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers

from mlx_manager.manager import hub_cache
from mlx_manager.manager.hub_errors import (
    HubError,
    gated_repo,
    hub_offline,
    hub_unreachable,
    invalid_repo_id,
    invalid_revision,
    repo_not_found,
    revision_not_found,
)

log = logging.getLogger(__name__)

REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
ETAG_RE = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
# Bytes per parameter of each safetensors dtype, to turn the hub's parameter counts into a download size.
DTYPE_BYTES = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip
SEARCH_EXPAND = ["author", "downloads", "likes", "lastModified", "tags", "pipeline_tag", "safetensors", "usedStorage"]
SORTS = {"downloads": "downloads", "likes": "likes", "last_modified": "last_modified", "trending": "trending_score"}
MEMORY_OVERHEAD = 1.1  # the pool's own projection: weights + 10%


def check_repo_id(repo_id: str) -> str:
    if not REPO_ID_RE.match(repo_id) or "--" in repo_id or ".." in repo_id or repo_id.endswith((".git", ".")):
        raise invalid_repo_id(repo_id, "expected 'org/name' (letters, digits, '-', '_', '.'; no '--' or '..')")
    return repo_id


def check_revision(revision: str) -> str:
    # It becomes a path under refs/: no "..", no empty component.
    if not REVISION_RE.match(revision) or ".." in revision or "//" in revision or revision.endswith("/"):
        raise invalid_revision(revision)
    return revision


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None  # LFS files: the content's sha256, which is also their etag
    blob_id: str | None  # the git blob sha1: the etag of a non-LFS file, and a checksum of its content

    @property
    def etag(self) -> str:
        name = self.sha256 or self.blob_id or ""
        if not ETAG_RE.match(name):
            raise HubError(502, "hub_bad_metadata", f"{self.path}: no usable checksum")
        return name


@dataclass(frozen=True)
class RepoRevision:
    repo_id: str
    revision: str
    commit: str
    files: list[RemoteFile]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class MemoryRoom:
    """What a model must fit in to load: the pool's budget and what the machine has free for it."""

    budget_bytes: int
    available_bytes: int

    def fits(self, size: int | None) -> bool | None:
        if size is None:
            return None
        need = size * MEMORY_OVERHEAD
        return need <= self.budget_bytes and need <= self.available_bytes


def _summary(m: Any, size: int | None, source: str | None, room: MemoryRoom) -> dict[str, Any]:
    """What a search result and a model's details both say of a repository."""
    return {
        "id": m.id,
        "author": m.author,
        "downloads": m.downloads or 0,
        "likes": m.likes or 0,
        "last_modified": _iso(m.last_modified),
        "tags": list(m.tags or []),
        "pipeline_tag": m.pipeline_tag,
        "size_bytes": size,
        "size_source": source,
        "fits_in_memory": room.fits(size),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def weights_bytes(info: Any) -> tuple[int | None, str | None]:
    """Download size of a model: its safetensors parameters by dtype, else the repo's storage, else unknown."""
    st = getattr(info, "safetensors", None)
    params = getattr(st, "parameters", None) if st is not None else None
    if isinstance(params, dict) and params:
        return sum(int(n) * DTYPE_BYTES.get(str(dtype).upper(), 2) for dtype, n in params.items()), "safetensors"
    used = getattr(info, "used_storage", None)
    if isinstance(used, int) and used > 0:
        return used, "storage"
    return None, None


class Hub:
    """Talks to the hub named by HF_ENDPOINT (or `endpoint`); every failure becomes a HubError."""

    def __init__(self, cache_dir: Path, endpoint: str | None = None, token: str | bool | None = None) -> None:
        self.cache_dir = cache_dir
        self.endpoint = (endpoint or hf_constants.ENDPOINT).rstrip("/")
        self.token = token
        self.api = HfApi(endpoint=self.endpoint, token=token)

    @property
    def offline(self) -> bool:
        return bool(hf_constants.HF_HUB_OFFLINE)

    def ensure_online(self) -> None:
        if self.offline:
            raise hub_offline()

    def headers(self) -> dict[str, str]:
        return dict(build_hf_headers(token=self.token))

    def resolve_url(self, repo_id: str, revision: str, path: str) -> str:
        from urllib.parse import quote

        return f"{self.endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"

    @contextlib.contextmanager
    def _errors(self, repo_id: str = "", revision: str = "") -> Iterator[None]:
        """Translate huggingface_hub's exceptions into problems a client can act on."""
        try:
            yield
        except HubError:
            raise
        except OfflineModeIsEnabled as exc:
            raise hub_offline() from exc
        except GatedRepoError as exc:
            raise gated_repo(repo_id) from exc
        except RevisionNotFoundError as exc:
            raise revision_not_found(repo_id, revision) from exc
        except RepositoryNotFoundError as exc:
            raise repo_not_found(repo_id) from exc
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise hub_unreachable(self.endpoint, f"HTTP {status}: {str(exc).splitlines()[0]}") from exc
        except Exception as exc:  # connection refused, DNS, timeouts: whatever the HTTP stack raises
            log.warning("Hub request failed: %r", exc)
            raise hub_unreachable(self.endpoint, f"{type(exc).__name__}: {exc}") from exc

    def search(
        self, query: str | None, author: str | None, sort: str, limit: int, room: MemoryRoom
    ) -> list[dict[str, Any]]:
        self.ensure_online()
        with self._errors():
            models = list(
                self.api.list_models(
                    search=query or None,
                    author=author or None,
                    sort=SORTS.get(sort, "downloads"),  # type: ignore[arg-type]
                    limit=limit,
                    expand=SEARCH_EXPAND,  # type: ignore[arg-type]
                )
            )
        return [
            _summary(m, *weights_bytes(m), room) | {"downloaded": hub_cache.is_downloaded(self.cache_dir, m.id)}
            for m in models
        ]

    def model_info(self, repo_id: str, revision: str | None) -> Any:
        check_repo_id(repo_id)
        if revision is not None:
            check_revision(revision)
        self.ensure_online()
        with self._errors(repo_id, revision or "main"):
            return self.api.model_info(repo_id, revision=revision, files_metadata=True)

    def resolve(self, repo_id: str, revision: str, allow_patterns: Sequence[str] | None = None) -> RepoRevision:
        """The commit a revision points to and its files (sizes, checksums), filtered by glob patterns."""
        info = self.model_info(repo_id, revision)
        commit = info.sha or ""
        if not hub_cache.COMMIT_RE.match(commit):
            raise HubError(502, "hub_bad_metadata", f"'{repo_id}' has no commit sha")
        files = []
        for s in info.siblings or []:
            if allow_patterns and not any(fnmatch.fnmatch(s.rfilename, p) for p in allow_patterns):
                continue
            lfs = s.lfs
            files.append(
                RemoteFile(
                    path=s.rfilename,
                    size=int(s.size if s.size is not None else (lfs.size if lfs else 0)),
                    sha256=(lfs.sha256 if lfs else None),
                    blob_id=s.blob_id,
                )
            )
        if not files:
            detail = f"No file of '{repo_id}' matches {list(allow_patterns or [])}." if allow_patterns else "Empty."
            raise HubError(400, "no_files", detail)
        return RepoRevision(repo_id, revision, commit, files)

    def details(self, repo_id: str, revision: str | None, room: MemoryRoom) -> dict[str, Any]:
        info = self.model_info(repo_id, revision)
        files = [
            {"path": s.rfilename, "size": s.size, "lfs": s.lfs is not None, "sha256": s.lfs.sha256 if s.lfs else None}
            for s in info.siblings or []
        ]
        size, source = weights_bytes(info)
        if size is None or source == "storage":
            weights = [f["size"] or 0 for f in files if str(f["path"]).endswith(".safetensors")]
            size, source = (sum(weights), "files") if weights else (size, source)
        return _summary(info, size, source, room) | {
            "sha": info.sha,
            "total_file_bytes": sum(f["size"] or 0 for f in files),
            "downloaded": hub_cache.has_snapshot(
                hub_cache.repo_dir(self.cache_dir, info.id), info.sha or "-", [str(f["path"]) for f in files]
            ),
            "files": files,
            "card": self.readme(info.id, info.sha or "main") if any(f["path"] == "README.md" for f in files) else None,
        }

    def readme(self, repo_id: str, commit: str) -> str | None:
        """The model card's text, straight from the hub (not through the cache: reading is not downloading)."""
        try:
            response = httpx.get(
                self.resolve_url(repo_id, commit, "README.md"),
                headers=self.headers(),
                follow_redirects=True,
                timeout=20,
            )
        except httpx.HTTPError as exc:
            log.info("Model card of %s not fetched: %r", repo_id, exc)
            return None
        return response.text[:200_000] if response.status_code == 200 else None
