"""`storage-quota`: a storage plugin (componentize-py, contract 0.2) serving a
directory the site grants it, with per-user roots, quotas and an optional
read-only switch.

Configuration (the site's `storage.config`, read through `wasi:config/store`):

| key | meaning |
|---|---|
| `root` | guest path of the granted directory to serve as `/` (default `/`) |
| `root_attribute` | optional: the name of an account attribute (from the auth plugin) holding a directory, relative to `root`, that becomes the session's `/`; created on first login; a session whose account lacks it is refused |
| `quota` | most bytes the files under the session's root may hold, e.g. `500MiB`, `2GB`, `1048576`, for accounts without their own `quota-bytes` limit (default: no quota) |
| `readonly` | `true` refuses every change with `permission-denied` |

Each login opens its own session (`open-session`) with the account's facts:
its root comes from `root_attribute`, its quota from the account's limits
(`quota-bytes`, `quota-files`, set by the auth plugin), else from `quota`.

Uploads move through the portable chunked path (a `writer` resource), so the
plugin sees every byte and counts it against the quota. Downloads hand the host
a `wasi:io` input stream of the file (`descriptor.read-via-stream`), so their
bytes never pass through Python: faster, and it sidesteps componentize-py
0.25.1 keeping every `bytes` an export returns (a chunked `reader` leaked each
chunk until the instance ran out of memory, ~40 MiB into a download).
Listings are paged (`dir-lister`): a directory of any size is read a page at a
time from one `os.scandir`.

The quota is counted per session: a session sums its tree on its first write
and then adds what it writes, so concurrent sessions may overshoot it by what
they write at the same time. It is a guard against filling a disk, not
accounting.
"""

import errno
import os
import stat as st
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.storage import (
    ReadSource_Stream,
    WriteMode_Append,
    WriteMode_Offset,
    WriteMode_Truncate,
    WriteSink_Chunks,
)
from wit_world.imports import preopens, store
from wit_world.imports import wasi_filesystem_types as fs
from wit_world.imports.wasmftpd_plugin_types import (
    DirEntry,
    EntryKind,
    Error,
    ErrorCode,
    Metadata,
    Timestamp,
)

_ERRNO_CODES = {
    errno.ENOENT: ErrorCode.NOT_FOUND,
    errno.EACCES: ErrorCode.PERMISSION_DENIED,
    errno.EPERM: ErrorCode.PERMISSION_DENIED,
    errno.EROFS: ErrorCode.PERMISSION_DENIED,
    errno.EEXIST: ErrorCode.ALREADY_EXISTS,
    errno.ENOTDIR: ErrorCode.NOT_A_DIRECTORY,
    errno.EISDIR: ErrorCode.IS_A_DIRECTORY,
    errno.ENOTEMPTY: ErrorCode.NOT_EMPTY,
    errno.EINVAL: ErrorCode.INVALID_NAME,
    errno.ENAMETOOLONG: ErrorCode.INVALID_NAME,
    errno.EILSEQ: ErrorCode.INVALID_NAME,
    errno.ENOSPC: ErrorCode.NO_SPACE,
    errno.EDQUOT: ErrorCode.NO_SPACE,
    errno.EFBIG: ErrorCode.NO_SPACE,
    errno.ENOTSUP: ErrorCode.UNSUPPORTED,
    errno.ENOSYS: ErrorCode.UNSUPPORTED,
    errno.EBUSY: ErrorCode.UNAVAILABLE,
    errno.EAGAIN: ErrorCode.UNAVAILABLE,
}

