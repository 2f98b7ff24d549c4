"""The identity of input files by their content, cheaply.

A dataset's identity (the data stage's ``data.listing``) is the digest of every file's relative
path, size and content digest (SHA-256), so a dataset copied or moved elsewhere (new root, new
modification times, the same bytes) is the same dataset, and a changed byte is a new one.

Reading every video at every DAG build would cost hours at Kinetics scale, so each file's digest
is cached by what a stat call returns (size, modification and status-change times, inode; the
status-change time cannot be set back, so an edit in place is seen): an unchanged tree costs
stat calls only, a touched file one read of that file, a moved or copied tree one read of each
file. The cache is one JSON file per dataset root under ``cache_dir()`` (``$CVG_CACHE_DIR``, else
``$XDG_CACHE_HOME/cvg``, else ``~/.cache/cvg``), outside ``results/``; it is only a cache: a
missing, unreadable or unwritable one costs reads, never a wrong digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

CACHE_VERSION = 2
READERS = 8  # files hashed at once (hashlib releases the GIL; reading is the cost)


def cache_dir() -> Path:
    if os.environ.get("CVG_CACHE_DIR"):
        return Path(os.environ["CVG_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cvg"


def file_digest(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB blocks; Python 3.10 has no ``hashlib.file_digest``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


class DigestCache:
    """Content digests of the files under one root, keyed by path relative to the root and
    valid while (size, modification time, status-change time, inode) are unchanged."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        key = hashlib.sha256(str(self.root).encode("utf-8", "surrogateescape")).hexdigest()[:20]
        self.path = cache_dir() / "content" / f"{key}.json"
        self.entries: dict[str, list] = {}
        self.changed = False
        try:
            stored = json.loads(self.path.read_text())
            if stored.get("version") == CACHE_VERSION and stored.get("root") == str(self.root):
                self.entries = stored["files"]
        except (OSError, ValueError, KeyError, AttributeError):
            pass  # no usable cache: every file is read

    def digests(self, files: dict[str, os.stat_result], progress: bool = True, prune: bool = True) -> dict[str, str]:
        """{name: content digest} of ``files`` ({name: stat}; names relative to the root),
        reading only files whose stat differs from the cache's; with ``prune`` (``files`` is the
        whole tree), entries of files no longer there are dropped."""
        out, missing = {}, []
        for name, st in files.items():
            entry = self.entries.get(name)
            if entry is not None and entry[:4] == [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]:
                out[name] = entry[4]
            else:
                missing.append(name)
        if missing:
            bar = tqdm(total=len(missing), desc=f"content digests of {self.root}", unit="file", file=sys.stderr,
                       disable=not progress or len(missing) < 200)
            with ThreadPoolExecutor(READERS) as pool:
                for name, digest in zip(missing, pool.map(lambda n: file_digest(self.root / n), missing)):
                    st = files[name]
                    self.entries[name] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, digest]
                    out[name] = digest
                    bar.update(1)
            bar.close()
            self.changed = True
        gone = set(self.entries) - set(files) if prune else set()
        if gone:
            for name in gone:
                del self.entries[name]
            self.changed = True
        return out

    def save(self) -> None:
        """Store the cache (a temporary file renamed in place); a cache that cannot be written is skipped."""
        if not self.changed:
            return
        # not cvg.atomic: concurrent jobs may store the same cache, so each writes its own temporary
        # file (atomic_path's is one per target), and a failure costs reads later, not the job
        tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"version": CACHE_VERSION, "root": str(self.root), "files": self.entries}))
            os.replace(tmp, self.path)
            self.changed = False
        except OSError as exc:
            print(f"cvg: could not store the content-digest cache {self.path} ({exc.strerror or exc}); "
                  "the next listing reads the files again", file=sys.stderr)
            tmp.unlink(missing_ok=True)


def tree_files(root: str | os.PathLike) -> dict[str, os.stat_result]:
    """Every file under ``root`` (links followed; broken links skipped): {relative path: stat}."""
    files = {}
    for folder, _dirs, names in os.walk(root, followlinks=True):
        for name in names:
            path = os.path.join(folder, name)
            try:
                files[os.path.relpath(path, root)] = os.stat(path)
            except OSError:  # a broken link: its absence is what counts
                continue
    return files


def content_listing(root: str | os.PathLike, extra: list[str | os.PathLike] = (), progress: bool = True) -> str:
    """The identity of the files under ``root`` and of the ``extra`` files (annotations outside
    it, by file name, read every time): a digest of every (name, size, content digest). The same for a copy or a
    move of the same bytes; another for an added, removed, renamed or changed file."""
    root = Path(root)
    files = tree_files(root)
    cache = DigestCache(root)
    digests = cache.digests(files, progress)
    entries = [f"{name}\0{files[name].st_size}\0{digests[name]}" for name in files]
    for path in extra:  # annotation files outside the root: small, read every time
        p = Path(path)
        if p.is_file() and root.resolve() not in p.resolve().parents:
            entries.append(f"extra/{p.name}\0{p.stat().st_size}\0{file_digest(p)}")
    cache.save()
    h = hashlib.sha256()
    for entry in sorted(entries):
        h.update(entry.encode("utf-8", "surrogateescape") + b"\n")
    return f"{len(entries)} files, content sha256 {h.hexdigest()[:16]}"
