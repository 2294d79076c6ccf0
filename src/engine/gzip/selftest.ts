// Start-up proof that the installed deflate still emits the bytes recipes were recorded
// against. The known input is generated (deterministic, ~160 KiB of text-like data with
// long and short repeats); the expected SHA-256 of each compressed stream was produced
// by real zlib (Python's zlib 1.2.13 for the classic hash, Node 20's bundled zlib for
// Chromium's) and checked against pako when this file was written; test/gzip.test.ts
// re-checks both whenever it runs. If the digests stop matching, stored gzip objects
// would not rebuild: the engine must refuse the gzip kind.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { crc32 as crc32Of } from 'node:zlib';
import { GZIP_IMPL_VERSION, installedImplVersion, newRawDeflate, type DeflateParams } from './recipe.js';
import { rebuildGzip } from './rebuild.js';

const WORDS = ('export const function return import from package version module require default ' +
  'the of and to in is that for it as with was on be by this are or an at which from have not ' +
  '{ } ( ) ; = => , . " \' \n \t // /* */ 0 1 2 42 1024 0x1f8b null undefined true false').split(' ');

/** Deterministic pseudo-text: an LCG picks words, sometimes replays earlier spans. */
export function fixtureInput(size = 160 * 1024): Buffer {
  const out = Buffer.alloc(size);
  let s = 0x2545f491;
  const rnd = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s >>> 8;
  };
  let n = 0;
  while (n < size) {
    const r = rnd() % 100;
    if (r < 8 && n > 4096) {
      // replay an earlier span, near or far, so matches of all distances occur
      const len = 3 + (rnd() % 200);
      const from = n - 1 - (rnd() % Math.min(n - 1, 40000));
      for (let i = 0; i < len && n < size; i++) out[n++] = out[from + i];
    } else if (r < 10) {
      for (let i = 0; i < 16 && n < size; i++) out[n++] = rnd() & 0xff;
    } else {
      const w = Buffer.from(WORDS[rnd() % WORDS.length] + ' ');
      n += w.copy(out, n, 0, Math.min(w.length, size - n));
    }
  }
  return out;
}

/** Parameter sets and the SHA-256 of the raw deflate stream real zlib made of fixtureInput(). */
export const FIXTURE_DIGESTS: Array<{ params: DeflateParams; sha256: string }> = [
  { params: { level: 9, memLevel: 8, strategy: 0, windowBits: 15, legacyHash: false }, sha256: '0014bafa82ad7189c201b5e9090f36d08e38b976ad7a7feb5d4cc3f9d1b88547' },
  { params: { level: 6, memLevel: 8, strategy: 0, windowBits: 15, legacyHash: false }, sha256: '1653fdc145059880e6791640f0708843191bad3fa4ae23cfcfe3cd608a123998' },
  { params: { level: 1, memLevel: 8, strategy: 0, windowBits: 15, legacyHash: false }, sha256: '51b78096915eacc0af5d80b00afe3b5a31a693e1cabe268cf9e105fd96de0211' },
  { params: { level: 4, memLevel: 9, strategy: 1, windowBits: 14, legacyHash: false }, sha256: 'd19c0158bf51651573fbae1200b36bde62274d0c303245d29e444037d8752ac5' },
  { params: { level: 3, memLevel: 7, strategy: 4, windowBits: 15, legacyHash: false }, sha256: '30e092cad916ef844ab494742116dc287b1f086d6d748f57a7757c26ff2225f1' },
  { params: { level: 5, memLevel: 8, strategy: 2, windowBits: 15, legacyHash: false }, sha256: '8f72eda2f4ed6fb77337cdbb57a62700fa1140dbff179d3fb97e7c2ccf40369f' },
  { params: { level: 9, memLevel: 8, strategy: 0, windowBits: 15, legacyHash: true }, sha256: 'dc27d5128b8df5ea9d07d60487aab1829fa90c52ab33aba1e8a8c07f1fbee8f7' },
  { params: { level: 6, memLevel: 8, strategy: 0, windowBits: 15, legacyHash: true }, sha256: '738cc7269f4eca53b3dbd26bb477034501da83bfb3388c84542243e112c7d8f6' },
  { params: { level: 1, memLevel: 8, strategy: 0, windowBits: 15, legacyHash: true }, sha256: '12bd2ae5270a21e6a26172a54d69231f20b8e807fbff3aaf545ee87947f1603a' },
  { params: { level: 4, memLevel: 9, strategy: 1, windowBits: 14, legacyHash: true }, sha256: 'b76daa190665af37b2f03f0b7c9571efe7d6c107c99d1836e9ac549e11637fb8' },
  { params: { level: 2, memLevel: 6, strategy: 0, windowBits: 12, legacyHash: true }, sha256: 'ddee113764b8ed4427a89a5fec37271fd9c7f8598e32dadf0c3a1e1f0782dfe0' },
  { params: { level: 8, memLevel: 8, strategy: 4, windowBits: 15, legacyHash: true }, sha256: '564b7d57874528bfc19d3d05d25f62974312cbb8c838b3a73468b3a11a989583' },
];