# WASI filesystem errors we can name; anything else is `io`.
_FS_CODES = {
    fs.ErrorCode.NO_ENTRY: ErrorCode.NOT_FOUND,
    fs.ErrorCode.ACCESS: ErrorCode.PERMISSION_DENIED,
    fs.ErrorCode.NOT_PERMITTED: ErrorCode.PERMISSION_DENIED,
    fs.ErrorCode.READ_ONLY: ErrorCode.PERMISSION_DENIED,
    fs.ErrorCode.NOT_DIRECTORY: ErrorCode.NOT_A_DIRECTORY,
    fs.ErrorCode.IS_DIRECTORY: ErrorCode.IS_A_DIRECTORY,
    fs.ErrorCode.NAME_TOO_LONG: ErrorCode.INVALID_NAME,
    fs.ErrorCode.ILLEGAL_BYTE_SEQUENCE: ErrorCode.INVALID_NAME,
    fs.ErrorCode.INVALID: ErrorCode.INVALID_NAME,
    fs.ErrorCode.BUSY: ErrorCode.UNAVAILABLE,
    fs.ErrorCode.WOULD_BLOCK: ErrorCode.UNAVAILABLE,
}

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}


def _log(message):
    print(f"storage-quota: {message}", file=sys.stderr)


def _fail(code, message=None):
    return Err(Error(code=code, message=message))


def _os_error(e):
    """Our error for an OSError; only `io` carries the system's message."""
    code = _ERRNO_CODES.get(e.errno)
    if code is None:
        return _fail(ErrorCode.IO, e.strerror)
    return _fail(code)


def _misconfigured(what):
    _log(what)
    return _fail(ErrorCode.UNAVAILABLE, "storage misconfigured; see the server log")


def _parse_size(text):
    text = text.strip().upper().replace(" ", "")
    digits = len(text) - len(text.lstrip("0123456789"))
    number, unit = text[:digits], text[digits:]
    if not number or unit not in _UNITS:
        raise ValueError(text)
    return int(number) * _UNITS[unit]


def _config():
    """The storage config, read once per session."""

    def get(key):
        try:
            return store.get(key)
        except Err as e:
            raise _misconfigured(f"cannot read config key {key}: {e.value}") from None

    return get


def _user_root(base, sub, user):
    """`base` + the attribute's relative directory, created if missing."""
    parts = sub.strip("/").split("/")
    if not sub.strip("/") or any(p in ("", ".", "..") or "\0" in p for p in parts):
        _log(f"account {user}: root attribute {sub!r} is not a relative directory")
        raise _fail(ErrorCode.PERMISSION_DENIED, "this account has no storage root")
    root = (base + "/" + "/".join(parts)) if base else "/" + "/".join(parts)
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as e:
        _log(f"account {user}: cannot create its root {root!r}: {e.strerror}")
        raise _os_error(e) from None
    return root


def _preopen(guest):
    """The granted directory holding guest path `guest`, and the path relative
    to it: for streamed reads through the WASI filesystem."""
    best = None
    for descriptor, name in preopens.get_directories():
        name = name.rstrip("/")
        if (guest == name or guest.startswith(name + "/")) and (best is None or len(name) > len(best[1])):
            best = (descriptor, name)
    if best is None:
        return None, None
    return best[0], guest[len(best[1]):].lstrip("/") or "."


def _kind(mode):
    if st.S_ISREG(mode):
        return EntryKind.FILE
    if st.S_ISDIR(mode):
        return EntryKind.DIRECTORY
    if st.S_ISLNK(mode):
        return EntryKind.SYMLINK
    return EntryKind.OTHER


def _metadata(s, readonly):
    seconds, nanos = divmod(s.st_mtime_ns, 1_000_000_000)
    return Metadata(
        kind=_kind(s.st_mode),
        size=s.st_size,
        modified=Timestamp(seconds=seconds, nanoseconds=nanos),
        readonly=readonly,
    )


def _usage(top):
    """(bytes, files) under `top`."""
    total = files = 0
    for dirpath, _dirs, names in os.walk(top):
        for name in names:
            try:
                total += os.stat(os.path.join(dirpath, name), follow_symlinks=False).st_size
                files += 1
            except OSError:
                pass  # removed while we walked
    return total, files


