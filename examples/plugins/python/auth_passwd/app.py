"""`auth-passwd`: an auth plugin (componentize-py) that checks users against a
password file in a directory the site grants it.

The file has one `user:hash` line per account, the format of /etc/shadow and of
htpasswd files; fields after the hash are ignored, as are blank lines and lines
starting with `#`. Hashes are SHA-crypt: `$6$` (SHA-512) or `$5$` (SHA-256),
e.g. from `openssl passwd -6` or `mkpasswd -m sha-512`, or copied from
/etc/shadow. A hash starting with `!` or `*` is a locked account.

Configuration (the site's `auth.config`, read through `wasi:config/store`):

| key | meaning |
|---|---|
| `file` | guest path of the password file (default `/passwd`) |
| `home` | every account's home; `{user}` is replaced by the user name (default `/`) |
| `permissions` | `all` (default), `read-only`, or a comma list of `read`, `write`, `append`, `delete`, `rename`, `make-dir`, `remove-dir`, `list`, `set-time` |
| `attributes_url` | optional: after a good password, `GET {attributes_url}/{user}`; a JSON object of strings becomes the account's attributes (handed to the storage session, e.g. `root`), `404` means none. Its origin must be in the section's `allowed_hosts`; any other answer refuses the login as unavailable |

Hashes are checked by the host (`wasmftpd:plugin/password`, contract 0.2):
natively and in constant time.

The file is checked on every login, so edits take effect at once without a
reload: a fresh instance reads it, and a warm one (the site's
`reuse_instances`) reads it again when its size or modification time changed.
"""

import json
import os
import sys
import time
from urllib.parse import quote, urlsplit

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.exports.auth import Account, Refusal, RefusalReason
from wit_world.imports import outgoing_handler, password, store, streams
from wit_world.imports import wasi_http_types as http
from wit_world.imports.wasmftpd_plugin_types import AccountLimits, Permissions

# Checked for unknown users, so they cost what a real check costs.
_PAD_HASH = "$6$timingpad$qJia40F..8WRi05JE3ZLO7y58pj2WgXx1l7/T.4O3RhnuxPGQG07V7yF4d7U11RDAAEzaxn6Uv8FD0uLDwN190"

# Longer passwords are refused before hashing: SHA-crypt's work grows with the
# square of the password length.
_MAX_PASSWORD = 1024

_PERMISSION_NAMES = {
    "read": Permissions.READ,
    "write": Permissions.WRITE,
    "append": Permissions.APPEND,
    "delete": Permissions.DELETE,
    "rename": Permissions.RENAME,
    "make-dir": Permissions.MAKE_DIR,
    "remove-dir": Permissions.REMOVE_DIR,
    "list": Permissions.LIST_DIR,
    "set-time": Permissions.SET_TIME,
}


def _log(message):
    # stderr reaches the server log; never put a password or hash in it.
    print(f"auth-passwd: {message}", file=sys.stderr)


def _refuse(reason, message=None):
    return Err(Refusal(reason=reason, message=message))


def _unavailable():
    return _refuse(RefusalReason.UNAVAILABLE, "user store unavailable; see the server log")


# The whole config, read with one host call the first time an instance needs
# it: each call out of the interpreter costs tens of microseconds, and the
# config changes only with a reload, which brings new instances.
_config_values = None


def _config(key, default):
    global _config_values
    if _config_values is None:
        try:
            _config_values = dict(store.get_all())
        except Err as e:
            _log(f"cannot read the config: {e.value}")
            raise _unavailable() from None
    return _config_values.get(key, default)


def _permissions(text):
    text = text.strip()
    if text == "all":
        return Permissions(sum(p.value for p in _PERMISSION_NAMES.values()))
    if text == "read-only":
        return Permissions.READ | Permissions.LIST_DIR
    result = Permissions(0)
    for name in filter(None, (part.strip() for part in text.split(","))):
        if name not in _PERMISSION_NAMES:
            _log(f"config key permissions: unknown permission {name!r}")
            raise _unavailable()
        result |= _PERMISSION_NAMES[name]
    return result


