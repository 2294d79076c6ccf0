import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import * as fsp from 'node:fs/promises';
import t, { type Test } from 'tap';
import { release } from '../bench/corpus.js';
import { sdk } from './helpers/clients.js';
import { tempDir } from './helpers/proxy.js';
import { transpileSources } from './helpers/transpile.js';

// kill -9 during overwrites, deletes and reference seeding: after each crash
// the proxy restarts on the same data dir and every key reads as its last
// acknowledged version, or as the write that was in flight when it died.
// (kill -9 cannot show a missing fsync: the page cache survives the process;
// test/fsync.test.ts checks the fsyncs themselves.)

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

// Plain JavaScript, so that each restart takes a fraction of a second.
const SERVE = `
import { build } from './src/app.js';
import { defaultConfig } from './src/config/config.js';
const app = await build(defaultConfig({ logLevel: process.env.DGP_CRASH_LOG || 'silent', ...JSON.parse(process.argv[2]) }));
await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(app.server.address().port + '\\n');
`;

let build: string;

async function start(dataDir: string, extra: object = {}): Promise<{ child: ChildProcess; s3: S3Client }> {
  const child = spawn(process.execPath, [path.join(build, 'serve.js'), JSON.stringify({ dataDir, ...extra })], { stdio: ['ignore', 'pipe', 'inherit'] });
  if (process.env.DGP_CRASH_LOG) child.stdout!.on('data', (d) => process.stderr.write(d));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      // The port, on a line of its own among any log lines (DGP_CRASH_LOG=warn shows the proxy's log).
      const m = /^(\d+)$/m.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`proxy exited with ${code}`)));
  });
  return { child, s3: sdk(`http://127.0.0.1:${port}`, { maxAttempts: 1 }) };
}

function kill(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

type State = { acked: string | null; inflight: Set<string | null> };

t.before(async () => {
  build = await transpileSources();
  await fsp.writeFile(path.join(build, 'serve.js'), SERVE);
});
t.teardown(() => fsp.rm(build, { recursive: true, force: true }));

t.test('kill -9 during writes loses no acknowledged object', (t) => crashLoop(t, {}));

// Background compaction adds kills between a direct commit and its delta
// swap, mid-encode, and before the marker is removed; afterwards the work is
// finished from the markers and every key still reads as before.
t.test('kill -9 during background compaction loses no acknowledged object', (t) => crashLoop(t, { compaction: 'background' }));

async function crashLoop(t: Test, extra: object): Promise<void> {
  const zips = [1, 2, 3, 4, 5, 6].map((v) => release('zip', v, 0.2));
  const dir = await tempDir(t);
  const dataDir = path.join(dir, 'data');
  let { child, s3 } = await start(dataDir, extra);
  t.teardown(() => kill(child));
  await s3.send(new CreateBucketCommand({ Bucket: 'crash' }));
  const bodies = new Map<string, Buffer>();
  const keys = ['a/app.zip', 'a/other.zip', 'b/data.dat', 'c/tool.zip'];
  const state = new Map<string, State>(keys.map((k) => [k, { acked: null, inflight: new Set() }]));
  const deadline = Date.now() + 40_000;
  let rounds = 0;
  let writes = 0;
  while (rounds < 12 && Date.now() < deadline) {
    rounds++;
    // A new deltaspace each round: the crash can also hit reference seeding.
    const seedKey = `seed${rounds}/v.zip`;
    state.set(seedKey, { acked: null, inflight: new Set() });
    let stop = false;
    const worker = async (key: string, n: number) => {
      while (!stop) {
        const st = state.get(key)!;
        const del = n % 5 === 4;
        const body = key.endsWith('.zip') ? zips[(writes + n) % zips.length] : randomBytes(300_000);
        const id = del ? null : md5(body);
        if (id) bodies.set(id, body);
        st.inflight.add(id);
        try {
          if (del) await s3.send(new DeleteObjectCommand({ Bucket: 'crash', Key: key }));
          else await s3.send(new PutObjectCommand({ Bucket: 'crash', Key: key, Body: body }));
          if (stop) return; // an answer after the kill is not one the test can trust
          st.acked = id;
          st.inflight.clear();
          writes++;
          n++;
        } catch {
          return; // the proxy died under this request: it stays in flight
        }
      }
    };
    const before = writes;
    const workers = [...keys, seedKey].map((k, i) => worker(k, i));
    // Some writes acknowledged first (bounded: at most 5 s), then a kill at a random moment.
    for (const until = Date.now() + 5000; writes - before < 3 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, Math.random() * 600));
    stop = true;
    await kill(child);
    await Promise.all(workers);
    s3.destroy();
    ({ child, s3 } = await start(dataDir, extra));
    for (const [key, st] of state) {
      let got: string | null;
      try {
        const r = await s3.send(new GetObjectCommand({ Bucket: 'crash', Key: key }));
        got = md5(await r.Body!.transformToByteArray());
        t.equal(r.ETag?.replace(/"/g, ''), got, `${key}: the ETag names the bytes served`);
      } catch (err) {
        if ((err as { name?: string }).name !== 'NoSuchKey') throw err;
        got = null;
      }
      const ok = got === st.acked || st.inflight.has(got);
      if (!ok) t.fail(`round ${rounds}: ${key} reads ${got}, acknowledged ${st.acked}`);
      st.acked = got;
      st.inflight.clear();
    }
  }
  t.comment(`${rounds} crashes, ${writes} acknowledged writes`);
  t.ok(rounds >= 3 && writes >= rounds, 'the loop ran');
  if ('compaction' in extra) {
    // The last restart finds the work left: it settles, and nothing changed.
    const marks = path.join(dataDir, '.compact');
    const count = async (d: string): Promise<number> => {
      let n = 0;
      for (const e of await fsp.readdir(d, { withFileTypes: true }).catch(() => [])) n += e.isDirectory() ? await count(path.join(d, e.name)) : 1;
      return n;
    };
    for (const until = Date.now() + 60_000; (await count(marks)) > 0 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 200));
    if (!t.equal(await count(marks), 0, 'the compaction work left by the crashes was finished')) {
      for (const e of await fsp.readdir(marks, { recursive: true, withFileTypes: true })) if (e.isFile()) t.comment(await fsp.readFile(path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name), 'utf8'));
    }
    for (const [key, st] of state) {
      let got: string | null = null;
      try {
        got = md5(await (await s3.send(new GetObjectCommand({ Bucket: 'crash', Key: key }))).Body!.transformToByteArray());
      } catch (err) {
        if ((err as { name?: string }).name !== 'NoSuchKey') throw err;
      }
      t.equal(got, st.acked, `${key}: the same version after compaction`);
    }
  }
  s3.destroy();
}
