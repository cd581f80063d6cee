"""The signed on-disk store that the compiled-contract cache (capdsl/cache.py) and the
panel-check memo (capdsl/data/memo.py) keep their entries in.

An entry is a JSON value under a name (`kind-<sha256>`, `entry_key`). The
format is not pickle: decoding builds plain values (Decimals, dates,
containers) and only the dataclasses of the modules its `Codec` names, never
runs code. Nodes shared in a value stay shared (a node seen twice is written
once and referred to by number), because the backends key memos and
deduplication on node identity.

Where: `$CAPDSL_CACHE_DIR`, else `$XDG_CACHE_HOME/capdsl`, else
`~/.cache/capdsl`; `CAPDSL_NO_CACHE=1` turns it off. The directory is created
private (0700), and an entry is read only if the current user owns it and no
one else can write it. Entries are written atomically. Any failure to read or
write an entry only means computing it again.

Every entry carries an HMAC-SHA256 of its name and its payload, keyed by the
directory's own secret (`SECRET`: 32 random bytes, 0600, made by the first
save). An entry whose digest does not match (edited, damaged, truncated, of
another format, copied under another name or from another directory) is a
miss: the caller computes again and its save replaces the entry. The threat
model is the user's own private directory: the digest makes sure that
corruption or a hand edit is never trusted (a payer's amounts come from the
contract, not from a JSON file), not that someone who can read the secret,
the user or root, cannot forge an entry. A plain SHA-256 would catch
corruption too, but neither an edit whose author recomputed it nor an entry
copied from another directory.

Every new capdsl version, edited contract and monthly panel makes new
entries, so the store is bounded (`CAPDSL_CACHE_MAX_MB`, default 256): a
save that finds it over the bound removes the least recently used entries
(a hit touches its entry) down to 80 % of it, and temporary files left by a
killed writer.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import json
import os
import stat
import sys
import tempfile
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Callable, Mapping

FORMAT = b"capdsl-cache-3\n"
# the directory's HMAC key: not an entry (`listing` sees only .json and .tmp files), so eviction and
# `capdsl cache clear` keep it
SECRET = "secret.key"
_SECRET_BYTES = 32
_DIGEST_CHARS = 64  # a hex SHA-256, on the line after FORMAT


def directory() -> Path | None:
    if os.environ.get("CAPDSL_NO_CACHE", "") not in ("", "0"):
        return None
    if os.environ.get("CAPDSL_CACHE_DIR"):
        return Path(os.environ["CAPDSL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "capdsl"


# The libraries whose version can change what capdsl compiles: the parser and the SQL generator.
COMPILERS = ("lark", "sqlglot")


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> bytes:
    """Names, sizes and modification times of capdsl's modules and grammar files, and the installed
    versions of the libraries in COMPILERS (read from their dist-info names: importing or asking
    importlib.metadata would cost more than the cache saves)."""
    package = Path(__file__).resolve().parent
    h = hashlib.sha256(FORMAT + sys.version.encode())
    files = sorted([*package.rglob("*.py"), *package.rglob("*.lark"), *package.parent.glob("grammar/*.lark")])
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    for name in COMPILERS:
        h.update(installed(name).encode() + b"\n")
    return h.digest()


def installed(name: str) -> str:
    """`name`'s location, dist-info directory (its version) and the mtime of its top module."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin)
        site = origin.parent.parent
        dists = sorted(d for d in os.listdir(site) if d.lower().startswith(name + "-") and d.endswith(".dist-info"))
        return f"{origin}\0{origin.stat().st_mtime_ns}\0{','.join(dists)}"
    except Exception:  # noqa: BLE001 - not found: the key says so
        return f"{name}: not found"


def entry_key(kind: str, data: bytes) -> str:
    """The name of a `kind` entry (contract, tree, query, panel) for `data`, everything the entry
    depends on beyond capdsl's code and the compilers, which every key covers."""
    return f"{kind}-" + hashlib.sha256(code_fingerprint() + kind.encode() + b"\0" + data).hexdigest()


# ─────────────────────────── the entry format ───────────────────────────

