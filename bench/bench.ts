import { execa } from 'execa';
import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { release, type CorpusKind } from './corpus.js';
import { compaction } from './compaction.js';
import { deltaGet } from './delta-get.js';
import { directPut, unrelatedPut } from './direct-put.js';
import { soak } from './soak.js';
import { listing } from './listing.js';
import { s3Listing } from './s3-listing.js';
import { small } from './small.js';
import { dirBytes, fileSha, fmt, peakRss, request, startProxy, table, timed, writeRandom } from './util.js';

// npm run bench: the saving and the speed of the proxy, beside bare xdelta3 on
// the same files, as ratios measured in this one run (absolute MB/s depend on
// the machine; ratios travel better). The proxy runs as its own process, so
// its peak RSS is its own.
//
//   BENCH_SCALE (default 1)        corpus size factor
//   BENCH_VERSIONS (default 5)     versions per artifact
//   BENCH_LARGE_MB (default 2048)  size of the large-object case; 0 skips it
//   BENCH_SOAK_SECS (default 120)  slow and hostile clients (./soak.ts); 0 skips it
//   BENCH_LIST_KEYS (default 100000) keys in the listing case (1000000 for the memory goal)
//   BENCH_S3_LIST_KEYS (default 4000) keys in the S3 backend listing case (./s3-listing.ts; needs moto_server)
//   BENCH_ONLY                     comma-separated cases to run: corpus,large,directput,deltaget,compaction,small,listing,s3listing,soak
//   BENCH_COMPACT_MB, BENCH_COMPACT_JARS  the compaction case (./compaction.ts)
//   BENCH_SMALL_SECONDS (default 4) wrk duration per small-object case

const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const VERSIONS = Number(process.env.BENCH_VERSIONS ?? 5);
const LARGE_MB = Number(process.env.BENCH_LARGE_MB ?? 2048);
const LIST_KEYS = Number(process.env.BENCH_LIST_KEYS ?? 100_000);
const S3_LIST_KEYS = Number(process.env.BENCH_S3_LIST_KEYS ?? 4000);
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : null;
const runs = (name: string) => !ONLY || ONLY.has(name);
const MB = 1024 * 1024;


/** Bare xdelta3 with the proxy's flags and with the original CLI's (-9, default window). */
async function bareXdelta(ref: string, target: string, work: string) {
  const refSize = (await fsp.stat(ref)).size;
  const win = String(Math.max(64 * MB, Math.ceil(refSize / MB) * MB));
  const out = path.join(work, 'bare.vcdiff');
  const [, enc] = await timed(() => execa('xdelta3', ['-e', '-A', '-f', '-D', '-B', win, '-9', '-s', ref, target, out]));
  const bytes = (await fsp.stat(out)).size;
  const [, orig] = await timed(() => execa('xdelta3', ['-e', '-f', '-9', '-s', ref, target, `${out}.orig`]));
  const origBytes = (await fsp.stat(`${out}.orig`)).size;
  const [, dec] = await timed(() => execa('xdelta3', ['-d', '-f', '-D', '-B', win, '-s', ref, out, `${out}.dec`]));
  await Promise.all([out, `${out}.orig`, `${out}.dec`].map((f) => fsp.rm(f, { force: true })));
  return { enc, orig, dec, bytes, origBytes };
}

