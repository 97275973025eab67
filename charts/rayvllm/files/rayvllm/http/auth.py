"""API keys: a directory of key files, reloaded when it changes, and constant-time matching.

The directory has the shape of a Kubernetes Secret mounted as a volume: one regular file per key, the file
name the key id, the content the key. Kubelet updates such a mount in place by swapping its `..data`
symlink, so the store re-reads the directory whenever the names, sizes or modification times of its
entries change, checked at most every `reload_interval_s`.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

logger = logging.getLogger("rayvllm")

# (name, inode, size, mtime) of every entry, plus where `..data` points: changes whenever kubelet swaps.
Signature = tuple[object, ...]


def read_key_dir(directory: Path) -> dict[str, str]:
    """Key id -> key for every regular, non-hidden file of `directory`; empty files are skipped."""
    keys: dict[str, str] = {}
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        # Dotfiles are kubelet's bookkeeping (`..data`, `..2026_...` timestamped directories).
        if entry.name.startswith(".") or not entry.is_file():
            continue
        key = Path(entry.path).read_text().strip()
        if key:
            keys[entry.name] = key
    return keys


def parse_key_list(text: str) -> dict[str, str]:
    """Keys written as `id1:key1,id2:key2` (or one `id:key` per line), as local mode takes them."""
    keys: dict[str, str] = {}
    for item in text.replace("\n", ",").split(","):
        if not item.strip():
            continue
        key_id, sep, key = item.strip().partition(":")
        if not sep or not key_id or not key:
            raise ValueError(f"an API key must be written as ID:KEY, got {item.strip()[:3]!r}...")
        keys[key_id] = key
    return keys


def _signature(directory: Path) -> Signature:
    try:
        stats = [(entry.name, entry.inode(), *_size_and_mtime(entry)) for entry in os.scandir(directory)]
        data_link = os.readlink(directory / "..data") if (directory / "..data").is_symlink() else ""
    except FileNotFoundError:
        return ("missing",)
    return (data_link, *sorted(stats))


def _size_and_mtime(entry: os.DirEntry[str]) -> tuple[int, int]:
    try:
        stat = entry.stat()  # follows the key's symlink into the current `..data`
    except FileNotFoundError:
        return (-1, -1)
    return (stat.st_size, stat.st_mtime_ns)


class KeyStore:
    """The API keys of one replica, reloaded from their directory when it changes."""

    def __init__(
        self,
        directory: Path,
        reload_interval_s: float = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._directory = directory
        self._reload_interval_s = reload_interval_s
        self._clock = clock
        self._signature: Signature = ()
        self._keys: list[tuple[str, bytes]] = []
        self._checked_at = float("-inf")
        self._refresh()

    @property
    def key_ids(self) -> list[str]:
        return [key_id for key_id, _ in self._keys]

    def authenticate(self, presented: str) -> str | None:
        """The id of the key equal to `presented`, or None.

        Every key is compared, each with `hmac.compare_digest`, so the time taken says nothing about
        which key, or how much of one, matched.
        """
        self._maybe_refresh()
        candidate = presented.encode()
        matched: str | None = None
        for key_id, key in self._keys:
            if hmac.compare_digest(key, candidate) and matched is None:
                matched = key_id
        return matched

    def _maybe_refresh(self) -> None:
        if self._clock() - self._checked_at >= self._reload_interval_s:
            self._refresh()

    def _refresh(self) -> None:
        self._checked_at = self._clock()
        signature = _signature(self._directory)
        if signature == self._signature:
            return
        try:
            keys = read_key_dir(self._directory)
        except OSError as exc:
            # Mid-swap or unreadable: keep the keys we have and look again next time.
            logger.warning("API keys in %s not reloaded: %s", self._directory, exc)
            return
        self._signature = signature
        self._keys = [(key_id, key.encode()) for key_id, key in keys.items()]
        logger.info("API keys loaded from %s: %d key(s) %s", self._directory, len(keys), self.key_ids)


def write_key_dir(keys: Mapping[str, str], directory: Path) -> Path:
    """Write `keys` as a key directory (files readable by their owner only); returns `directory`."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for key_id, key in keys.items():
        if "/" in key_id or key_id.startswith("."):
            raise ValueError(f"API key id {key_id!r} must be a plain file name")
        path = directory / key_id
        path.touch(mode=0o600)
        path.write_text(key)
    return directory
