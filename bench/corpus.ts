import { crc32, deflateRawSync } from 'node:zlib';

// A generated release corpus: successive versions of a zip, a tar and a SQL
// dump, each differing from the one before by a few changed files or rows, as
// CI artifacts and nightly dumps do. Deterministic for a given seed.

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(r: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE(Math.floor(r() * 4294967296), Math.min(i, n - 4));
  return b;
}

function vocabulary(r: () => number): string[] {
  const letters = 'abcdefghijklmnopqrstuvwxyz_';
  return Array.from({ length: 4000 }, () => Array.from({ length: 2 + Math.floor(r() * 9) }, () => letters[Math.floor(r() * letters.length)]).join(''));
}

function text(r: () => number, words: string[], bytes: number): string {
  const out: string[] = [];
  let n = 0;
  while (n < bytes) {
    const line = Array.from({ length: 4 + Math.floor(r() * 10) }, () => words[Math.floor(r() * words.length)]).join(' ') + '\n';
    out.push(line);
    n += line.length;
  }
  return out.join('');
}

interface Entry {
  name: string;
  data: Buffer;
}

/** Files of a project at a version: text sources and binary resources. */
function tree(version: number, scale: number): Entry[] {
  const r = rng(42);
  const words = vocabulary(r);
  const files: Entry[] = [];
  const nText = Math.max(4, Math.round(300 * scale));
  const nBin = Math.max(2, Math.round(40 * scale));
  for (let i = 0; i < nText; i++) files.push({ name: `src/module${i % 17}/file${i}.py`, data: Buffer.from(text(r, words, 20000)) });
  for (let i = 0; i < nBin; i++) files.push({ name: `res/asset${i}.bin`, data: randomBytes(r, 50000) });
  // Each version edits ~1% of the sources and replaces one resource.
  for (let v = 2; v <= version; v++) {
    const rv = rng(1000 + v);
    for (let k = 0; k < Math.max(1, Math.round(nText / 100)); k++) {
      const f = files[Math.floor(rv() * nText)];
      const at = Math.floor(rv() * f.data.length);
      f.data = Buffer.concat([f.data.subarray(0, at), Buffer.from(`\n# v${v} change ${k}\n` + text(rv, words, 300)), f.data.subarray(at)]);
    }
    files[nText + Math.floor(rv() * nBin)].data = randomBytes(rv, 50000);
  }
  files.push({ name: 'VERSION', data: Buffer.from(`1.0.${version}\n`) });
  return files;
}

/** A zip archive (deflated entries), as `zip` or a jar tool writes one. */
export function zip(entries: Entry[], mtime = 0x5a210000): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const comp = deflateRawSync(e.data, { level: 6 });
    const crc = crc32(e.data);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(8, 8);
    lh.writeUInt32LE(mtime, 10);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(comp.length, 18);
    lh.writeUInt32LE(e.data.length, 22);
    lh.writeUInt16LE(name.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(8, 10);
    ch.writeUInt32LE(mtime, 12);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(comp.length, 20);
    ch.writeUInt32LE(e.data.length, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE(offset, 42);
    locals.push(lh, name, comp);
    central.push(ch, name);
    offset += lh.length + name.length + comp.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

/** An uncompressed ustar archive. */
export function tar(entries: Entry[], mtime: number): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const h = Buffer.alloc(512);
    h.write(e.name, 0, 100);
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(e.data.length.toString(8).padStart(11, '0') + '\0', 124);
    h.write(mtime.toString(8).padStart(11, '0') + '\0', 136);
    h.write('        ', 148);
    h.write('0', 156);
    h.write('ustar\0' + '00', 257);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    parts.push(h, e.data, Buffer.alloc((512 - (e.data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** A SQL dump whose rows change by ~1% per version. */
export function sqlDump(version: number, rows: number): Buffer {
  const r = rng(7);
  const words = vocabulary(r);
  const lines = Array.from({ length: rows }, (_, i) => `INSERT INTO events VALUES (${i}, '${words[Math.floor(r() * words.length)]}', '${text(r, words, 60).trim()}', ${Math.floor(r() * 1e9)});\n`);
  for (let v = 2; v <= version; v++) {
    const rv = rng(500 + v);
    for (let k = 0; k < Math.max(1, Math.round(rows / 100)); k++) {
      const i = Math.floor(rv() * rows);
      lines[i] = `INSERT INTO events VALUES (${i}, 'updated-v${v}', '${text(rv, words, 60).trim()}', ${Math.floor(rv() * 1e9)});\n`;
    }
  }
  return Buffer.from(`-- dump v${version}\nBEGIN;\n${lines.join('')}COMMIT;\n`);
}

export type CorpusKind = 'zip' | 'tar' | 'sql';

/**
 * Version `version` (1-based) of a release artifact. `scale` 1 gives a ~4 MB
 * zip, a ~7 MB tar and a ~12 MB SQL dump.
 */
export function release(kind: CorpusKind, version: number, scale = 1): Buffer {
  if (kind === 'sql') return sqlDump(version, Math.round(100_000 * scale));
  const files = tree(version, scale);
  return kind === 'zip' ? zip(files) : tar(files, 1_700_000_000 + version * 86400);
}
