// SHA-256-crypt (`$5$`, Ulrich Drepper's "Unix crypt using SHA-256"), the
// hashes `openssl passwd -5` and `mkpasswd -m sha-256` write.
//
// The digests come from Web Crypto (`crypto.subtle.digest`), which the
// component's JavaScript engine implements natively: about 10 µs a digest,
// against ~300 µs for SHA-256 written in JavaScript (the engine interprets JS
// inside WebAssembly; there is no JIT). Web Crypto is asynchronous, so the
// functions here are too; componentize-js settles an export's promise before
// returning to the host.

const ALPHABET = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const DEFAULT_ROUNDS = 5000;

// Where digest inputs are assembled. StarlingMonkey (componentize-js 0.23)
// reads the input of `crypto.subtle.digest` after the call has returned; a
// small typed array keeps its bytes inside the garbage-collected object, which
// a collection may move in the meantime, and the digest comes out wrong. A
// large ArrayBuffer lives outside the collected heap and stays put. One buffer
// serves every digest: each is awaited before the next overwrites it.
let scratch = new Uint8Array(new ArrayBuffer(16 * 1024));

/** SHA-256 of the concatenation of byte arrays. */
async function digest(...parts) {
  let length = 0;
  for (const p of parts) length += p.length;
  if (length > scratch.length) scratch = new Uint8Array(new ArrayBuffer(2 * length));
  let at = 0;
  for (const p of parts) {
    scratch.set(p, at);
    at += p.length;
  }
  return new Uint8Array(await crypto.subtle.digest('SHA-256', scratch.subarray(0, length)));
}

/** `block` repeated (and cut) to exactly `length` bytes. */
function repeat(block, length) {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += block.length) {
    out.set(block.subarray(0, Math.min(block.length, length - i)), i);
  }
  return out;
}

function encode(d) {
  let out = '';
  const put = (value, chars) => {
    for (let i = 0; i < chars; i++) {
      out += ALPHABET[value & 63];
      value >>>= 6;
    }
  };
  // The digest is written in interleaved triples: for k in 0..10 the column
  // (k, k+10, k+20), rotated by k mod 3; then the last two bytes.
  const rotations = [[0, 1, 2], [2, 0, 1], [1, 2, 0]];
  for (let k = 0; k < 10; k++) {
    const column = [k, k + 10, k + 20];
    const [x, y, z] = rotations[k % 3].map((r) => d[column[r]]);
    put((x << 16) | (y << 8) | z, 4);
  }
  put((d[31] << 8) | d[30], 3);
  return out;
}

/** The SHA-256-crypt hash of `password` with the rounds and salt of `setting`
 *  (`$5$[rounds=N$]salt[$hash]`). Throws on any other format. */
export async function sha256Crypt(password, setting) {
  const fields = setting.split('$');
  if (fields.length < 3 || fields[0] !== '' || fields[1] !== '5') throw new Error('not a $5$ hash');
  let rest = fields.slice(2);
  let rounds = DEFAULT_ROUNDS;
  let explicit = false;
  if (rest[0].startsWith('rounds=')) {
    const n = Number(rest[0].slice('rounds='.length));
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

  const b = await digest(pw, salt, pw);
  const aParts = [pw, salt, repeat(b, pw.length)];
  for (let n = pw.length; n > 0; n >>>= 1) aParts.push(n & 1 ? b : pw);
  const a = await digest(...aParts);
  const p = repeat(await digest(...Array(pw.length).fill(pw)), pw.length);
  const s = repeat(await digest(...Array(16 + a[0]).fill(salt)), salt.length);

  let c = a;
  for (let i = 0; i < rounds; i++) {
    const parts = [i & 1 ? p : c];
    if (i % 3) parts.push(s);
    if (i % 7) parts.push(p);
    parts.push(i & 1 ? c : p);
    c = await digest(...parts);
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
