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

The file is read on every login (the host may discard the instance after
each call), so edits take effect at once without a reload.
"""

import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.auth import Account, Refusal, RefusalReason
from wit_world.imports import store
from wit_world.imports.types import Permissions

import shacrypt

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


def _config(key, default):
    try:
        value = store.get(key)
    except Err as e:
        _log(f"cannot read config key {key}: {e.value}")
        raise _unavailable() from None
    return default if value is None else value


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


def _find(path, user):
    """The stored hash of `user`, or None when the file does not list it."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\r\n")
                if not line or line.startswith("#"):
                    continue
                name, sep, rest = line.partition(":")
                if sep and name == user:
                    return rest.split(":", 1)[0]
    except OSError as e:
        _log(f"cannot read the password file {path}: {e.strerror}")
        raise _unavailable() from None
    return None


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
            shacrypt.crypt(credentials.password, "$6$timingpad")
            raise _refuse(RefusalReason.BAD_CREDENTIALS)
        if stored.startswith(("!", "*")):
            raise _refuse(RefusalReason.DISABLED, "account locked")
        try:
            ok = shacrypt.verify(credentials.password, stored)
        except ValueError:
            _log(f"the hash of user {user!r} is not SHA-crypt ($5$ or $6$)")
            raise _unavailable() from None
        if not ok:
            raise _refuse(RefusalReason.BAD_CREDENTIALS)
        home = _config("home", "/").replace("{user}", user)
        return Account(user=user, home=home, permissions=_permissions(_config("permissions", "all")))
