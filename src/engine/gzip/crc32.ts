// CRC-32 as gzip trailers use it (RFC 1952 §8). Node has zlib.crc32 from 20.15 and 22.2;
// the table fallback keeps older 20.x working.
import * as zlib from 'node:zlib';

const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

let table: Uint32Array | undefined;

function tableCrc32(data: Uint8Array, value: number): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = ~value >>> 0;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** CRC-32 of `data` continuing from `value` (0 to start). */
export function crc32(data: Uint8Array, value = 0): number {
  return native ? native(data, value) : tableCrc32(data, value);
}

/** Exposed for the unit test that pins the fallback to the native result. */
export const crc32Fallback = tableCrc32;
