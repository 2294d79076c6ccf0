import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { fmt, peakRss, request, startProxy, table, timed } from './util.js';

// Listing at scale: ListObjectsV2 over one prefix holding N keys, on the
// filesystem backend. The keys are made by cloning one object the proxy
// wrote (its sidecar and blob, renamed as the proxy would name them), since
// N PUTs would take the bench longer than everything else together.

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (s: number) => `${fmt(s * 1000, 0)} ms`;

/** Etag as the filesystem backend computes it (fs-backend.ts etagOf). */
function fsEtag(fd: number): string {
  const st = fstatSync(fd, { bigint: true });
  return `${st.ino.toString(36)}-${st.mtimeNs.toString(36)}-${st.size.toString(36)}`;
}

async function populate(data: string, port: number, n: number): Promise<void> {
  const seedFile = path.join(data, '..', 'seed.txt');
  await fsp.writeFile(seedFile, 'x'.repeat(1000));
  await request(port, 'PUT', '/list');
  const r = await request(port, 'PUT', '/list/many/seed.txt', seedFile);
  if (r.status !== 200) throw new Error(`seed PUT: ${r.status}`);
  const dir = path.join(data, 'list', 'many');
  const sidecar = JSON.parse(readFileSync(path.join(dir, 'seed.txt.object.meta'), 'utf8')) as { key: string; stored: { blob: string; etag: string }[] };
  const blobName = readdirSync(dir).find((f) => f.endsWith('.direct.bin'));
  if (!blobName) throw new Error(`no blob in ${dir}: ${readdirSync(dir).join(' ')}`);
  const body = readFileSync(path.join(dir, blobName));
  for (let i = 0; i < n; i++) {
    const key = `obj-${String(i).padStart(7, '0')}.txt`;
    const blob = `${key}.${i.toString(16).padStart(16, '0')}.direct.bin`;
    const fd = openSync(path.join(dir, blob), 'w');
    writeSync(fd, body);
    const etag = fsEtag(fd);
    closeSync(fd);
    sidecar.key = `many/${key}`;
    sidecar.stored[0] = { ...sidecar.stored[0], blob: `many/${blob}`, etag };
    writeFileSync(path.join(dir, `${key}.object.meta`), JSON.stringify(sidecar, null, 1));
  }
}

function listPath(query: Record<string, string>): string {
  return `/list?${new URLSearchParams({ 'list-type': '2', prefix: 'many/', ...query }).toString()}`;
}

async function page(port: number, query: Record<string, string>): Promise<{ seconds: number; keys: number; next?: string }> {
  const [r, seconds] = await timed(() => request(port, 'GET', listPath(query)));
  if (r.status !== 200) throw new Error(`list: ${r.status} ${r.text.slice(0, 200)}`);
  const keys = r.text.split('<Key>').length - 1;
  const next = /<NextContinuationToken>([^<]+)</.exec(r.text)?.[1];
  return { seconds, keys, next };
}

export async function listing(work: string, n: number): Promise<void> {
  // BENCH_LIST_DATA: a data directory kept between runs (laid out once, when
  // it has no listing bucket yet), for measuring 1M keys more than once.
  const kept = process.env.BENCH_LIST_DATA;
  const data = kept ?? path.join(work, 'list-data');
  let proxy = await startProxy(data);
  let made = 0;
  if (!kept || !existsSync(path.join(data, 'list', 'many', `obj-${String(n - 1).padStart(7, '0')}.txt.object.meta`))) {
    if (kept) await fsp.rm(path.join(data, 'list'), { recursive: true, force: true });
    made = (await timed(() => populate(data, proxy.port, n)))[1];
  }
  proxy.child.kill('SIGTERM');
  await proxy.child;
  // Directories written in the last 2.5 s are not cached (mtime granularity).
  await new Promise((r) => setTimeout(r, 3000));
  proxy = await startProxy(data);
  const cold = await page(proxy.port, {});
  if (cold.keys !== 1000) throw new Error(`first page has ${cold.keys} keys`);
  const warm: number[] = [];
  for (let i = 0; i < 5; i++) warm.push((await page(proxy.port, {})).seconds);
  const cont: number[] = [];
  let token = cold.next;
  for (let i = 0; i < 10 && token; i++) {
    const p = await page(proxy.port, { 'continuation-token': token });
    cont.push(p.seconds);
    token = p.next;
  }
  const after: number[] = [];
  for (let i = 0; i < 10; i++) {
    const at = Math.floor(((i + 0.5) / 10) * n);
    const p = await page(proxy.port, { 'start-after': `many/obj-${String(at).padStart(7, '0')}.txt` });
    if (p.keys === 0) throw new Error(`start-after page has ${p.keys} keys`);
    after.push(p.seconds);
  }
  const delim: number[] = [];
  for (let i = 0; i < 3; i++) delim.push((await timed(() => request(proxy.port, 'GET', '/list?list-type=2&delimiter=%2F')))[1]);
  const rss = peakRss(proxy.pid);
  proxy.child.kill('SIGTERM');
  await proxy.child;
  if (!kept) await fsp.rm(data, { recursive: true, force: true });
  console.log(`\nListing: ListObjectsV2 over one prefix of ${n} keys (filesystem backend; ${fmt(made, 1)} s to lay them out). Cold: a freshly started proxy (the OS page cache is warm).`);
  table(
    ['case', 'time', 'goal'],
    [
      ['first page, cold (1000 keys)', ms(cold.seconds), '< 1000 ms'],
      ['first page, warm (median of 5)', ms(median(warm)), '< 100 ms'],
      ['continued pages (median of 10)', ms(median(cont)), '< 100 ms'],
      ['start-after anywhere (median of 10)', ms(median(after)), '< 100 ms'],
      ['delimiter "/" at the top (median of 3)', ms(median(delim)), '-'],
    ],
  );
  console.log(`proxy peak RSS: ${fmt(rss)} MB (goal < 256 MB)`);
}
