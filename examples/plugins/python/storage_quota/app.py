"""`storage-quota`: a storage plugin (componentize-py) serving a directory the
site grants it, with an optional size quota and an optional read-only switch.

Configuration (the site's `storage.config`, read through `wasi:config/store`):

| key | meaning |
|---|---|
| `root` | guest path of the granted directory to serve as `/` (default `/`) |
| `quota` | most bytes the files under the root may hold, e.g. `500MiB`, `2GB`, `1048576` (default: no quota) |
| `readonly` | `true` refuses every change with `permission-denied` |

Uploads move through the portable chunked path (a `writer` resource), so the
plugin sees every byte and counts it against the quota. Downloads hand the host
a `wasi:io` input stream of the file (`descriptor.read-via-stream`), so their
bytes never pass through Python: faster, and it sidesteps componentize-py
0.25.1 keeping every `bytes` an export returns (a chunked `reader` leaked each
chunk until the instance ran out of memory, ~40 MiB into a download). The
chunked reader remains for a `root` that is not itself a granted directory.

The quota is counted per session: a session sums the tree on its first write
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
    ReadSource_Chunks,
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

# Bounds the memory one read call may use, whatever the host asks for.
_MAX_CHUNK = 1 << 20

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


class _Settings:
    """What a session learns from its config on first use."""

    def __init__(self):
        def get(key):
            try:
                return store.get(key)
            except Err as e:
                raise _misconfigured(f"cannot read config key {key}: {e.value}") from None

        self.root = (get("root") or "/").rstrip("/")
        quota = get("quota")
        try:
            self.quota = None if quota is None else _parse_size(quota)
        except ValueError:
            raise _misconfigured(f"config key quota: {quota!r} is not a size") from None
        self.readonly = (get("readonly") or "false").strip().lower() == "true"
        if not os.path.isdir(self.root or "/"):
            raise _misconfigured(f"no granted directory is named {self.root or '/'!r} (config key root)")
        # Bytes in use under the root, summed on the first write.
        self.used = None
        # The granted directory named exactly `root`, for streamed reads.
        wanted = self.root or "/"
        self.dir = next((d for d, name in preopens.get_directories() if name.rstrip("/") == self.root), None)
        if self.dir is None and wanted != "/":
            _log(f"{wanted!r} is not itself a granted directory; downloads use the slower chunked path")


_settings = None


def _session():
    # Not at import time: componentize-py runs module code while building, long
    # before a site's config and directories exist.
    global _settings
    if _settings is None:
        _settings = _Settings()
    return _settings


def _host_path(path):
    """The guest filesystem path of a virtual path. The host has normalized it;
    anything odd is refused rather than repaired."""
    if not path.startswith("/"):
        raise _fail(ErrorCode.INVALID_NAME, "path must be absolute")
    if path != "/" and any(seg in ("", ".", "..") or "\0" in seg for seg in path[1:].split("/")):
        raise _fail(ErrorCode.INVALID_NAME, "path is not normalized")
    root = _session().root
    return (root + path) if path != "/" else (root or "/")


def _writable():
    s = _session()
    if s.readonly:
        raise _fail(ErrorCode.PERMISSION_DENIED, "this storage is read-only")
    return s


def _kind(mode):
    if st.S_ISREG(mode):
        return EntryKind.FILE
    if st.S_ISDIR(mode):
        return EntryKind.DIRECTORY
    if st.S_ISLNK(mode):
        return EntryKind.SYMLINK
    return EntryKind.OTHER


def _metadata(s):
    seconds, nanos = divmod(s.st_mtime_ns, 1_000_000_000)
    return Metadata(
        kind=_kind(s.st_mode),
        size=s.st_size,
        modified=Timestamp(seconds=seconds, nanoseconds=nanos),
        readonly=_session().readonly,
    )


def _usage(top):
    total = 0
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name), follow_symlinks=False).st_size
            except OSError:
                pass  # removed while we walked
    return total


class Reader(exports.storage.Reader):
    def __init__(self, file):
        self._file = file

    def read(self, max):
        try:
            return self._file.read(min(max, _MAX_CHUNK))
        except OSError as e:
            raise _os_error(e) from None

    def __del__(self):
        self._file.close()


class Writer(exports.storage.Writer):
    def __init__(self, file, end):
        self._file = file
        # The file's size as far as this writer knows: only bytes past it count
        # against the quota.
        self._end = end

    def write(self, data):
        s = _session()
        position = self._file.tell()
        growth = max(0, position + len(data) - self._end)
        if s.quota is not None and s.used is not None and s.used + growth > s.quota:
            raise _fail(ErrorCode.NO_SPACE, "quota exceeded")
        view = memoryview(data)
        try:
            # An unbuffered file may take part of the data per call.
            while view:
                view = view[self._file.write(view):]
        except OSError as e:
            raise _os_error(e) from None
        if s.used is not None:
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


def _stream(root, _checked, path, offset):
    """A read-source that is the file's own WASI stream."""
    rel = path[1:] or "."
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


