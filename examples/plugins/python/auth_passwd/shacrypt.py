"""SHA-crypt password hashes (`$5$` SHA-256, `$6$` SHA-512), as written by
`openssl passwd -6`, `mkpasswd -m sha-512` and found in /etc/shadow.

Pure Python on `hashlib`, so it runs inside a componentize-py component where
native extension modules such as `crypt` are not available. The algorithm is
the one published by Ulrich Drepper ("Unix crypt using SHA-256 and SHA-512").
"""

import hashlib
import hmac

_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DEFAULT_ROUNDS = 5000
_MIN_ROUNDS = 1000
_MAX_ROUNDS = 999_999_999


def _order(size):
    """The byte order of the final encoding: triples of digest positions,
    then the leftover bytes. Each scheme interleaves the digest differently."""
    if size == 64:
        third = 21
        rotations = [(0, 1, 2), (1, 2, 0), (2, 0, 1)]
    else:
        third = 10
        rotations = [(0, 1, 2), (2, 0, 1), (1, 2, 0)]
    triples = []
    for k in range(third):
        column = (k, k + third, k + 2 * third)
        r = rotations[k % 3]
        triples.append((column[r[0]], column[r[1]], column[r[2]]))
    return triples


_ORDERS = {64: _order(64), 32: _order(32)}


def _encode(digest):
    out = []

    def put(value, chars):
        for _ in range(chars):
            out.append(_ALPHABET[value & 0x3F])
            value >>= 6

    for a, b, c in _ORDERS[len(digest)]:
        put((digest[a] << 16) | (digest[b] << 8) | digest[c], 4)
    if len(digest) == 64:
        put(digest[63], 2)
    else:
        put((digest[31] << 8) | digest[30], 3)
    return "".join(out)


def _repeat(block, length):
    """`block` repeated (and cut) to exactly `length` bytes."""
    whole, part = divmod(length, len(block))
    return block * whole + block[:part]


def _digest(password, salt, rounds, hash_fn):
    b = hash_fn(password + salt + password).digest()
    a = hash_fn(password + salt + _repeat(b, len(password)))
    n = len(password)
    while n:
        a.update(b if n & 1 else password)
        n >>= 1
    a = a.digest()

    p = _repeat(hash_fn(password * len(password)).digest(), len(password))
    s = _repeat(hash_fn(salt * (16 + a[0])).digest(), len(salt))

    c = a
    for i in range(rounds):
        h = hash_fn()
        h.update(p if i & 1 else c)
        if i % 3:
            h.update(s)
        if i % 7:
            h.update(p)
        h.update(c if i & 1 else p)
        c = h.digest()
    return c


def crypt(password, setting):
    """Hashes `password` (str) with the scheme, rounds and salt of `setting`
    (a full `$6$…` hash or just its `$6$[rounds=N$]salt` prefix)."""
    parts = setting.split("$")
    if len(parts) < 3 or parts[0] != "" or parts[1] not in ("5", "6"):
        raise ValueError("not a SHA-crypt hash")
    scheme = parts[1]
    hash_fn = hashlib.sha512 if scheme == "6" else hashlib.sha256
    rest = parts[2:]
    rounds, explicit = _DEFAULT_ROUNDS, False
    if rest[0].startswith("rounds="):
        try:
            rounds = int(rest[0][len("rounds="):])
        except ValueError:
            raise ValueError("bad rounds") from None
        rounds = min(max(rounds, _MIN_ROUNDS), _MAX_ROUNDS)
        explicit = True
        rest = rest[1:]
        if not rest:
            raise ValueError("missing salt")
    salt = rest[0][:16]
    digest = _digest(password.encode("utf-8"), salt.encode("utf-8"), rounds, hash_fn)
    prefix = f"${scheme}$" + (f"rounds={rounds}$" if explicit else "")
    return f"{prefix}{salt}${_encode(digest)}"


def verify(password, stored):
    """True when `password` hashes to `stored`; compares in constant time."""
    return hmac.compare_digest(crypt(password, stored).encode(), stored.encode())
