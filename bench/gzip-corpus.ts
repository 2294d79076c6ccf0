// Bench for the gzip kind (issue 13): successive real npm releases, fetched with
// `npm pack` into a cache outside git, plus the same tars re-gzipped by other writers.
// Prints which writers reproduce, analyze/rebuild speed, and what xdelta3 saves on the
// .tgz files versus on their decompressed .tar contents (each version against the
// package's first, as a deltaspace reference); then the same releases through the
// engine (PUT in order, GET back verified), with the wall-clock speeds of both.
//
//   npm run build && node dist/bench/gzip-corpus.js [cacheDir] [engine]
//   (`engine`: only the pass through the engine)
//   (default cache: $GZIP_CORPUS_DIR or ~/.cache/deltaglider-gzip-corpus)
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, homedir } from 'node:os';
import { basename, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip, gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { Engine } from '../src/engine/engine.js';
import { analyzeGzip, rebuildGzip } from '../src/engine/gzip/index.js';
import { FilesystemBackend } from '../src/storage/filesystem/fs-backend.js';
import { installedImplVersion } from '../src/engine/gzip/recipe.js';

const PACKAGES: Array<[string, string[]]> = [
  ['axios', ['1.7.0', '1.7.1', '1.7.2', '1.7.3', '1.7.4']],
  ['zod', ['3.23.4', '3.23.5', '3.23.6', '3.23.7', '3.23.8']],
  ['prettier', ['3.3.0', '3.3.1', '3.3.2', '3.3.3']],
  ['lodash', ['4.17.18', '4.17.19', '4.17.20', '4.17.21']],
];

/** Single releases across npm's history (2019-2024), to see which eras reproduce. */
const SAMPLES = [
  'axios@0.19.2', 'axios@0.21.1', 'axios@0.24.0', 'axios@0.27.2', 'axios@1.2.0', 'axios@1.4.0', 'axios@1.5.0',
  'chalk@4.1.2', 'chalk@5.3.0', 'express@4.17.1', 'express@4.18.2', 'express@4.19.2',
  'semver@7.3.5', 'semver@7.5.4', 'semver@7.6.3',
];

/** Writers applied to each .tar: name, output suffix, command (null: the npm-published file). */
const WRITERS: Array<{ name: string; make: ((tar: string, out: string) => Promise<void>) | null }> = [
  { name: 'npm (as published)', make: null },
  { name: 'Node zlib.gzip (level 6)', make: async (tar, out) => writeFile(out, gzipSync(await readFile(tar))) },
  { name: 'Python gzip (level 9)', make: (tar, out) => sh('python3', ['-c', 'import gzip,sys; open(sys.argv[2],"wb").write(gzip.compress(open(sys.argv[1],"rb").read(), mtime=0))', tar, out]) },
  { name: 'GNU gzip -9', make: (tar, out) => shTo('gzip', ['-9', '-n', '-c', tar], out) },
  { name: 'GNU gzip -6', make: (tar, out) => shTo('gzip', ['-6', '-n', '-c', tar], out) },
  { name: 'pigz -6', make: (tar, out) => shTo('pigz', ['-6', '-n', '-c', tar], out) },
];

async function sh(cmd: string, args: string[]): Promise<void> {
  await execa(cmd, args, { timeout: 300_000 });
}

async function shTo(cmd: string, args: string[], out: string): Promise<void> {
  await execa(cmd, args, { timeout: 300_000, stdout: { file: out } });
}

async function size(f: string): Promise<number> {
  return (await stat(f)).size;
}

async function xdeltaSize(ref: string, target: string, out: string): Promise<number> {
  const refSize = await size(ref);
  const window = Math.max(64 * 2 ** 20, Math.ceil(refSize / 2 ** 20) * 2 ** 20);
  await execa('xdelta3', ['-e', '-A', '-f', '-D', '-B', String(window), '-9', '-s', ref, target, out], { timeout: 300_000 });
  return size(out);
}

async function fetchTgz(cache: string, pkg: string, ver: string): Promise<string> {
  const file = join(cache, `${pkg}-${ver}.tgz`);
  if (!existsSync(file)) await execa('npm', ['pack', `${pkg}@${ver}`, '--pack-destination', cache], { timeout: 300_000 });
  return file;
}

const cpuMs = (a: NodeJS.CpuUsage, b: NodeJS.CpuUsage) => (b.user - a.user + b.system - a.system) / 1000;
const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
const mbps = (bytes: number, ms: number) => `${(bytes / 2 ** 20 / (ms / 1000)).toFixed(1)} MiB/s`;

/** PUTs the releases in order into one deltaspace of a fresh engine, then GETs them back. */
async function throughEngine(dir: string, pkg: string, files: string[]): Promise<string> {
  await rm(dir, { recursive: true, force: true });
  const e = new Engine(new FilesystemBackend(join(dir, 'data')), {
    tmpDir: join(dir, 'tmp'),
    cacheDir: join(dir, 'cache'),
    cacheBytes: 256 << 20,
    maxDeltaRatio: 0.5,
    deltaExtensions: ['.tgz'],
    codec: { binary: 'xdelta3', level: 9, secondary: 'default', maxWindow: 1 << 30 },
    toolVersion: 'bench',
    maxDeltaObjectSize: 1 << 30,
    multipartMaxAgeMs: 3600_000,
  });
  await e.init();
  try {
    await e.createBucket('bench');
    let logical = 0, stored = 0, putMs = 0, getMs = 0;
    const kinds: string[] = [];
    for (const f of files) {
      const t0 = performance.now();
      const body = await e.spool(createReadStream(f));
      const meta = await e.putObject({ bucket: 'bench', key: `${pkg}/${basename(f)}`, body, headers: {}, userMetadata: {}, checksums: {} });
      await body.dispose();
      putMs += performance.now() - t0;
      logical += meta.size;
      stored += meta.stored_size + (meta.seeded_reference ? meta.size : 0);
      kinds.push(meta.kind);
    }
    for (const f of files) {
      const t0 = performance.now();
      const meta = await e.headObject('bench', `${pkg}/${basename(f)}`);
      const h = createHash('sha256');
      for await (const c of await e.openObject('bench', meta)) h.update(c as Buffer);
      getMs += performance.now() - t0;
      if (h.digest('hex') !== meta.sha256) throw new Error(`${f}: GET differs`);
    }
    const tally = [...new Set(kinds)].map((k) => `${kinds.filter((x) => x === k).length} ${k}`).join(', ');
    return `| ${pkg} (${files.length}) | ${tally} | ${(logical / 1024).toFixed(0)} KiB | ${(stored / 1024).toFixed(0)} KiB | ${pct(1 - stored / logical)} | ${mbps(logical, putMs)} | ${mbps(logical, getMs)} |`;
  } finally {
    await e.close();
    await rm(dir, { recursive: true, force: true });
  }
}

type WriterStats = Map<string, { files: number; reproduced: number; analyzeMs: number; rebuildMs: number; bytes: number; giveUpMs: number; giveUpMax: number; reasons: Set<string> }>;

function printAnalysis(writerStats: WriterStats, savings: string[]): void {
  console.log('\n| writer | files reproduced | analyze (reproduced) | rebuild | giving up (CPU ms, mean / max) | why not |');
  console.log('|---|---|---|---|---|---|');
  for (const [name, s] of writerStats) {
    const failed = s.files - s.reproduced;
    console.log(`| ${name} | ${s.reproduced}/${s.files} | ${s.reproduced ? mbps(s.bytes, s.analyzeMs) : '-'} | ${s.reproduced ? mbps(s.bytes, s.rebuildMs) : '-'} | ${failed ? `${(s.giveUpMs / failed).toFixed(0)} / ${s.giveUpMax.toFixed(0)}` : '-'} | ${[...s.reasons].join('; ')} |`);
  }
  console.log('\n(speeds: decompressed MiB per CPU second, one core; the run is single-threaded)\n');
  console.log('| package | versions | later versions reproduced | reference .tgz / .tar | later versions: xdelta3 on .tgz saves | later versions: gzip kind (.tar delta + recipe) saves | all versions, today | all versions, gzip kind |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const l of savings) console.log(l);

}

async function main(): Promise<void> {
  const cache = process.argv[2] ?? process.env.GZIP_CORPUS_DIR ?? join(homedir(), '.cache', 'deltaglider-gzip-corpus');
  const tmp = join(cache, 'tmp');
  await mkdir(tmp, { recursive: true });
  const writerStats: WriterStats = new Map();
  const savings: string[] = [];
  const engineOnly = process.argv[3] === 'engine';
  for (const [pkg, versions] of engineOnly ? [] : PACKAGES) {
    const tars: string[] = [];
    const byWriter = new Map<string, string[]>();
    for (const ver of versions) {
      const tgz = await fetchTgz(cache, pkg, ver);
      const tar = tgz.replace(/\.tgz$/, '.tar');
      if (!existsSync(tar)) await pipeline(createReadStream(tgz), createGunzip(), createWriteStream(tar));
      tars.push(tar);
      for (const [i, w] of WRITERS.entries()) {
        const file = w.make ? `${tar}.w${i}.gz` : tgz;
        if (w.make && !existsSync(file)) await w.make(tar, file);
        byWriter.set(w.name, [...(byWriter.get(w.name) ?? []), file]);
        const s = writerStats.get(w.name) ?? { files: 0, reproduced: 0, analyzeMs: 0, rebuildMs: 0, bytes: 0, giveUpMs: 0, giveUpMax: 0, reasons: new Set<string>() };
        writerStats.set(w.name, s);
        const c0 = process.cpuUsage();
        let reason = '';
        const r = await analyzeGzip(file, { tmpDir: tmp, maxInflated: 2 ** 31, maxRatio: 1000, budgetMs: 60_000, onGiveUp: (why) => { reason = why; } });
        const c1 = process.cpuUsage();
        s.files++;
        if (!r) {
          s.giveUpMs += cpuMs(c0, c1);
          s.giveUpMax = Math.max(s.giveUpMax, cpuMs(c0, c1));
          if (i === 0) await rm(`${tgz}.recipe.json`, { force: true });
          s.reasons.add(reason.replace(/ at \d+/, ''));
          continue;
        }
        const h = createHash('sha256');
        for await (const c of rebuildGzip(createReadStream(r.rawFile), r.recipe)) h.update(c as Buffer);
        const c2 = process.cpuUsage();
        if (h.digest('hex') !== r.recipe.sha256) throw new Error(`rebuild of ${file} is not byte-exact`);
        s.reproduced++;
        s.analyzeMs += cpuMs(c0, c1);
        s.rebuildMs += cpuMs(c1, c2);
        s.bytes += r.rawSize;
        if (i === 0) await writeFile(`${tgz}.recipe.json`, JSON.stringify(r.recipe));
        await rm(r.rawFile, { force: true });
      }
    }
    // Savings: versions 2..n against version 1, as one deltaspace stores them.
    // A version whose gzip is not reproduced (or whose reference is not) falls back
    // to today's delta of the .tgz itself.
    const tgzs = byWriter.get(WRITERS[0].name)!;
    const recipeOf = (f: string) => `${f}.recipe.json`;
    let orig = 0, onTgz = 0, withKind = 0, reproduced = 0;
    for (let v = 1; v < tars.length; v++) {
      const o = await size(tgzs[v]);
      orig += o;
      const plain = Math.min(o, await xdeltaSize(tgzs[0], tgzs[v], join(tmp, 'd')));
      onTgz += plain;
      if (existsSync(recipeOf(tgzs[0])) && existsSync(recipeOf(tgzs[v]))) {
        reproduced++;
        withKind += Math.min(plain, (await xdeltaSize(tars[0], tars[v], join(tmp, 'd'))) + (await size(recipeOf(tgzs[v]))));
      } else withKind += plain;
    }
    const refTgz = await size(tgzs[0]);
    const refTar = await size(tars[0]);
    // Whole deltaspace: the reference is stored as uploaded (compressed) either way; the
    // gzip kind gets its decompressed bytes by inflating it.
    const all = refTgz + orig;
    savings.push(`| ${pkg} ${versions[0]}..${versions.at(-1)} | ${versions.length} | ${reproduced}/${versions.length - 1} | ${(refTgz / 1024).toFixed(0)} KiB / ${(refTar / 1024).toFixed(0)} KiB | ${pct(1 - onTgz / orig)} | ${pct(1 - withKind / orig)} | ${pct(1 - (refTgz + onTgz) / all)} | ${pct(1 - (refTgz + withKind) / all)} |`);
  }
  console.log(`\n${process.version}, pako ${installedImplVersion()}, ${cpus()[0]?.model ?? 'cpu?'}`);
  if (!engineOnly) printAnalysis(writerStats, savings);
  console.log('\nThrough the engine (filesystem backend; stored = blobs written, the reference included; speeds in MiB of .tgz per wall-clock second):\n');
  console.log('| package | stored as | logical | stored | saving | PUT | GET |');
  console.log('|---|---|---|---|---|---|---|');
  for (const [pkg, versions] of PACKAGES) {
    const files = await Promise.all(versions.map((v) => fetchTgz(cache, pkg, v)));
    console.log(await throughEngine(join(tmp, `engine-${pkg}`), pkg, files));
  }

  if (engineOnly) return;
  console.log('\n| npm release | XFL | OS | reproduced with |');
  console.log('|---|---|---|---|');
  for (const spec of SAMPLES) {
    const [pkg, ver] = spec.split('@');
    const tgz = await fetchTgz(cache, pkg, ver);
    const head = (await readFile(tgz)).subarray(0, 10);
    let why = '';
    const r = await analyzeGzip(tgz, { tmpDir: tmp, maxInflated: 2 ** 31, maxRatio: 1000, budgetMs: 60_000, onGiveUp: (w) => { why = w; } });
    const p = r?.recipe.members[0].params;
    console.log(`| ${spec} | ${head[8]} | ${head[9]} | ${p ? `level ${p.level}, memLevel ${p.memLevel}, ${p.legacyHash ? "zlib's hash" : "Chromium's hash"}` : `not reproduced (${why.replace(/ at \d+/, '')})`} |`);
    if (r) await rm(r.rawFile, { force: true });
  }
}

await main();