def _stream(guest, offset):
    """A read-source that is the file's own WASI stream."""
    root, rel = _preopen(guest)
    if root is None:
        raise _fail(ErrorCode.NOT_FOUND)
    try:
        file = root.open_at(fs.PathFlags.SYMLINK_FOLLOW, rel, fs.OpenFlags(0), fs.DescriptorFlags.READ)
        kind = file.get_type()
        if kind == fs.DescriptorType.DIRECTORY:
            raise _fail(ErrorCode.IS_A_DIRECTORY)
        if kind != fs.DescriptorType.REGULAR_FILE:
            raise _fail(ErrorCode.PERMISSION_DENIED, "not a regular file")
        # The stream keeps the file open after `file` is dropped.
        return ReadSource_Stream(file.read_via_stream(offset))
    except Err as e:
        if isinstance(e.value, fs.ErrorCode):
            code = _FS_CODES.get(e.value)
            raise (_fail(code) if code else _fail(ErrorCode.IO, e.value.name.lower())) from None
        raise


class Writer(exports.storage.Writer):
    def __init__(self, session, file, end):
        self._session = session
        self._file = file
        # The file's size as far as this writer knows: only bytes past it count
        # against the quota.
        self._end = end

    def write(self, data):
        s = self._session
        position = self._file.tell()
        growth = max(0, position + len(data) - self._end)
        if s.quota_bytes is not None and s.used + growth > s.quota_bytes:
            raise _fail(ErrorCode.NO_SPACE, "quota exceeded")
        view = memoryview(data)
        try:
            # An unbuffered file may take part of the data per call.
            while view:
                view = view[self._file.write(view):]
        except OSError as e:
            raise _os_error(e) from None
        s.used += growth
        self._end += growth

    def finish(self):
        try:
            self._file.flush()
        except OSError as e:
            raise _os_error(e) from None

    def __del__(self):
        try:
            self._file.close()
        except OSError:
            pass  # what could be written is written; nobody is left to tell


class DirLister(exports.storage.DirLister):
    """One directory read a page at a time from a single scandir."""

    def __init__(self, entries, readonly):
        self._entries = entries
        self._readonly = readonly

    def next_page(self, max):
        page = []
        try:
            while len(page) < max:
                entry = next(self._entries, None)
                if entry is None:
                    self._entries.close()
                    break
                try:
                    page.append(DirEntry(name=entry.name, metadata=_metadata(entry.stat(), self._readonly)))
                except FileNotFoundError:
                    pass  # removed between readdir and stat, or a dangling link
        except OSError as e:
            raise _os_error(e) from None
        return page

    def __del__(self):
        self._entries.close()