async function corpus(work: string) {
  const data = path.join(work, 'data');
  const proxy = await startProxy(data);
  await request(proxy.port, 'PUT', '/bench');
  const rows: string[][] = [];
  for (const kind of ['zip', 'tar', 'sql'] as CorpusKind[]) {
    const files: string[] = [];
    const sums: string[] = [];
    for (let v = 1; v <= VERSIONS; v++) {
      const body = release(kind, v, SCALE);
      const f = path.join(work, `v${v}.${kind}`);
      await fsp.writeFile(f, body);
      files.push(f);
      sums.push(createHash('sha256').update(body).digest('hex'));
    }
    const sizes = await Promise.all(files.map(async (f) => (await fsp.stat(f)).size));
    const logical = sizes.reduce((a, b) => a + b, 0);
    let putDelta = 0, putDirect = 0, getDelta = 0, getDirect = 0;
    for (const [i, f] of files.entries()) {
      const [r1, t1] = await timed(() => request(proxy.port, 'PUT', `/bench/${kind}/v${i + 1}.${kind}`, f));
      const [r2, t2] = await timed(() => request(proxy.port, 'PUT', `/bench/${kind}-direct/v${i + 1}.raw`, f));
      if (r1.status !== 200 || r2.status !== 200) throw new Error(`PUT failed: ${r1.status} ${r2.status}`);
      putDelta += t1;
      putDirect += t2;
    }
    for (const i of files.keys()) {
      const [r1, t1] = await timed(() => request(proxy.port, 'GET', `/bench/${kind}/v${i + 1}.${kind}`));
      const [r2, t2] = await timed(() => request(proxy.port, 'GET', `/bench/${kind}-direct/v${i + 1}.raw`));
      if (r1.sha !== sums[i] || r2.sha !== sums[i]) throw new Error(`GET of ${kind} v${i + 1} returned other bytes`);
      getDelta += t1;
      getDirect += t2;
    }
    const stored = await dirBytes(path.join(data, 'bench', kind));
    let enc = 0, orig = 0, dec = 0, bytes = 0, origBytes = 0;
    for (const f of files.slice(1)) {
      const b = await bareXdelta(files[0], f, work);
      enc += b.enc;
      orig += b.orig;
      dec += b.dec;
      bytes += b.bytes;
      origBytes += b.origBytes;
    }
    const encoded = (logical - sizes[0]) / MB;
    rows.push([
      kind, fmt(logical / MB), fmt(stored / MB, 2), fmt((1 - stored / logical) * 100),
      fmt(logical / MB / putDelta), fmt(logical / MB / putDirect), fmt(putDirect / putDelta, 2),
      fmt(logical / MB / getDelta), fmt(logical / MB / getDirect), fmt(getDirect / getDelta, 2),
      fmt(encoded / enc), fmt(encoded / dec), fmt(orig / enc, 2), fmt(bytes / origBytes, 4),
    ]);
    await Promise.all(files.map((f) => fsp.rm(f)));
  }
  console.log(`\nRelease corpus: ${VERSIONS} versions per artifact (scale ${SCALE}), each changing ~1 % of files or rows.`);
  table(['artifact', 'MB in', 'MB stored', 'saving %', 'PUT delta MB/s', 'PUT direct MB/s', 'delta/direct', 'GET delta MB/s', 'GET direct MB/s', 'delta/direct', 'xdelta3 enc MB/s', 'xdelta3 dec MB/s', 'enc speed vs -9', 'bytes vs -9'], rows);
  console.log(`proxy peak RSS: ${fmt(peakRss(proxy.pid))} MB`);
  console.log('delta/direct: delta objects\' throughput through the proxy relative to direct ones (1.00 = as fast).');
  console.log('enc speed vs -9, bytes vs -9: bare xdelta3 with the proxy\'s flags against the original DeltaGlider CLI\'s (xdelta3 -e -9, default window).');
  proxy.child.kill('SIGTERM');
  await proxy.child;
}


