"""The per-installation secret: the HMAC key of surrogates and of signed cache files.

Surrogates made from a public seed can be reversed by anyone who has the code (an MRN surrogate was
brute-forced in minutes). So every surrogate, date shift and cache signature is an HMAC-SHA256 keyed by
32 random bytes that never leave this machine:

- ``$MEDSLM_SECRET_FILE`` when set, else ``$XDG_CONFIG_HOME/medslm/secret`` (``~/.config/medslm/secret``);
- created on first use with ``secrets.token_bytes(32)``, mode 0600, by an exclusive create (two processes
  starting at once agree on one key);
- a key file that others can read (group or world bits) is refused: fix it with ``chmod 600``.

Deleting the file makes a new key: later surrogates differ and signed caches are rebuilt.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import threading
from pathlib import Path

from medslm.errors import ConfigurationError

_KEY_BYTES = 32
_LOCK = threading.Lock()
_CACHE: dict[str, bytes] = {}


def secret_path() -> Path:
    """Where the installation secret lives (``$MEDSLM_SECRET_FILE`` or ``~/.config/medslm/secret``)."""
    env = os.environ.get("MEDSLM_SECRET_FILE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "medslm" / "secret"


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first: use theirs
    try:
        os.write(fd, secrets.token_bytes(_KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)


def installation_secret() -> bytes:
    """The 32-byte key of this installation, created (0600) on first use."""
    path = secret_path()
    key = str(path)
    got = _CACHE.get(key)
    if got is not None:
        return got
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if not path.exists():
            _create(path)
        st = path.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigurationError(
                f"the medslm secret {path} can be read by other users (mode {stat.filemode(st.st_mode)}); "
                f"expected 0600: run `chmod 600 {path}`"
            )
        data = path.read_bytes()
        if len(data) < 16:
            raise ConfigurationError(
                f"the medslm secret {path} holds {len(data)} bytes, expected {_KEY_BYTES}; delete it to make "
                "a new one (surrogates and signed caches change)"
            )
        _CACHE[key] = data
        return data


def keyed_digest(purpose: str, *parts: str | bytes) -> bytes:
    """HMAC-SHA256 of ``parts`` under the installation secret, separated by ``purpose``."""
    mac = hmac.new(installation_secret(), purpose.encode(), hashlib.sha256)
    for p in parts:
        b = p if isinstance(p, bytes) else p.encode("utf-8", "surrogatepass")
        mac.update(len(b).to_bytes(8, "big"))
        mac.update(b)
    return mac.digest()


def keyed_int(purpose: str, *parts: str) -> int:
    """A non-negative integer from :func:`keyed_digest` (64 bits)."""
    return int.from_bytes(keyed_digest(purpose, *parts)[:8], "big")


def clear_secret_cache() -> None:
    """Forget the cached key (tests that point ``MEDSLM_SECRET_FILE`` elsewhere)."""
    with _LOCK:
        _CACHE.clear()


__all__ = ["clear_secret_cache", "installation_secret", "keyed_digest", "keyed_int", "secret_path"]