# The parsed password file and the (size, mtime) it was parsed at: a warm
# instance (the site's `reuse_instances`) re-reads the file only when it
# changed; a fresh instance reads it once.
_accounts = None

# File times tick coarsely (a few ms), so a file modified this recently could
# change again without its (size, mtime) changing: it is parsed again.
_SETTLED_NS = 2_000_000_000


def _find(path, user):
    """The stored hash of `user`, or None when the file does not list it."""
    global _accounts
    try:
        info = os.stat(path)
        version = (path, info.st_size, info.st_mtime_ns)
        settled = time.time_ns() - info.st_mtime_ns > _SETTLED_NS
        if not settled or _accounts is None or _accounts[0] != version:
            _accounts = (version, _parse(path))
    except OSError as e:
        _log(f"cannot read the password file {path}: {e.strerror}")
        raise _unavailable() from None
    except UnicodeDecodeError:
        _log(f"the password file {path} is not UTF-8")
        raise _unavailable() from None
    return _accounts[1].get(user)


def _parse(path):
    """user -> stored hash, for every account line of the file."""
    accounts = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line or line.startswith("#"):
                continue
            name, sep, rest = line.partition(":")
            if sep:
                accounts.setdefault(name, rest.split(":", 1)[0])
    return accounts


def _get(url):
    """GET `url` through wasi:http: (status, body bytes). Raises the refusal
    `unavailable` when the request fails (the error is logged)."""
    parts = urlsplit(url)
    request = http.OutgoingRequest(http.Fields())
    request.set_method(http.Method_Get())
    request.set_scheme(http.Scheme_Https() if parts.scheme == "https" else http.Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + (f"?{parts.query}" if parts.query else ""))
    try:
        future = outgoing_handler.handle(request, None)
    except Err as e:
        _log(f"GET {url}: {e.value}")
        raise _unavailable() from None
    future.subscribe().block()
    answer = future.get()
    if answer is None or isinstance(answer.value, Err) or isinstance(answer.value.value, Err):
        why = answer.value.value.value if answer and isinstance(answer.value, Ok) else "no answer"
        _log(f"GET {url}: {why}")
        raise _unavailable()
    response = answer.value.value
    body = response.consume()
    stream = body.stream()
    data = bytearray()
    while len(data) <= 65536:
        try:
            data += stream.blocking_read(16384)
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                break
            _log(f"GET {url}: reading the answer failed")
            raise _unavailable() from None
    return response.status(), bytes(data)


def _attributes(user):
    url = _config("attributes_url", "")
    if not url:
        return []
    status, body = _get(f"{url.rstrip('/')}/{quote(user, safe='')}")
    if status == 404:
        return []
    try:
        value = json.loads(body) if status == 200 else None
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        _log(f"attributes of {user!r}: HTTP {status}, not a JSON object of strings")
        raise _unavailable()
    return sorted(value.items())


def _verify(stored, given):
    try:
        return password.verify(stored, given)
    except Err:
        _log("a stored hash is not a format the host knows")
        raise _unavailable() from None


class Auth(exports.Auth):
    def login(self, credentials):
        user = credentials.user
        # A name that could not appear in the file (or would confuse it) is
        # simply unknown.
        if not user or ":" in user or "\n" in user or len(credentials.password) > _MAX_PASSWORD:
            raise _refuse(RefusalReason.BAD_CREDENTIALS)
        stored = _find(_config("file", "/passwd"), user)
        if stored is None:
            # Spend the time a real check takes, so a wrong user name is not
            # faster to detect than a wrong password.
            _verify(_PAD_HASH, credentials.password)
            raise _refuse(RefusalReason.BAD_CREDENTIALS)
        if stored.startswith(("!", "*")):
            raise _refuse(RefusalReason.DISABLED, "account locked")
        if not _verify(stored, credentials.password):
            raise _refuse(RefusalReason.BAD_CREDENTIALS)
        home = _config("home", "/").replace("{user}", user)
        return Account(
            user=user,
            home=home,
            permissions=_permissions(_config("permissions", "all")),
            limits=AccountLimits(None, None, None, None, None),
            attributes=_attributes(user),
        )
