// Monkeychain's hashing rules in plain JavaScript, for the tamper lesson: SHA-256, a record's
// canonical signing bytes and id, the records commitment, the fixed 136-byte header and the
// block hash (docs/PROTOCOL.md). The page recomputes a block from edited records with these, so
// a visitor sees its hash change, its proof of work fail and every later link break.
//
// SHA-256 is written out here because crypto.subtle exists only in secure contexts (https or
// localhost), and the visualizer is often opened over plain http from another machine.
// Every u64 goes through BigInt: a JSON number loses precision past 2^53.
'use strict';

(function (root) {
  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);

  /** SHA-256 of a Uint8Array, as a 32-byte Uint8Array. */
  function sha256(bytes) {
    const length = bytes.length;
    // The message, a 0x80 byte, zeros, then the bit length in 8 bytes: a multiple of 64.
    const padded = new Uint8Array(Math.ceil((length + 9) / 64) * 64);
    padded.set(bytes);
    padded[length] = 0x80;
    const view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
    view.setUint32(padded.length - 4, (length * 8) >>> 0);
    const h = new Uint32Array([
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]);
    const w = new Uint32Array(64);
    for (let offset = 0; offset < padded.length; offset += 64) {
      for (let i = 0; i < 16; i++) w[i] = view.getUint32(offset + i * 4);
      for (let i = 16; i < 64; i++) {
        const a = w[i - 15];
        const b = w[i - 2];
        const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
        const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
      }
      let [a, b, c, d, e, f, g, hh] = h;
      for (let i = 0; i < 64; i++) {
        const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        const ch = (e & f) ^ (~e & g);
        const t1 = (hh + S1 + ch + K[i] + w[i]) | 0;
        const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        const maj = (a & b) ^ (a & c) ^ (b & c);
        const t2 = (S0 + maj) | 0;
        hh = g; g = f; f = e; e = (d + t1) | 0;
        d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += d;
      h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    const out = new Uint8Array(32);
    const outView = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) outView.setUint32(i * 4, h[i]);
    return out;
  }

  /** Lowercase hex of bytes. */
  function hex(bytes) {
    let s = '';
    for (const b of bytes) s += b.toString(16).padStart(2, '0');
    return s;
  }

  /** Bytes of an even-length hex string; throws on anything else. */
  function unhex(text) {
    if (typeof text !== 'string' || text.length % 2 !== 0 || /[^0-9a-fA-F]/.test(text)) {
      throw new Error('not hex: ' + String(text).slice(0, 16));
    }
    const out = new Uint8Array(text.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(i * 2, 2), 16);
    return out;
  }

  /** Exactly `n` bytes of hex (a key, a hash, a signature). */
  function fixedHex(text, n, what) {
    const bytes = unhex(text);
    if (bytes.length !== n) throw new Error(what + ' must be ' + n * 2 + ' hex digits');
    return bytes;
  }

  /** An unsigned integer of `bits` bits from a number, a decimal string or a BigInt. */
  function unsigned(value, bits, what) {
    let n;
    try {
      n = BigInt(typeof value === 'string' ? value.trim() : value);
    } catch (_) {
      throw new Error(what + ' must be a whole number');
    }
    if (n < 0n || n >= (1n << BigInt(bits))) {
      throw new Error(what + ' must be between 0 and 2^' + bits + ' - 1');
    }
    return n;
  }

  /** Little-endian bytes of an unsigned integer. */
  function le(value, bytes, what) {
    let n = unsigned(value, bytes * 8, what);
    const out = new Uint8Array(bytes);
    for (let i = 0; i < bytes; i++) {
      out[i] = Number(n & 0xffn);
      n >>= 8n;
    }
    return out;
  }

  function concat(parts) {
    const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  const utf8 = new TextEncoder();

  /** A string field: u32 LE byte length, then UTF-8. */
  function str(text) {
    const bytes = utf8.encode(String(text));
    return concat([le(bytes.length, 4, 'length'), bytes]);
  }

  const RECORD_DOMAIN = utf8.encode('monkeychain/record/v1');
  const RECORDS_DOMAIN = utf8.encode('monkeychain/records/v1');

  /** A record's canonical signing bytes: domain, account, seq, then the tagged action. */
  function signingBytes(record) {
    const a = record.action;
    let action;
    switch (a.kind) {
      case 'join': action = [Uint8Array.of(1), str(a.name)]; break;
      case 'purchase': action = [Uint8Array.of(2), str(a.monkey)]; break;
      case 'transfer':
        action = [Uint8Array.of(3), fixedHex(a.to, 32, 'to'), le(a.amount, 8, 'amount')];
        break;
      case 'vote': action = [Uint8Array.of(4), str(a.poll), str(a.choice)]; break;
      default: throw new Error('unknown action ' + String(a.kind));
    }
    return concat([
      RECORD_DOMAIN,
      fixedHex(record.account, 32, 'account'),
      le(record.seq, 8, 'seq'),
      ...action,
    ]);
  }

  /** A record's canonical encoding: its signing bytes, then the 64-byte signature. */
  function encodeRecord(record) {
    return concat([signingBytes(record), fixedHex(record.sig, 64, 'sig')]);
  }

  /** A record's id: SHA-256 of its canonical encoding, hex. */
  function recordId(record) {
    return hex(sha256(encodeRecord(record)));
  }

  /** The records commitment: SHA-256 of the domain, the count (u32 LE) and every id. */
  function recordsRoot(records) {
    const ids = records.map((r) => unhex(recordId(r)));
    return hex(sha256(concat([RECORDS_DOMAIN, le(records.length, 4, 'count'), ...ids])));
  }

  /** The fixed 136-byte header encoding the block hash covers (all integers little-endian). */
  function headerBytes(h) {
    const out = concat([
      le(h.version, 4, 'version'),
      le(h.bits, 4, 'bits'),
      le(h.height, 8, 'height'),
      fixedHex(h.prev_hash, 32, 'prev_hash'),
      fixedHex(h.records_root, 32, 'records_root'),
      fixedHex(h.miner, 32, 'miner'),
      le(h.timestamp, 8, 'timestamp'),
      le(h.record_count, 4, 'record_count'),
      le(h.records_size, 4, 'records_size'),
      le(h.nonce, 8, 'nonce'),
    ]);
    if (out.length !== 136) throw new Error('header is ' + out.length + ' bytes');
    return out;
  }

  /** A block hash: SHA-256 of the header bytes, hex. */
  function blockHash(header) {
    return hex(sha256(headerBytes(header)));
  }

  /** Leading zero bits of a hex hash, most significant bit of the first byte first. */
  function leadingZeroBits(hashHex) {
    let zeros = 0;
    for (const b of unhex(hashHex)) {
      if (b === 0) {
        zeros += 8;
        continue;
      }
      return zeros + Math.clz32(b) - 24;
    }
    return zeros;
  }

  /**
   * A block recomputed from (possibly edited) records and header fields: the commitment, the
   * header's counts, the hash and whether the proof of work still holds.
   */
  function recompute(header, records) {
    const encoded = records.map(encodeRecord);
    const fixed = Object.assign({}, header, {
      records_root: recordsRoot(records),
      record_count: records.length,
      records_size: encoded.reduce((sum, e) => sum + e.length, 0),
    });
    const hash = blockHash(fixed);
    const zeros = leadingZeroBits(hash);
    return {
      header: fixed,
      ids: records.map(recordId),
      hash,
      zeros,
      powOk: zeros >= Number(header.bits),
    };
  }

  const api = {
    sha256, hex, unhex, signingBytes, encodeRecord, recordId, recordsRoot, headerBytes,
    blockHash, leadingZeroBits, recompute,
  };
  root.MonkeyChain = api;
  if (typeof module !== 'undefined' && module.exports) module.exports = api;
})(typeof window !== 'undefined' ? window : globalThis);
