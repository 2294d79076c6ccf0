import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { execa } from 'execa';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { release } from '../bench/corpus.js';
import { sdk } from './helpers/clients.js';
import { motoAvailable, startMoto } from './helpers/moto.js';
import { startProxy } from './helpers/proxy.js';
import { transpileSources } from './helpers/transpile.js';

// A rolling upgrade: an instance of the first release (storage format 1,
// commit FIRST_RELEASE, taken from git history) and this release share one
// S3 backend. The first release must refuse format 2 objects cleanly (404,
// never wrong bytes, never 5xx), and with storage_format = 1 both read
// everything either writes.

const FIRST_RELEASE = '6d9c1f8';
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function oldRelease(): Promise<string | null> {
  const root = path.join(process.cwd(), '.test-build', `old-${process.pid}`);
  const r = await execa('git', ['archive', '--format=tar', FIRST_RELEASE, 'src'], { encoding: 'buffer', reject: false });
  if (r.exitCode !== 0) return null;
  await fsp.mkdir(root, { recursive: true });
  await execa('tar', ['-x', '-C', root], { input: r.stdout });
  return transpileSources(root, path.join(root, 'js'));
}

async function startOld(dir: string, over: Record<string, unknown>): Promise<{ child: ChildProcess; s3: S3Client }> {
  const serve = path.join(dir, 'serve.js');
  await fsp.writeFile(serve, `
import { build } from './src/app.js';
import { defaultConfig } from './src/config/config.js';
const app = await build(defaultConfig({ logLevel: 'silent', ...JSON.parse(process.argv[2]) }));
await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(app.server.address().port + '\\n');
`);
  const child = spawn(process.execPath, [serve, JSON.stringify(over)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(Number(out.trim()));
    });
    child.once('exit', (code) => reject(new Error(`first release exited with ${code}`)));
  });
  return { child, s3: sdk(`http://127.0.0.1:${port}`, { maxAttempts: 1 }) };
}

t.test('the first release beside this one on one S3 backend', { skip: await motoAvailable() }, async (t) => {
  const old = await oldRelease();
  if (!old) {
    t.pass(`skipped: commit ${FIRST_RELEASE} is not in this clone's history`);
    return;
  }
  t.teardown(() => fsp.rm(path.dirname(old), { recursive: true, force: true }));
  const moto = await startMoto(t);
  const backend = await moto.backend('mixed', 'p/');
  const modern = await startProxy(t, backend);
  const rolling = await startProxy(t, { ...backend, storageFormat: 1 });
  const { child, s3: legacy } = await startOld(old, { ...backend, dataDir: path.join(old, 'data') });
  t.teardown(() => child.kill('SIGKILL'));
  const now = sdk(modern.url, { maxAttempts: 1 });
  const compat = sdk(rolling.url, { maxAttempts: 1 });
  t.teardown(() => {
    for (const c of [now, compat, legacy]) c.destroy();
  });
  await now.send(new CreateBucketCommand({ Bucket: 'shared' }));

  const v2 = release('zip', 2, 0.2);
  await now.send(new PutObjectCommand({ Bucket: 'shared', Key: 'new/app.zip', Body: v2 }));
  const status = await legacy.send(new GetObjectCommand({ Bucket: 'shared', Key: 'new/app.zip' })).then(
    () => 200,
    (err) => (err as { $metadata: { httpStatusCode: number } }).$metadata.httpStatusCode,
  );
  t.equal(status, 404, 'the first release answers 404 for a format 2 object: no wrong bytes, no 5xx');
  const listed = await legacy.send(new ListObjectsV2Command({ Bucket: 'shared' }));
  t.same(listed.Contents ?? [], [], 'and leaves it out of listings');

  const v1 = release('zip', 1, 0.2);
  await legacy.send(new PutObjectCommand({ Bucket: 'shared', Key: 'old/app.zip', Body: v1 }));
  const fromNew = await now.send(new GetObjectCommand({ Bucket: 'shared', Key: 'old/app.zip' }));
  t.equal(sha(await fromNew.Body!.transformToByteArray()), sha(v1), 'this release reads what the first release wrote');

  const v3 = release('zip', 3, 0.2);
  await compat.send(new PutObjectCommand({ Bucket: 'shared', Key: 'old/app.zip', Body: v3 }));
  const fromOld = await legacy.send(new GetObjectCommand({ Bucket: 'shared', Key: 'old/app.zip' }));
  t.equal(sha(await fromOld.Body!.transformToByteArray()), sha(v3), 'with storage_format = 1 the first release reads what this one wrote');
  await compat.send(new PutObjectCommand({ Bucket: 'shared', Key: 'new/app.zip', Body: v3 }));
  const replaced = await legacy.send(new GetObjectCommand({ Bucket: 'shared', Key: 'new/app.zip' }));
  t.equal(sha(await replaced.Body!.transformToByteArray()), sha(v3), 'even over a key that was in format 2');
});
