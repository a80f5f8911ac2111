// `auth-rules`: an auth plugin (componentize-js, contract 0.2) whose accounts
// live in its wasi:config values, with client-address and TLS rules per
// account and an optional blocklist of networks fetched over HTTP.
//
// Configuration (the site's `auth.config`, flattened by the host):
//
// | key | meaning |
// |---|---|
// | `users.NAME.password` | a hash the host checks (`wasmftpd:plugin/password`): SHA-512/256-crypt (`$6$`, `$5$`, from `openssl passwd -6`), bcrypt, argon2 |
// | `users.NAME.home` | the account's home, an absolute virtual path (default `/`) |
// | `users.NAME.permissions` | `all` (default), `read-only`, or a comma list of `read`, `write`, `append`, `delete`, `rename`, `make-dir`, `remove-dir`, `list`, `set-time` |
// | `users.NAME.allow` | client networks allowed to log in as NAME: a comma list (or TOML array) of addresses and CIDR blocks, IPv4 or IPv6 (default: the top-level `allow`) |
// | `users.NAME.require_tls` | `true`: only over a TLS-protected control connection (default: the top-level `require_tls`) |
// | `users.NAME.disabled` | `true` refuses the account |
// | `users.NAME.quota` | most bytes the account may store (`500MiB`, `2GB`, `1048576`): the account's `quota-bytes`, enforced by the storage plugin |
// | `users.NAME.max_sessions` | most sessions of the account at once (the host answers `421` beyond) |
// | `users.NAME.attributes.KEY` | account attributes, handed to the storage session (e.g. `root`) |
// | `allow` | default for every account (default: any address) |
// | `require_tls` | default for every account (default `false`) |
// | `blocklist_url` | optional: a text document of addresses and CIDR blocks (one per line, `#` comments) whose clients are refused before any password check; its origin must be in the section's `allowed_hosts`. Fetched over `wasi:http` and kept in the host's `cache` for `blocklist_ttl`; when it cannot be fetched every login is refused as unavailable |
// | `blocklist_ttl` | how long a fetched blocklist is used (default `60s`; `0s` fetches it on every login) |
//
// Only the config is kept in memory, and nothing a later login needs: the host
// may discard the instance after each login, or keep it for the next ones when
// the site sets `reuse_instances` (the blocklist lives in the host's `cache`).

import { getAll } from 'wasi:config/store@0.2.0-rc.1';
import { verify } from 'wasmftpd:plugin/password@0.2.0';
import * as cache from 'wasmftpd:plugin/cache@0.2.0';
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

function log(message) {
  // stderr reaches the server log; never put a password or hash in it.
  console.error(`auth-rules: ${message}`);
}

function unavailable(why) {
  log(why);
  return refuse('unavailable', 'user store unavailable; see the server log');
}

// The whole config, read with one host call the first time an instance needs
// it: each call out of the interpreter costs tens of microseconds, and the
// config changes only with a reload, which brings new instances.
let configValues;

function allConfig() {
  if (configValues === undefined) {
    try {
      configValues = new Map(getAll());
    } catch (e) {
      throw unavailable(`cannot read the config: ${JSON.stringify(e.payload ?? String(e))}`);
    }
  }
  return configValues;
}

function config(key) {
  return allConfig().get(key);
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

const UNITS = { '': 1n, B: 1n, KB: 10n ** 3n, MB: 10n ** 6n, GB: 10n ** 9n, TB: 10n ** 12n,
  KIB: 1n << 10n, MIB: 1n << 20n, GIB: 1n << 30n, TIB: 1n << 40n };

/** `500MiB` -> 524288000n (a u64 is a BigInt in JS). */
function size(text, key) {
  const m = /^(\d+)\s*([a-z]*)$/i.exec(text.trim());
  const unit = m && UNITS[m[2].toUpperCase()];
  if (!unit) throw unavailable(`${key}: ${JSON.stringify(text)} is not a size`);
  return BigInt(m[1]) * unit;
}

/** `60s`, `500ms`, `2m` -> milliseconds. */
function millis(text, key) {
  const m = /^(\d+)\s*(ms|s|m|h)$/.exec(text.trim());
  if (!m) throw unavailable(`${key}: ${JSON.stringify(text)} is not a duration`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2]];
}