class Storage(exports.Storage):
    def stat(self, path):
        try:
            return _metadata(os.stat(_host_path(path)))
        except OSError as e:
            raise _os_error(e) from None

    def list_dir(self, path):
        entries = []
        try:
            with os.scandir(_host_path(path)) as it:
                for entry in it:
                    try:
                        entries.append(DirEntry(name=entry.name, metadata=_metadata(entry.stat())))
                    except FileNotFoundError:
                        pass  # removed between readdir and stat, or a dangling link
        except OSError as e:
            raise _os_error(e) from None
        return entries

    def open_read(self, path, offset):
        root = _session().dir
        if root is not None:
            return _stream(root, _host_path(path), path, offset)
        try:
            file = open(_host_path(path), "rb", buffering=0)
        except OSError as e:
            raise _os_error(e) from None
        try:
            if st.S_ISDIR(os.fstat(file.fileno()).st_mode):
                raise _fail(ErrorCode.IS_A_DIRECTORY)
            file.seek(offset)
        except OSError as e:
            file.close()
            raise _os_error(e) from None
        except Err:
            file.close()
            raise
        return ReadSource_Chunks(Reader(file))

    def open_write(self, path, mode):
        s = _writable()
        target = _host_path(path)
        try:
            if os.path.isdir(target):
                raise _fail(ErrorCode.IS_A_DIRECTORY)
            if s.used is None and s.quota is not None:
                s.used = _usage(s.root or "/")
            try:
                old = os.stat(target).st_size
            except FileNotFoundError:
                old = 0
            if isinstance(mode, WriteMode_Truncate):
                file = open(target, "wb", buffering=0)
                if s.used is not None:
                    s.used = max(0, s.used - old)
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
        return WriteSink_Chunks(Writer(file, end))

    def make_dir(self, path):
        _writable()
        try:
            os.mkdir(_host_path(path))
        except OSError as e:
            raise _os_error(e) from None

    def remove_dir(self, path):
        _writable()
        try:
            os.rmdir(_host_path(path))
        except OSError as e:
            raise _os_error(e) from None

    def delete(self, path):
        s = _writable()
        target = _host_path(path)
        try:
            size = os.stat(target, follow_symlinks=False)
            if st.S_ISDIR(size.st_mode):
                raise _fail(ErrorCode.IS_A_DIRECTORY)
            os.unlink(target)
        except OSError as e:
            raise _os_error(e) from None
        if s.used is not None:
            s.used = max(0, s.used - size.st_size)

    def rename(self, source, target):
        _writable()
        try:
            os.replace(_host_path(source), _host_path(target))
        except OSError as e:
            # Renaming onto a directory that exists is refused as a name clash.
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
                raise _fail(ErrorCode.ALREADY_EXISTS) from None
            raise _os_error(e) from None

    def set_modified(self, path, time):
        _writable()
        if time.seconds < 0:
            raise _fail(ErrorCode.UNSUPPORTED, "times before 1970 are not supported")
        target = _host_path(path)
        try:
            atime = os.stat(target).st_atime_ns
            os.utime(target, ns=(atime, time.seconds * 1_000_000_000 + time.nanoseconds))
        except OSError as e:
            raise _os_error(e) from None