async function large(work: string) {
  const size = LARGE_MB * MB;
  const v1 = path.join(work, 'large-v1.img');
  const v2 = path.join(work, 'large-v2.img');
  await writeRandom(v1, size);
  await fsp.copyFile(v1, v2);
  const fh = await fsp.open(v2, 'r+');
  const blocks = Math.ceil((size * 0.01) / (64 * 1024));
  for (let i = 0; i < blocks; i++) await fh.write(randomBytes(64 * 1024), 0, 64 * 1024, Math.floor(((i + 0.5) / blocks) * (size - 64 * 1024)));
  await fh.close();
  const sha2 = await fileSha(v2);
  const data = path.join(work, 'large-data');
  const proxy = await startProxy(data);
  await request(proxy.port, 'PUT', '/large');
  const [, put1] = await timed(() => request(proxy.port, 'PUT', '/large/img/v1.img', v1));
  const [r2, put2] = await timed(() => request(proxy.port, 'PUT', '/large/img/v2.img', v2));
  if (r2.status !== 200) throw new Error(`large PUT failed: ${r2.status}`);
  const [g, get2] = await timed(() => request(proxy.port, 'GET', '/large/img/v2.img'));
  if (g.sha !== sha2) throw new Error('large GET returned other bytes');
  // Again: from the decoded copy when the object fits decoded_cache_mb (docs/operations.md, "Delta objects kept decoded").
  const [g2, get2again] = await timed(() => request(proxy.port, 'GET', '/large/img/v2.img'));
  if (g2.sha !== sha2) throw new Error('large GET returned other bytes');
  const [, putRaw] = await timed(() => request(proxy.port, 'PUT', '/large/raw/v2.raw', v2));
  const [, getRaw] = await timed(() => request(proxy.port, 'GET', '/large/raw/v2.raw'));
  const rss = peakRss(proxy.pid);
  const stored = await dirBytes(path.join(data, 'large', 'img'));
  proxy.child.kill('SIGTERM');
  await proxy.child;
  await fsp.rm(data, { recursive: true, force: true });
  const bare = await bareXdelta(v1, v2, work);
  const mb = size / MB;
  console.log(`\nLarge object: ${LARGE_MB} MiB of random data and a successor with 1 % of it rewritten in 64 KiB blocks.`);
  table(
    ['case', 'seconds', 'MB/s', 'vs bare xdelta3'],
    [
      ['PUT v1 (seeds the reference)', fmt(put1, 1), fmt(mb / put1), '-'],
      ['PUT v2 (delta)', fmt(put2, 1), fmt(mb / put2), `${fmt(bare.enc / put2, 2)} (encode ${fmt(bare.enc, 1)} s)`],
      ['GET v2 (decode + verify)', fmt(get2, 1), fmt(mb / get2), `${fmt(bare.dec / get2, 2)} (decode ${fmt(bare.dec, 1)} s); first byte after ${fmt(g.ttfb * 1000, 0)} ms`],
      ['GET v2 again (decoded copy if within decoded_cache_mb)', fmt(get2again, 1), fmt(mb / get2again), `first byte after ${fmt(g2.ttfb * 1000, 0)} ms`],
      ['PUT direct', fmt(putRaw, 1), fmt(mb / putRaw), '-'],
      ['GET direct', fmt(getRaw, 1), fmt(mb / getRaw), '-'],
    ],
  );
  console.log(`stored for both versions: ${fmt(stored / MB)} MB of ${fmt((2 * size) / MB)} MB (saving ${fmt((1 - stored / (2 * size)) * 100)} %); delta bytes vs xdelta3 -9 default window: ${fmt(bare.bytes / bare.origBytes, 4)}`);
  console.log(`proxy peak RSS: ${fmt(rss)} MB (goal < 256 MB; xdelta3 runs in its own process and holds the reference window)`);
  console.log('vs bare xdelta3: bare time / proxy time for the same encode or decode (1.00 = no overhead).');
}

async function main() {
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'dgp-bench-'));
  console.log(`deltaglider-proxy bench: node ${process.version}, ${os.cpus().length} cores, ${(await execa('xdelta3', ['-V'], { all: true, reject: false })).all?.split('\n')[0]}`);
  try {
    if (runs('corpus')) await corpus(work);
    if (LARGE_MB > 0 && runs('large')) await large(work);
    if (runs('directput')) {
      await directPut(work);
      await unrelatedPut(work);
    }
    if (runs('deltaget')) await deltaGet(work);
    if (runs('compaction')) await compaction(work);
    if (runs('small')) await small(work);
    if (LIST_KEYS > 0 && runs('listing')) await listing(work, LIST_KEYS);
    if (S3_LIST_KEYS > 0 && runs('s3listing')) await s3Listing(work, S3_LIST_KEYS);
    if (Number(process.env.BENCH_SOAK_SECS ?? 120) > 0 && runs('soak')) await soak(work);
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