class Codec:
    """Values to JSON-ready data and back. `modules` maps the name of each module whose
    dataclasses an entry may build to a function that imports it by a fixed statement (never by a
    name read from an entry); a module is imported only when an entry names one of its classes."""

    def __init__(self, modules: Mapping[str, Callable[[], ModuleType]] | None = None) -> None:
        self.modules = dict(modules or {})
        self._classes: dict[str, dict[str, type]] = {}

    def classes(self, module: str) -> dict[str, type]:
        found = self._classes.get(module)
        if found is None:
            mod = self.modules[module]()  # KeyError for a module outside the allow-list
            found = self._classes[module] = {
                name: obj for name, obj in vars(mod).items()
                if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == module}
        return found

    def _class(self, name: str) -> type:
        module, _, short = name.rpartition(".")
        return self.classes(module)[short]  # KeyError for anything outside the allow-list

    def _name(self, cls: type) -> str | None:
        module = cls.__module__
        if module in self.modules and self.classes(module).get(cls.__name__) is cls:
            return f"{module}.{cls.__name__}"
        return None

    def encode(self, value) -> object:
        """JSON-ready data for a value made of allowed dataclasses, Decimals, dates and containers."""
        names: dict[type, str | None] = {}
        seen: dict[int, int] = {}

        def go(v):
            if v is None or isinstance(v, (bool, int, str)):
                return v
            if isinstance(v, Decimal):
                return {"d": str(v)}
            if isinstance(v, date):
                return {"t": v.isoformat()}
            if isinstance(v, (tuple, list, frozenset)):
                items = sorted(v, key=repr) if isinstance(v, frozenset) else v
                return {"T" if isinstance(v, tuple) else "L" if isinstance(v, list) else "F": [go(x) for x in items]}
            if isinstance(v, dict):
                return {"D": [[go(k), go(x)] for k, x in v.items()]}
            cls = type(v)
            if cls not in names:
                names[cls] = self._name(cls)
            name = names[cls]
            if name is None:
                raise TypeError(f"the store cannot hold a {type(v).__name__}")
            if id(v) in seen:
                return {"r": seen[id(v)]}
            seen[id(v)] = index = len(seen)
            return {"c": name, "i": index, "f": [go(getattr(v, f.name)) for f in dataclasses.fields(v)]}

        return go(value)

    def decode(self, data) -> object:
        built: dict[int, object] = {}

        def go(v):
            if not isinstance(v, dict):
                return [go(x) for x in v] if isinstance(v, list) else v
            (tag, body), *rest = v.items()
            if tag == "d":
                return Decimal(body)
            if tag == "t":
                return date.fromisoformat(body)
            if tag in ("T", "L", "F"):
                items = [go(x) for x in body]
                return tuple(items) if tag == "T" else items if tag == "L" else frozenset(items)
            if tag == "D":
                return {go(k): go(x) for k, x in body}
            if tag == "r":
                return built[body]
            cls = self._class(body)  # tag "c": KeyError for a class outside the allow-list
            index, fields = v["i"], v["f"]
            names = [f.name for f in dataclasses.fields(cls)]
            if len(fields) != len(names):
                raise ValueError(f"{body}: {len(fields)} fields, expected {len(names)}")
            obj = cls(**dict(zip(names, (go(x) for x in fields))))
            built[index] = obj
            return obj

        return go(data)


PLAIN = Codec()  # plain values only: no dataclass at all


# ─────────────────────────── reading and writing ───────────────────────────

def _trusted(st: os.stat_result) -> bool:
    owner = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    return owner and stat.S_ISREG(st.st_mode) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _digest(secret: bytes, entry: str, payload: bytes) -> bytes:
    """The hex HMAC that binds `payload` to the entry's name (and the format) in this directory."""
    mac = hmac.new(secret, FORMAT + entry.encode("utf-8", "surrogateescape") + b"\0", hashlib.sha256)
    mac.update(payload)
    return mac.hexdigest().encode("ascii")