class Session(exports.storage.Session):
    """One login's storage: its root, its quota and what it has used."""

    def __init__(self, facts):
        get = _config()
        base = (get("root") or "/").rstrip("/")
        if not os.path.isdir(base or "/"):
            raise _misconfigured(f"no granted directory is named {base or '/'!r} (config key root)")
        attribute = get("root_attribute")
        if attribute:
            sub = dict(facts.attributes).get(attribute)
            if sub is None:
                _log(f"account {facts.user} has no {attribute!r} attribute (config key root_attribute)")
                raise _fail(ErrorCode.PERMISSION_DENIED, "this account has no storage root")
            base = _user_root(base, sub, facts.user)
        # Without a trailing slash; "" is the guest's "/".
        self.root = base
        quota = get("quota")
        try:
            default_quota = None if quota is None else _parse_size(quota)
        except ValueError:
            raise _misconfigured(f"config key quota: {quota!r} is not a size") from None
        # The account's own limits (from the auth plugin) come first.
        limits = facts.limits
        self.quota_bytes = limits.quota_bytes if limits.quota_bytes is not None else default_quota
        self.quota_files = limits.quota_files
        self.readonly = (get("readonly") or "false").strip().lower() == "true"
        # Bytes and files in use under the root, summed on the first write.
        self.used = self.files = None

    def _path(self, path):
        """The guest filesystem path of a virtual path. The host has normalized
        it; anything odd is refused rather than repaired."""
        if not path.startswith("/"):
            raise _fail(ErrorCode.INVALID_NAME, "path must be absolute")
        if path != "/" and any(seg in ("", ".", "..") or "\0" in seg for seg in path[1:].split("/")):
            raise _fail(ErrorCode.INVALID_NAME, "path is not normalized")
        return (self.root + path) if path != "/" else (self.root or "/")

    def _writable(self):
        if self.readonly:
            raise _fail(ErrorCode.PERMISSION_DENIED, "this storage is read-only")

    def _count(self):
        """Sums the tree once, when a quota needs it."""
        if self.used is None:
            if self.quota_bytes is None and self.quota_files is None:
                self.used = self.files = 0
            else:
                self.used, self.files = _usage(self.root or "/")

    def stat(self, path):
        try:
            return _metadata(os.stat(self._path(path)), self.readonly)
        except OSError as e:
            raise _os_error(e) from None

    def list_dir(self, path):
        try:
            return DirLister(os.scandir(self._path(path)), self.readonly)
        except OSError as e:
            raise _os_error(e) from None

    def open_read(self, path, offset):
        return _stream(self._path(path), offset)

    def open_write(self, path, mode):
        self._writable()
        target = self._path(path)
        try:
            if os.path.isdir(target):
                raise _fail(ErrorCode.IS_A_DIRECTORY)
            self._count()
            try:
                old = os.stat(target).st_size
                new = False
            except FileNotFoundError:
                old, new = 0, True
            if new and self.quota_files is not None and self.files >= self.quota_files:
                raise _fail(ErrorCode.NO_SPACE, "file quota exceeded")
            if isinstance(mode, WriteMode_Truncate):
                file = open(target, "wb", buffering=0)
                self.used = max(0, self.used - old)
                end = 0
            elif isinstance(mode, WriteMode_Append):
                file = open(target, "ab", buffering=0)
                end = old
            elif isinstance(mode, WriteMode_Offset):
                fd = os.open(target, os.O_WRONLY | os.O_CREAT)
                file = open(fd, "wb", buffering=0, closefd=True)
                file.seek(mode.value)
                end = old
            else:
                raise _fail(ErrorCode.UNSUPPORTED, "unknown write mode")
        except OSError as e:
            raise _os_error(e) from None
        if new:
            self.files += 1
        return WriteSink_Chunks(Writer(self, file, end))

    def make_dir(self, path):
        self._writable()
        try:
            os.mkdir(self._path(path))
        except OSError as e:
            raise _os_error(e) from None

    def remove_dir(self, path):
        self._writable()
        try:
            os.rmdir(self._path(path))
        except OSError as e:
            raise _os_error(e) from None

    def delete(self, path):
        self._writable()
        target = self._path(path)
        try:
            size = os.stat(target, follow_symlinks=False)
            if st.S_ISDIR(size.st_mode):
                raise _fail(ErrorCode.IS_A_DIRECTORY)
            os.unlink(target)
        except OSError as e:
            raise _os_error(e) from None
        if self.used is not None:
            self.used = max(0, self.used - size.st_size)
            self.files = max(0, self.files - 1)

    def rename(self, source, target):
        self._writable()
        try:
            os.replace(self._path(source), self._path(target))
        except OSError as e:
            # Renaming onto a directory that exists is refused as a name clash.
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
                raise _fail(ErrorCode.ALREADY_EXISTS) from None
            raise _os_error(e) from None

    def set_modified(self, path, time):
        self._writable()
        if time.seconds < 0:
            raise _fail(ErrorCode.UNSUPPORTED, "times before 1970 are not supported")
        target = self._path(path)
        try:
            atime = os.stat(target).st_atime_ns
            os.utime(target, ns=(atime, time.seconds * 1_000_000_000 + time.nanoseconds))
        except OSError as e:
            raise _os_error(e) from None


class Storage(exports.Storage):
    def open_session(self, facts):
        # Not at import time: componentize-py runs module code while building,
        # long before a site's config and directories exist.
        return Session(facts)