export function rawDeflate(input: Buffer, p: DeflateParams): Buffer {
  const chunks: Uint8Array[] = [];
  const d = newRawDeflate(p, 16 * 1024);
  d.onData = (c: Uint8Array) => chunks.push(c);
  d.onEnd = () => {};
  // Feed in uneven pieces: the output must not depend on how input arrives.
  for (let i = 0, k = 1; i < input.length; k++) {
    const n = (k * 7919) % 50000 + 1;
    d.push(input.subarray(i, i + n), false);
    i += n;
  }
  d.push(new Uint8Array(0), true);
  return Buffer.concat(chunks);
}

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * The self-test's result, once per process: it depends only on the deflate
 * module loaded, and costs about half a second of CPU (every Engine, and so
 * every test file's app, ran it again).
 */
let once: Promise<{ ok: boolean; reason?: string }> | undefined;

/** ok=false with the reason when pako's output drifted from what recipes assume. */
export function gzipSelfTest(): Promise<{ ok: boolean; reason?: string }> {
  return (once ??= runSelfTest());
}

async function runSelfTest(): Promise<{ ok: boolean; reason?: string }> {
  try {
    const installed = installedImplVersion();
    if (installed !== GZIP_IMPL_VERSION) {
      return { ok: false, reason: `pako ${installed} is installed, recipes are pinned to ${GZIP_IMPL_VERSION}` };
    }
    const input = fixtureInput();
    for (const { params, sha256: want } of FIXTURE_DIGESTS) {
      const got = sha256(rawDeflate(input, params));
      if (got !== want) return { ok: false, reason: `deflate ${JSON.stringify(params)} no longer reproduces the fixture` };
    }
    // And the streaming rebuild, framing included, on a two-member file.
    const half = input.length >> 1;
    const p9 = FIXTURE_DIGESTS[0].params;
    const members = [input.subarray(0, half), input.subarray(half)].map((part) => {
      const body = rawDeflate(part, p9);
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(crc32Of(part), 0);
      trailer.writeUInt32LE(part.length, 4);
      return { part, body, trailer };
    });
    const header = Buffer.from('1f8b0800000000000203', 'hex');
    const whole = Buffer.concat(members.flatMap((m) => [header, m.body, m.trailer]));
    const rebuilt: Buffer[] = [];
    const recipe = {
      format: 'gzip/1' as const,
      impl: { name: 'pako', version: GZIP_IMPL_VERSION },
      members: members.map((m) => ({
        header: header.toString('base64'),
        rawSize: m.part.length,
        deflateSize: m.body.length,
        params: p9,
        trailer: m.trailer.toString('hex'),
      })),
      tail: '',
      size: whole.length,
      sha256: sha256(whole),
    };
    for await (const c of rebuildGzip(Readable.from([input]), recipe)) rebuilt.push(c as Buffer);
    if (sha256(Buffer.concat(rebuilt)) !== recipe.sha256) return { ok: false, reason: 'streaming gzip rebuild differs' };
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: `gzip self-test failed: ${(err as Error).message}` };
  }
}
