// `auth-rules`: an auth plugin (componentize-js) whose accounts live in its
// wasi:config values, with client-address and TLS rules per account.
//
// Configuration (the site's `auth.config`, flattened by the host):
//
// | key | meaning |
// |---|---|
// | `users.NAME.password` | SHA-256-crypt hash (`$5$…`, from `openssl passwd -5` or `mkpasswd -m sha-256`) |
// | `users.NAME.home` | the account's home, an absolute virtual path (default `/`) |
// | `users.NAME.permissions` | `all` (default), `read-only`, or a comma list of `read`, `write`, `append`, `delete`, `rename`, `make-dir`, `remove-dir`, `list`, `set-time` |
// | `users.NAME.allow` | client networks allowed to log in as NAME: a comma list (or TOML array) of addresses and CIDR blocks, IPv4 or IPv6 (default: the top-level `allow`) |
// | `users.NAME.require_tls` | `true`: only over a TLS-protected control connection (default: the top-level `require_tls`) |
// | `users.NAME.disabled` | `true` refuses the account |
// | `allow` | default for every account (default: any address) |
// | `require_tls` | default for every account (default `false`) |
//
// Nothing is kept between calls: the host may discard the instance after each
// login.

import { get } from 'wasi:config/store@0.2.0-rc.1';
import { sameText, sha256Crypt } from './shacrypt.js';
import { parseNetworks, inNetworks } from './networks.js';

const ALL = ['read', 'write', 'append', 'delete', 'rename', 'make-dir', 'remove-dir', 'list', 'set-time'];
// The WIT flag names as jco spells them (camelCase); `list` is `list-dir` there.
const FLAG = {
  read: 'read', write: 'write', append: 'append', delete: 'delete', rename: 'rename',
  'make-dir': 'makeDir', 'remove-dir': 'removeDir', list: 'listDir', 'set-time': 'setTime',
};

/** A result<_, refusal> error; componentize-js takes `payload` as the error value. */
function refuse(reason, message) {
  const e = new Error(reason);
  e.payload = { reason, message };
  return e;
}

function unavailable(why) {
  // stderr reaches the server log; never put a password or hash in it.
  console.error(`auth-rules: ${why}`);
  return refuse('unavailable', 'user store unavailable; see the server log');
}

function config(key) {
  try {
    return get(key) ?? undefined;
  } catch (e) {
    throw unavailable(`cannot read config key ${key}: ${JSON.stringify(e.payload ?? String(e))}`);
  }
}

function permissions(text, user) {
  const names = text === 'all' ? ALL : text === 'read-only' ? ['read', 'list'] : text.split(',').map((s) => s.trim()).filter(Boolean);
  const flags = {};
  for (const name of names) {
    if (!(name in FLAG)) throw unavailable(`users.${user}.permissions: unknown permission ${JSON.stringify(name)}`);
    flags[FLAG[name]] = true;
  }
  return flags;
}

// Longer passwords are refused before hashing: SHA-crypt's work grows with the
// square of the password length.
const MAX_PASSWORD = 1024;

// A stand-in hash checked for unknown users, so they take as long as known ones.
const PAD = '$5$timingpad';

export const auth = {
  // async: the hashing awaits Web Crypto; the host still sees a plain call.
  async login(credentials) {
    const user = credentials.user;
    const field = (name) => config(`users.${user}.${name}`);
    // A name with a dot would reach into another account's keys.
    const stored = user && !user.includes('.') ? field('password') : undefined;
    // No account has an empty name: nothing to time-pad.
    if (!user || credentials.password.length > MAX_PASSWORD) throw refuse('bad-credentials');
    if (stored === undefined) {
      try { await sha256Crypt(credentials.password, PAD); } catch { /* only the time matters */ }
      throw refuse('bad-credentials');
    }
    let computed;
    try {
      computed = await sha256Crypt(credentials.password, stored);
    } catch {
      throw unavailable(`users.${user}.password is not a SHA-256-crypt ($5$) hash`);
    }
    if (!sameText(computed, stored)) throw refuse('bad-credentials');

    // Rules come after the password check, so they reveal nothing to a guesser.
    if (field('disabled') === 'true') throw refuse('disabled', 'account disabled');
    if ((field('require_tls') ?? config('require_tls')) === 'true' && !credentials.tls) {
      throw refuse('disabled', 'this account must log in over TLS (AUTH TLS)');
    }
    const allow = field('allow') ?? config('allow');
    if (allow !== undefined) {
      let networks;
      try {
        networks = parseNetworks(allow);
      } catch (e) {
        throw unavailable(`allow list of ${user}: ${e.message}`);
      }
      if (!inNetworks(credentials.clientAddress, networks)) {
        throw refuse('disabled', 'not allowed from this address');
      }
    }
    return {
      user,
      home: field('home') ?? '/',
      permissions: permissions((field('permissions') ?? 'all').trim(), user),
    };
  },
};
