import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { release } from './corpus.js';
import { dirBytes, fmt, peakRss, request, startProxy, table, timed } from './util.js';

// Background compaction against inline encoding (issue 11), in one run: the
// same delta-eligible PUTs under `compaction = "inline"` and "background",
// each beside direct PUTs of the same bytes; how long the background work
// takes to settle; the bytes stored once it has; and how much a stream of
// small GETs slows down while it runs.
//
//   BENCH_COMPACT_MB (default 100)  size of the large pair (random, 1 % rewritten)
//   BENCH_COMPACT_JARS (default 5)  release archives of ~14 MB (successive versions)

const MB = 1024 * 1024;
const LARGE = Number(process.env.BENCH_COMPACT_MB ?? 100) * MB;
const JARS = Number(process.env.BENCH_COMPACT_JARS ?? 5);

async function files(dir: string): Promise<number> {
  let n = 0;
  for (const e of await fsp.readdir(dir, { withFileTypes: true }).catch(() => [])) n += e.isDirectory() ? await files(path.join(dir, e.name)) : 1;
  return n;
}

async function series(work: string): Promise<{ name: string; files: string[] }[]> {
  const v1 = path.join(work, 'c-large-v1.img');
  const out = createWriteStream(v1);
  for (let left = LARGE; left > 0; left -= 16 * MB) out.write(randomBytes(Math.min(16 * MB, left)));
  await new Promise<void>((r) => out.end(() => r()));
  const v2 = path.join(work, 'c-large-v2.img');
  await fsp.copyFile(v1, v2);
  const fh = await fsp.open(v2, 'r+');
  const blocks = Math.ceil((LARGE * 0.01) / (64 * 1024));
  for (let i = 0; i < blocks; i++) await fh.write(randomBytes(64 * 1024), 0, 64 * 1024, Math.floor(((i + 0.5) / blocks) * (LARGE - 64 * 1024)));
  await fh.close();
  const jars: string[] = [];
  for (let v = 1; v <= JARS; v++) {
    const f = path.join(work, `c-app-${v}.jar`);
    await fsp.writeFile(f, release('zip', v, 2.9));
    jars.push(f);
  }
  return [
    { name: `${LARGE / MB} MB image`, files: [v1, v2] },
    { name: `${((await fsp.stat(jars[0])).size / MB).toFixed(1)} MB jars`, files: jars },
  ];
}

/** Sequential 64 KiB GETs for `ms`, or until `done()`: requests per second. */
async function smallGets(port: number, ms: number, done?: () => Promise<boolean>): Promise<number> {
  const t0 = Date.now();
  let n = 0;
  // done() is a directory walk: asked every 100 ms, not per request, so the
  // client's own work does not dilute the rate.
  let finished = false;
  let asked = t0;
  while (done ? !finished || Date.now() - t0 < 500 : Date.now() - t0 < ms) {
    await request(port, 'GET', '/cbench/small.bin');
    n++;
    if (done && Date.now() - asked >= 100) {
      asked = Date.now();
      finished = await done();
    }
  }
  return n / ((Date.now() - t0) / 1000);
}

export async function compaction(work: string): Promise<void> {
  const all = await series(work);
  const small = path.join(work, 'c-small.bin');
  await fsp.writeFile(small, randomBytes(64 * 1024));
  const rows: string[][] = [];
  const notes: string[] = [];
  for (const mode of ['inline', 'background']) {
    const data = path.join(work, `c-data-${mode}`);
    const proxy = await startProxy(data, [], { DELTAGLIDER_PROXY_COMPACTION: mode, DELTAGLIDER_PROXY_BLOB_GRACE_SECONDS: '0' });
    await request(proxy.port, 'PUT', '/cbench');
    await request(proxy.port, 'PUT', '/cbench/small.bin', small);
    await smallGets(proxy.port, 1000); // warm-up
    const idle = [await smallGets(proxy.port, 2000)];
    let during = NaN;
    for (const [si, s] of all.entries()) {
      let delta = 0;
      let direct = 0;
      let bytes = 0;
      for (const [i, f] of s.files.entries()) {
        const size = (await fsp.stat(f)).size;
        const [r1, t1] = await timed(() => request(proxy.port, 'PUT', `/cbench/s${si}/v${i}${path.extname(f)}`, f));
        const [r2, t2] = await timed(() => request(proxy.port, 'PUT', `/cbench/s${si}-direct/v${i}.raw`, f));
        if (r1.status !== 200 || r2.status !== 200) throw new Error(`PUT failed: ${r1.status} ${r2.status}`);
        // The first version seeds the reference either way; the rest are the delta PUTs.
        if (i === 0) continue;
        delta += t1;
        direct += t2;
        bytes += size;
      }
      // Background: small GETs while the compactor works (the first series), until it is done.
      const t0 = Date.now();
      const settled = async () => (await files(path.join(data, '.compact'))) === 0;
      if (mode === 'background' && Number.isNaN(during)) during = await smallGets(proxy.port, 0, settled);
      while (!(await settled())) await new Promise((r) => setTimeout(r, 50));
      const settle = (Date.now() - t0) / 1000;
      const stored = await dirBytes(path.join(data, 'cbench', `s${si}`));
      rows.push([s.name, mode, fmt(bytes / MB / delta), fmt(bytes / MB / direct), fmt(direct / delta, 2), mode === 'background' ? fmt(settle, 1) : '-', fmt(stored / MB, 2)]);
    }
    idle.push(await smallGets(proxy.port, 2000));
    const idleRate = (idle[0] + idle[1]) / 2;
    notes.push(`${mode}: proxy peak RSS ${fmt(peakRss(proxy.pid))} MB; 64 KiB GETs ${fmt(idleRate, 0)}/s idle (before and after)${mode === 'background' ? `, ${fmt(during, 0)}/s while compacting (${fmt(during / idleRate, 2)}×)` : ''}`);
    proxy.child.kill('SIGTERM');
    await proxy.child;
  }
  console.log('\nCompaction: delta-eligible PUTs encoded inline or in the background (after the first version, which seeds the reference).');
  table(['series', 'compaction', 'PUT delta MB/s', 'PUT direct MB/s', 'delta/direct', 'settle s', 'MB stored'], rows);
  for (const n of notes) console.log(n);
  console.log('delta/direct: delta-eligible PUT throughput relative to direct PUTs of the same bytes (goal >= 0.5); settle: seconds after the last PUT until every object is a delta.');
}