// Longer passwords are refused before hashing: SHA-crypt's work grows with the
// square of the password length.
const MAX_PASSWORD = 1024;

// Checked for unknown users, so they take as long as known ones.
const PAD = '$5$timingpad$5ltu5uVwmVL9O3UrCWgR37OuSXPn/Fw9Sc4Sgvc/QA9';

function check(hash, password, user) {
  try {
    return verify(hash, password);
  } catch (e) {
    // hash-error: unknown-format, malformed(why) or too-costly(why).
    const why = e.payload?.val ?? e.payload?.tag ?? String(e);
    throw unavailable(`users.${user}.password cannot be checked: ${why}`);
  }
}

// A blocklist larger than this is refused (and the logins with it).
const MAX_BLOCKLIST = 256 * 1024;

/** The blocklist's networks: from the host's cache, else fetched from `url`. */
async function blocklist(url) {
  const key = `blocklist ${url}`;
  const cached = cache.get(key);
  let text;
  if (cached !== undefined) {
    text = new TextDecoder().decode(cached);
  } else {
    let response;
    try {
      // componentize-js runs the event loop until this export's promise
      // settles, so the synchronous `login` call waits for the answer here.
      response = await fetch(url);
      text = await response.text();
    } catch (e) {
      // A host outside `allowed_hosts` ends up here too (the server logs
      // which origin it refused).
      throw unavailable(`blocklist_url ${url}: ${e.message ?? e}`);
    }
    if (response.status !== 200) throw unavailable(`blocklist_url ${url}: HTTP ${response.status}`);
    if (text.length > MAX_BLOCKLIST) throw unavailable(`blocklist_url ${url}: larger than ${MAX_BLOCKLIST} bytes`);
    const ttl = millis(config('blocklist_ttl') ?? '60s', 'blocklist_ttl');
    if (ttl > 0) cache.set(key, new TextEncoder().encode(text), Math.min(ttl, 86_400_000));
  }
  const entries = text.split('\n').map((line) => line.replace(/#.*/, '').trim()).filter(Boolean);
  try {
    return parseNetworks(entries.join(','));
  } catch (e) {
    throw unavailable(`blocklist_url ${url}: ${e.message}`);
  }
}

/** The account's `users.NAME.attributes.KEY` values, as (key, value) pairs. */
function attributes(user) {
  const prefix = `users.${user}.attributes.`;
  return [...allConfig()].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]);
}

export const auth = {
  // async: the blocklist is fetched with `fetch`; the host still sees a plain call.
  async login(credentials) {
    const user = credentials.user;
    const blocklistUrl = config('blocklist_url');
    if (blocklistUrl !== undefined && inNetworks(credentials.clientAddress, await blocklist(blocklistUrl))) {
      throw refuse('disabled', 'not allowed from this address');
    }

    const field = (name) => config(`users.${user}.${name}`);
    // A name with a dot would reach into another account's keys.
    const stored = user && !user.includes('.') ? field('password') : undefined;
    // No account has an empty name: nothing to time-pad.
    if (!user || credentials.password.length > MAX_PASSWORD) throw refuse('bad-credentials');
    if (stored === undefined) {
      check(PAD, credentials.password, user);
      throw refuse('bad-credentials');
    }
    if (!check(stored, credentials.password, user)) throw refuse('bad-credentials');

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
    const quota = field('quota');
    const maxSessions = field('max_sessions');
    if (maxSessions !== undefined && !/^\d{1,9}$/.test(maxSessions.trim())) {
      throw unavailable(`users.${user}.max_sessions: ${JSON.stringify(maxSessions)} is not a number`);
    }
    return {
      user,
      home: field('home') ?? '/',
      permissions: permissions((field('permissions') ?? 'all').trim(), user),
      limits: {
        quotaBytes: quota === undefined ? undefined : size(quota, `users.${user}.quota`),
        quotaFiles: undefined,
        uploadBytesPerSecond: undefined,
        downloadBytesPerSecond: undefined,
        maxSessions: maxSessions === undefined ? undefined : Number(maxSessions),
      },
      attributes: attributes(user),
    };
  },
};