def _read_secret(where: Path) -> bytes | None:
    """The directory's secret, or None if it is absent or unusable (not ours, readable or writable
    by others, or not 32 bytes)."""
    try:
        with open(where / SECRET, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read(_SECRET_BYTES + 1)
    except OSError:
        return None
    if not _trusted(st) or st.st_mode & 0o077 or len(data) != _SECRET_BYTES:
        return None
    return data


def _secret(where: Path) -> bytes:
    """The directory's secret, made if there is none. A new one appears complete and only once: it is
    written to a private temporary file and hard-linked into place, which fails if another process
    got there first (its secret is then everyone's). An unusable one is replaced, so the entries
    made with it become misses."""
    found = _read_secret(where)
    if found is not None:
        return found
    fresh = os.urandom(_SECRET_BYTES)
    fd, tmp = tempfile.mkstemp(prefix=f".{SECRET}.", suffix=".tmp", dir=where)  # 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(fresh)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, where / SECRET)
        except FileExistsError:
            found = _read_secret(where)
            if found is not None:
                return found
            os.replace(tmp, where / SECRET)
        except OSError:  # a file system without hard links
            os.replace(tmp, where / SECRET)
    finally:
        try:
            os.unlink(tmp)
        except OSError:  # renamed into place
            pass
    return fresh


def load(entry: str, codec: Codec = PLAIN):
    """The value saved under `entry`, or None (absent, untrusted, unreadable, not matching its
    digest, naming a class `codec` does not allow, or the store is off)."""
    where = directory()
    if where is None:
        return None
    path = where / f"{entry}.json"
    try:
        with open(path, "rb") as f:
            if not _trusted(os.fstat(f.fileno())):
                return None
            data = f.read()
        start = len(FORMAT) + _DIGEST_CHARS + 1
        if not data.startswith(FORMAT) or data[start - 1:start] != b"\n":
            return None
        secret = _read_secret(where)
        payload = data[start:]
        if secret is None or not hmac.compare_digest(data[len(FORMAT):start - 1], _digest(secret, entry, payload)):
            return None
        value = codec.decode(json.loads(payload))
    except Exception:  # noqa: BLE001 - a bad entry is a miss
        return None
    try:
        os.utime(path)  # recently used: the last to be evicted
    except OSError:
        pass
    return value


def save(entry: str, value, codec: Codec = PLAIN) -> None:
    """Save `value` under `entry` (atomically, signed); a store that cannot be written is only slower."""
    where = directory()
    if where is None:
        return
    from capdsl.outputs import atomic_write

    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        payload = json.dumps(codec.encode(value), separators=(",", ":")).encode()
        digest = _digest(_secret(where), entry, payload)
        atomic_write(where / f"{entry}.json", FORMAT + digest + b"\n" + payload, private=True)
        prune(where, max_bytes(), keep=f"{entry}.json")
    except Exception:  # noqa: BLE001 - an entry that cannot be written is computed again next time
        return


# ─────────────────────────────── its size ───────────────────────────────

DEFAULT_MAX_MB = 256
# a writer's temporary file older than this was left by a killed process (outputs.atomic_path)
_STALE_TMP_NS = 3600 * 10**9


def max_bytes() -> int:
    """The bound on the store's size: `$CAPDSL_CACHE_MAX_MB` (a whole number of MiB), else 256."""
    raw = os.environ.get("CAPDSL_CACHE_MAX_MB", "").strip()
    mb = int(raw) if raw.isdigit() else DEFAULT_MAX_MB
    return mb * 2**20


def listing(where: Path) -> list[tuple[str, int, int]]:
    """(name, size, mtime_ns) of the store's entries and writers' temporary files."""
    found = []
    try:
        with os.scandir(where) as it:
            for e in it:
                if e.name.endswith((".json", ".tmp")) and e.is_file(follow_symlinks=False):
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:  # removed meanwhile (another capdsl pruning)
                        continue
                    found.append((e.name, st.st_size, st.st_mtime_ns))
    except OSError:
        return []
    return found


def prune(where: Path, limit: int, keep: str | None = None) -> int:
    """Remove stale temporary files and, if the entries exceed `limit` bytes, the least recently
    used down to 80 % of it (so that the next saves do not prune again at once). `keep`, the entry
    just written, stays. Returns how many files were removed."""
    now = time.time_ns()
    entries, total, removed = [], 0, 0
    for name, size, mtime in listing(where):
        if name.endswith(".tmp"):
            if now - mtime > _STALE_TMP_NS and _remove(where / name):
                removed += 1
            continue
        total += size
        if name != keep:
            entries.append((mtime, name, size))
    if total <= limit:
        return removed
    entries.sort()
    for _mtime, name, size in entries:
        if total <= limit * 0.8:
            break
        if _remove(where / name):
            total -= size
            removed += 1
    return removed


def _remove(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except OSError:  # already gone (another capdsl pruning) or not ours to remove
        return False
