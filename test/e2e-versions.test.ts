import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { release } from '../bench/corpus.js';
import { available, expectOk, run } from './helpers/clients.js';
import { BACKEND, blobs, localData, startProxy, storedBytes, tempDir } from './helpers/proxy.js';

// The core issue's acceptance test: aws-cli v2 `s3 cp` of six versions of a
// 4 MB release zip into one prefix round-trips byte-exact, lists only the
// user's keys, and the backend holds at most a quarter of the bytes.

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

t.test('six versions of a 4 MB zip through aws-cli v2', { skip: await available(['/usr/bin/aws', '--version'], 'aws-cli v2') }, async (t) => {
  const proxy = await startProxy(t);
  const dir = await tempDir(t);
  const aws = async (...args: string[]) => {
    const r = await run('/usr/bin/aws', ['--endpoint-url', proxy.url, ...args]);
    expectOk(t, r, `aws ${args.join(' ')}`);
    return r.stdout;
  };
  await aws('s3', 'mb', 's3://releases');
  const sums: string[] = [];
  let logical = 0;
  for (let v = 1; v <= 6; v++) {
    const body = release('zip', v, 0.78);
    t.ok(body.length > 3.5e6 && body.length < 5e6, `v${v} is ~4 MB (${body.length})`);
    logical += body.length;
    sums.push(sha(body));
    await fsp.writeFile(path.join(dir, `app-1.0.${v}.zip`), body);
    await aws('s3', 'cp', path.join(dir, `app-1.0.${v}.zip`), `s3://releases/app/app-1.0.${v}.zip`);
  }
  const ls = await aws('s3', 'ls', 's3://releases/app/');
  const listed = ls.trim().split('\n').map((l) => l.trim().split(/\s+/).pop());
  t.same(listed, [1, 2, 3, 4, 5, 6].map((v) => `app-1.0.${v}.zip`), 'only the user keys are listed');
  for (let v = 1; v <= 6; v++) {
    const out = path.join(dir, `down-${v}.zip`);
    await aws('s3', 'cp', `s3://releases/app/app-1.0.${v}.zip`, out);
    t.equal(sha(await fsp.readFile(out)), sums[v - 1], `v${v} byte-exact`);
  }
  const stored = await storedBytes(proxy, 'releases');
  const saving = 1 - stored / logical;
  t.comment(`logical ${logical} B, stored ${stored} B, saving ${(saving * 100).toFixed(1)} %`);
  t.ok(saving >= 0.75, `saving ${(saving * 100).toFixed(1)} % >= 75 %`);
  const files = (await blobs(proxy, 'releases', 'app/')).map((f) => f.name);
  t.equal(files.filter((f) => f.endsWith('.delta.bin')).length, 6, 'every version is a delta');
  t.equal(files.filter((f) => f.endsWith('.meta')).length, 7, 'a sidecar each, and the reference record');
  t.equal(files.filter((f) => /^app\/reference\.[0-9a-f]{16}\.bin$/.test(f)).length, 1, 'one reference');
  if (BACKEND === 's3') t.same(await localData(proxy), [], 'nothing in the local data dir');
});
