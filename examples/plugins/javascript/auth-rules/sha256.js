// SHA-256 (FIPS 180-4) and SHA-256-crypt (`$5$`, Ulrich Drepper's "Unix crypt
// using SHA-256"), in plain JavaScript so they run synchronously inside the
// component: Web Crypto's `subtle.digest` returns promises.

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const INITIAL = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
const W = new Int32Array(64);

function compress(state, block, at) {
  for (let i = 0; i < 16; i++) {
    const j = at + 4 * i;
    W[i] = (block[j] << 24) | (block[j + 1] << 16) | (block[j + 2] << 8) | block[j + 3];
  }
  for (let i = 16; i < 64; i++) {
    const a = W[i - 15], b = W[i - 2];
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
  }
  let [a, b, c, d, e, f, g, h] = state;
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  state[0] = (state[0] + a) | 0; state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0; state[3] = (state[3] + d) | 0;
  state[4] = (state[4] + e) | 0; state[5] = (state[5] + f) | 0;
  state[6] = (state[6] + g) | 0; state[7] = (state[7] + h) | 0;
}

/** SHA-256 of the concatenation of the given byte arrays. */
export function sha256(...parts) {
  let length = 0;
  for (const p of parts) length += p.length;
  const padded = new Uint8Array(((length + 9 + 63) >> 6) << 6);
  let at = 0;
  for (const p of parts) { padded.set(p, at); at += p.length; }
  padded[length] = 0x80;
  const bits = length * 8;
  const end = padded.length;
  padded[end - 4] = bits >>> 24; padded[end - 3] = bits >>> 16;
  padded[end - 2] = bits >>> 8; padded[end - 1] = bits;
  padded[end - 5] = Math.floor(bits / 2 ** 32);
  const state = Int32Array.from(INITIAL);
  for (let i = 0; i < end; i += 64) compress(state, padded, i);
  const out = new Uint8Array(32);
  for (let i = 0; i < 8; i++) {
    out[4 * i] = state[i] >>> 24; out[4 * i + 1] = state[i] >>> 16;
    out[4 * i + 2] = state[i] >>> 8; out[4 * i + 3] = state[i];
  }
  return out;
}

/** `block` repeated (and cut) to exactly `length` bytes. */
function repeat(block, length) {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += block.length) out.set(block.subarray(0, Math.min(block.length, length - i)), i);
  return out;
}

const ALPHABET = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function encode(d) {
  let out = '';
  const put = (value, chars) => {
    for (let i = 0; i < chars; i++) { out += ALPHABET[value & 63]; value >>>= 6; }
  };
  // The digest is written in interleaved triples: for k in 0..10 the column
  // (k, k+10, k+20), rotated by k mod 3.
  const rotations = [[0, 1, 2], [2, 0, 1], [1, 2, 0]];
  for (let k = 0; k < 10; k++) {
    const column = [k, k + 10, k + 20];
    const [x, y, z] = rotations[k % 3].map((r) => d[column[r]]);
    put((x << 16) | (y << 8) | z, 4);
  }
  put((d[31] << 8) | d[30], 3);
  return out;
}

/** SHA-256-crypt of `password` with the rounds and salt of `setting`
 *  (`$5$[rounds=N$]salt[$hash]`). Throws on anything else. */
export function sha256Crypt(password, setting) {
  const fields = setting.split('$');
  if (fields.length < 3 || fields[0] !== '' || fields[1] !== '5') throw new Error('not a $5$ hash');
  let rest = fields.slice(2);
  let rounds = 5000;
  let explicit = false;
  if (rest[0].startsWith('rounds=')) {
    const n = Number(rest[0].slice(7));
    if (!Number.isInteger(n)) throw new Error('bad rounds');
    rounds = Math.min(Math.max(n, 1000), 999999999);
    explicit = true;
    rest = rest.slice(1);
    if (rest.length === 0) throw new Error('missing salt');
  }
  const saltText = rest[0].slice(0, 16);
  const enc = new TextEncoder();
  const pw = enc.encode(password);
  const salt = enc.encode(saltText);

  const b = sha256(pw, salt, pw);
  const aParts = [pw, salt, repeat(b, pw.length)];
  for (let n = pw.length; n > 0; n >>>= 1) aParts.push(n & 1 ? b : pw);
  const a = sha256(...aParts);
  const p = repeat(sha256(...Array(pw.length).fill(pw)), pw.length);
  const s = repeat(sha256(...Array(16 + a[0]).fill(salt)), salt.length);

  let c = a;
  for (let i = 0; i < rounds; i++) {
    const parts = [i & 1 ? p : c];
    if (i % 3) parts.push(s);
    if (i % 7) parts.push(p);
    parts.push(i & 1 ? c : p);
    c = sha256(...parts);
  }
  return `$5$${explicit ? `rounds=${rounds}$` : ''}${saltText}$${encode(c)}`;
}

/** Compares two strings in time that depends only on their lengths. */
export function sameText(x, y) {
  if (x.length !== y.length) return false;
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x.charCodeAt(i) ^ y.charCodeAt(i);
  return diff === 0;
}
