"""The Hugging Face cache layout, as huggingface_hub writes it (file_download.py), so its tools and ours agree:

    <cache>/models--<org>--<name>/
        blobs/<etag>                 one file per distinct content (etag: LFS sha256, else the git blob sha1)
        blobs/<etag>.incomplete      a partial download (scan_cache_dir reports these)
        snapshots/<commit>/<path>    relative symlinks into ../../blobs
        refs/<revision>              the commit a branch or tag pointed to

A snapshot is only linked once every file of it is verified, so discovery never sees half a model."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def repo_dir(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def blob_path(repo: Path, etag: str) -> Path:
    return repo / "blobs" / etag


def incomplete_path(repo: Path, etag: str) -> Path:
    # The name huggingface_hub used for resumable partials, and the pattern scan_cache_dir still reports.
    return repo / "blobs" / f"{etag}.incomplete"


def pointer_path(repo: Path, commit: str, rel_path: str) -> Path:
    parts = rel_path.split("/")
    if any(part in ("", ".", "..") or "\\" in part for part in parts):  # a hostile name must not escape
        raise ValueError(f"invalid file path in repository: {rel_path!r}")
    return repo.joinpath("snapshots", commit, *parts)


def link(repo: Path, commit: str, rel_path: str, etag: str) -> None:
    """snapshots/<commit>/<path> -> ../../blobs/<etag>, relative like huggingface_hub's, replaced atomically."""
    pointer = pointer_path(repo, commit, rel_path)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(blob_path(repo, etag), pointer.parent)
    if pointer.is_symlink() and os.readlink(pointer) == target:
        return
    tmp = pointer.with_name(f".{pointer.name}.{uuid.uuid4().hex[:8]}.tmp")
    os.symlink(target, tmp)
    os.replace(tmp, pointer)


def write_ref(repo: Path, revision: str, commit: str) -> None:
    """refs/<revision> = commit (nothing for a commit revision), written atomically as huggingface_hub does."""
    if revision == commit:
        return
    ref = repo / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    if ref.is_file() and ref.read_text() == commit:
        return
    tmp = ref.with_name(f"{ref.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(commit)
    os.replace(tmp, ref)


def has_snapshot(repo: Path, commit: str, paths: Iterable[str]) -> bool:
    """Every file of the commit is present (a symlink to an existing blob, or a plain file)."""
    try:
        return all(pointer_path(repo, commit, p).is_file() for p in paths)
    except ValueError:
        return False


def referenced_blobs(repo: Path) -> set[str]:
    """Blob names some snapshot points to: those must survive a cancelled download of another revision."""
    names: set[str] = set()
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return names
    for dirpath, _dirs, files in os.walk(snapshots):
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink():
                names.add(Path(os.readlink(path)).name)
    return names


def remove_partials(repo: Path, etags: Iterable[str]) -> int:
    """Delete the partial and unreferenced finished blobs of a download; drop the repo folder if nothing is left.
    Returns the bytes freed."""
    keep = referenced_blobs(repo)
    freed = 0
    for etag in set(etags):
        for path in (incomplete_path(repo, etag), *([] if etag in keep else [blob_path(repo, etag)])):
            if path.is_file():
                freed += path.stat().st_size
                path.unlink(missing_ok=True)
    blobs = repo / "blobs"
    if not (repo / "snapshots").is_dir() and (not blobs.is_dir() or not any(blobs.iterdir())):
        shutil.rmtree(repo, ignore_errors=True)
    return freed


def delete_repo(cache: Path, repo_id: str) -> int | None:
    """Remove a repository from the cache (and its lock folder); None when it is not there. Returns bytes freed."""
    repo = repo_dir(cache, repo_id)
    if not repo.is_dir():
        return None
    blobs = repo / "blobs"
    freed = sum(p.stat().st_size for p in blobs.iterdir() if p.is_file()) if blobs.is_dir() else 0
    shutil.rmtree(repo)
    shutil.rmtree(cache / ".locks" / repo.name, ignore_errors=True)
    return freed


def is_downloaded(cache: Path, repo_id: str) -> bool:
    snapshots = repo_dir(cache, repo_id) / "snapshots"
    return snapshots.is_dir() and any(p.is_dir() for p in snapshots.iterdir())


def free_disk_bytes(path: Path) -> int:
    """Free bytes on the volume that holds `path` (or would: the nearest existing parent)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(Path.cwd()).free
