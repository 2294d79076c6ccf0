import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { build } from '../src/app.js';
import { defaultConfig } from '../src/config/config.js';
import { release, type CorpusKind } from './corpus.js';

// npm run bench: the saving and the speed of the proxy on a generated release
// corpus, beside bare xdelta3 on the same files, as ratios measured in this
// one run (absolute MB/s depend on the machine; ratios travel better).
//
//   BENCH_SCALE (default 1): corpus size factor; BENCH_VERSIONS (default 5).

const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const VERSIONS = Number(process.env.BENCH_VERSIONS ?? 5);
const MB = 1024 * 1024;

function request(port: number, method: string, p: string, file?: string): Promise<{ status: number; sha: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = {};
    const go = async () => {
      if (file) headers['content-length'] = (await fsp.stat(file)).size;
      const req = http.request({ host: '127.0.0.1', port, method, path: p, headers }, (res) => {
        const h = createHash('sha256');
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          h.update(c);
          bytes += c.length;
        });
        res.on('end', () => resolve({ status: res.statusCode!, sha: h.digest('hex'), bytes }));
        res.on('error', reject);
      });
      req.on('error', reject);
      if (file) createReadStream(file).pipe(req);
      else req.end();
    };
    go().catch(reject);
  });
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = process.hrtime.bigint();
  const r = await fn();
  return [r, Number(process.hrtime.bigint() - t0) / 1e9];
}

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) n += await dirBytes(p);
    else if (!e.name.startsWith('%%')) n += (await fsp.stat(p)).size;
  }
  return n;
}

const fmt = (n: number, d = 1) => n.toFixed(d);

async function main() {
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'dgp-bench-'));
  const config = defaultConfig({ dataDir: path.join(work, 'data'), logLevel: 'warn' });
  const app = await build(config);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as { port: number }).port;
  await request(port, 'PUT', '/bench');
  const rows: string[][] = [];
  const xd = config.xdelta3Path;
  console.log(`deltaglider-proxy bench: ${VERSIONS} versions per artifact, scale ${SCALE}, ${os.cpus().length} cores, xdelta3 -${config.xdelta3Level}`);
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
    const logical = (await Promise.all(files.map((f) => fsp.stat(f)))).reduce((n, s) => n + s.size, 0);
    // Through the proxy: delta-eligible keys, then the same bytes as direct.
    let putDelta = 0;
    let putDirect = 0;
    let getDelta = 0;
    let getDirect = 0;
    for (const [i, f] of files.entries()) {
      const [r1, t1] = await timed(() => request(port, 'PUT', `/bench/${kind}/v${i + 1}.${kind}`, f));
      const [r2, t2] = await timed(() => request(port, 'PUT', `/bench/${kind}-direct/v${i + 1}.raw`, f));
      if (r1.status !== 200 || r2.status !== 200) throw new Error(`PUT failed: ${r1.status} ${r2.status}`);
      putDelta += t1;
      putDirect += t2;
    }
    for (const [i] of files.entries()) {
      const [r1, t1] = await timed(() => request(port, 'GET', `/bench/${kind}/v${i + 1}.${kind}`));
      const [r2, t2] = await timed(() => request(port, 'GET', `/bench/${kind}-direct/v${i + 1}.raw`));
      if (r1.sha !== sums[i] || r2.sha !== sums[i]) throw new Error(`GET of ${kind} v${i + 1} returned other bytes`);
      getDelta += t1;
      getDirect += t2;
    }
    const stored = await dirBytes(path.join(config.dataDir, 'bench', kind));
    // Bare xdelta3 on the same files: our flags, and the original CLI's (-9, default window).
    let encOurs = 0;
    let encOrig = 0;
    let dec = 0;
    let bytesOurs = 0;
    let bytesOrig = 0;
    const refSize = (await fsp.stat(files[0])).size;
    const win = String(Math.max(64 * MB, Math.ceil(refSize / MB) * MB));
    for (const f of files.slice(1)) {
      const out = `${f}.vcdiff`;
      const [, t1] = await timed(() => execa(xd, ['-e', '-f', '-D', '-B', win, `-${config.xdelta3Level}`, '-s', files[0], f, out]));
      encOurs += t1;
      bytesOurs += (await fsp.stat(out)).size;
      const [, t2] = await timed(() => execa(xd, ['-e', '-f', '-9', '-s', files[0], f, `${out}.orig`]));
      encOrig += t2;
      bytesOrig += (await fsp.stat(`${out}.orig`)).size;
      const [, t3] = await timed(() => execa(xd, ['-d', '-f', '-D', '-B', win, '-s', files[0], out, `${f}.dec`]));
      dec += t3;
    }
    const enc = logical - refSize;
    rows.push([
      kind,
      fmt(logical / MB),
      fmt(stored / MB, 2),
      fmt((1 - stored / logical) * 100),
      fmt(logical / MB / putDelta),
      fmt(logical / MB / putDirect),
      fmt(putDirect / putDelta, 2),
      fmt(logical / MB / getDelta),
      fmt(logical / MB / getDirect),
      fmt(getDirect / getDelta, 2),
      fmt(enc / MB / encOurs),
      fmt(enc / MB / dec),
      fmt(encOrig / encOurs, 2),
      fmt(bytesOurs / bytesOrig, 4),
    ]);
  }
  const head = ['artifact', 'MB in', 'MB stored', 'saving %', 'PUT delta MB/s', 'PUT direct MB/s', 'delta/direct', 'GET delta MB/s', 'GET direct MB/s', 'delta/direct', 'xdelta3 enc MB/s', 'xdelta3 dec MB/s', 'enc speed vs -9', 'bytes vs -9'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padStart(widths[i])).join('  ');
  console.log(line(head));
  for (const r of rows) console.log(line(r));
  console.log(`peak RSS of this process (proxy + bench client): ${fmt(process.resourceUsage().maxRSS / 1024)} MB`);
  console.log('delta/direct: throughput of delta objects relative to direct ones through the proxy (1.00 = as fast).');
  console.log('enc speed vs -9: bare xdelta3 with our flags vs the original DeltaGlider CLI flags (-9, default 64 MiB window); bytes vs -9: delta bytes, ours / theirs.');
  await app.close();
  await fsp.rm(work, { recursive: true, force: true });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
