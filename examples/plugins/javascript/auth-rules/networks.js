// Client-address rules: addresses and CIDR blocks, IPv4 and IPv6, as 128-bit
// BigInts (IPv4 mapped into ::ffff:0:0/96 so one comparison serves both).

const MAPPED = 0xffffn << 32n;

function parseV4(text) {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    value = (value << 8n) | BigInt(p);
  }
  return value;
}

/** An address as a 128-bit BigInt, or undefined when it is not one. */
export function parseAddress(text) {
  const v4 = parseV4(text);
  if (v4 !== undefined) return MAPPED | v4;
  if (!text.includes(':')) return undefined;
  let groups = [];
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const side = (s) => (s === '' ? [] : s.split(':'));
  const expand = (list) => {
    const out = [];
    for (const [i, g] of list.entries()) {
      // An IPv4 tail (::ffff:192.0.2.1) counts as two groups.
      if (i === list.length - 1 && g.includes('.')) {
        const v = parseV4(g);
        if (v === undefined) return undefined;
        out.push(Number(v >> 16n), Number(v & 0xffffn));
      } else if (/^[0-9a-fA-F]{1,4}$/.test(g)) {
        out.push(parseInt(g, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = expand(side(halves[0]));
  const tail = halves.length === 2 ? expand(side(halves[1])) : [];
  if (head === undefined || tail === undefined) return undefined;
  if (halves.length === 2) {
    if (head.length + tail.length > 7) return undefined;
    groups = [...head, ...Array(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    if (head.length !== 8) return undefined;
    groups = head;
  }
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

/** Parses a comma-separated list of addresses and CIDR blocks. Throws on a bad entry. */
export function parseNetworks(text) {
  return text.split(',').map((s) => s.trim()).filter(Boolean).map((entry) => {
    const [addr, prefixText, extra] = entry.split('/');
    const base = parseAddress(addr);
    if (base === undefined || extra !== undefined) throw new Error(`not an address or CIDR block: ${entry}`);
    const isV4 = parseV4(addr) !== undefined;
    const width = isV4 ? 32 : 128;
    const prefix = prefixText === undefined ? width : Number(prefixText);
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > width || !/^\d*$/.test(prefixText ?? '')) {
      throw new Error(`bad prefix length in ${entry}`);
    }
    const bits = BigInt(128 - (width - prefix));
    const mask = bits === 0n ? 0n : ((1n << bits) - 1n) << (128n - bits);
    return { base: base & mask, mask };
  });
}

/** Whether the client address falls in one of the networks. */
export function inNetworks(addressText, networks) {
  const address = parseAddress(addressText);
  if (address === undefined) return false;
  return networks.some(({ base, mask }) => (address & mask) === base);
}
