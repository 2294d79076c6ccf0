import { CreateBucketCommand, CreateMultipartUploadCommand, GetObjectCommand, HeadObjectCommand, ListBucketsCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import zlib from 'node:zlib';
import t from 'tap';
import { release } from '../bench/corpus.js';
import { runMigrate } from '../src/cli/migrate.js';
import { available, creds, expectOk, rcloneEnv, run, sdk } from './helpers/clients.js';
import { dgCliAvailable, extractCli } from './helpers/dg-cli.js';
import { motoAvailable, MOTO_CREDS, startMoto } from './helpers/moto.js';
import { startProxy, tempDir } from './helpers/proxy.js';

// Buckets in the DeltaGlider CLI's layout (backend.cli_buckets), with the
// real CLI as the other side: what it writes, every client reads through the
// proxy byte-exact; what the proxy writes there, the CLI reads; the
// migration into the native format verifies every object.

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const skip = (await motoAvailable()) || (await dgCliAvailable());

async function body(c: S3Client, Bucket: string, Key: string, Range?: string): Promise<Buffer> {
  const r = await c.send(new GetObjectCommand({ Bucket, Key, Range }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

/** A gzip stream whose header records an mtime, as gzip of a named file does: `gzip -n` cannot write it again. */
function gzipWithMtime(data: Buffer): Buffer {
  const g = zlib.gzipSync(data, { level: 9 });
  g.writeUInt32LE(1_700_000_000, 4);
  return g;
}

t.test('DeltaGlider CLI layout', { skip }, async (t) => {
  const moto = await startMoto(t);
  const native = await moto.backend('proxy-native');
  await moto.client.send(new CreateBucketCommand({ Bucket: 'cli-data' }));
  const proxy = await startProxy(t, { ...native, cliBuckets: ['releases=cli-data'], metricsToken: 'cli-scrape' });
  const c = sdk(proxy.url);
  t.teardown(() => c.destroy());
  const dir = await tempDir(t, 'dgp-cli-layout-');
  const cli = await extractCli(dir, moto.endpoint, MOTO_CREDS);

  // Fixtures: two releases (a delta), a text file (direct), gzip files.
  const files: Record<string, Buffer> = {
    'v1.zip': release('zip', 1, 0.25),
    'v2.zip': release('zip', 2, 0.25),
    'notes.txt': Buffer.from('release notes\n'),
    // The CLI names what it stores after the local file, whatever the destination key.
    'top.txt': Buffer.from('release notes\n'),
  };
  const tarA = release('tar', 1, 0.25);
  const tarB = release('tar', 2, 0.25);
  const gnu = async (data: Buffer, name: string) => {
    await fsp.writeFile(path.join(dir, name.replace(/\.gz$/, '')), data);
    await execa('gzip', ['-n', '-6', '-f', path.join(dir, name.replace(/\.gz$/, ''))]);
    return fsp.readFile(path.join(dir, name));
  };
  files['a.tar.gz'] = await gnu(tarA, 'a.tar.gz');
  files['b.tar.gz'] = await gnu(tarB, 'b.tar.gz');
  files['c.tar.gz'] = gzipWithMtime(release('tar', 3, 0.25));
  // Compressed alike, with a time in the header: rebuilt with the reference's deflate parameters and header.
  files['d1.tar.gz'] = gzipWithMtime(release('tar', 4, 0.25));
  files['d2.tar.gz'] = gzipWithMtime(release('tar', 5, 0.25));
  for (const [n, b] of Object.entries(files)) await fsp.writeFile(path.join(dir, n), b);

  const written = await cli.run(
    ['cp', path.join(dir, 'v1.zip'), 's3://cli-data/app/v1.zip'],
    ['cp', path.join(dir, 'v2.zip'), 's3://cli-data/app/v2.zip'],
    ['cp', path.join(dir, 'notes.txt'), 's3://cli-data/app/notes.txt'],
    ['cp', path.join(dir, 'top.txt'), 's3://cli-data/top.txt'],
    ['cp', path.join(dir, 'a.tar.gz'), 's3://cli-data/gz/a.tar.gz'],
    ['cp', path.join(dir, 'b.tar.gz'), 's3://cli-data/gz/b.tar.gz'],
    ['cp', path.join(dir, 'c.tar.gz'), 's3://cli-data/gz/c.tar.gz'],
    ['cp', path.join(dir, 'd1.tar.gz'), 's3://cli-data/gz2/d1.tar.gz'],
    ['cp', path.join(dir, 'd2.tar.gz'), 's3://cli-data/gz2/d2.tar.gz'],
  );
  t.same(written.map((r) => r.code), [0, 0, 0, 0, 0, 0, 0, 0, 0], written.map((r) => r.out).join('\n'));
  // A plain object nobody wrote through DeltaGlider is served too.
  await moto.client.send(new PutObjectCommand({ Bucket: 'cli-data', Key: 'plain/readme.md', Body: 'plain' }));
  const expect: Record<string, Buffer> = {
    'app/notes.txt': files['notes.txt'],
    'app/v1.zip': files['v1.zip'],
    'app/v2.zip': files['v2.zip'],
    'gz/a.tar.gz': files['a.tar.gz'],
    'gz/b.tar.gz': files['b.tar.gz'],
    'gz/c.tar.gz': files['c.tar.gz'],
    'gz2/d1.tar.gz': files['d1.tar.gz'],
    'gz2/d2.tar.gz': files['d2.tar.gz'],
    'plain/readme.md': Buffer.from('plain'),
    'top.txt': files['notes.txt'],
  };

  await t.test('listings show user keys, original sizes, the CLI timestamps', async (t) => {
    const r = await c.send(new ListObjectsV2Command({ Bucket: 'releases' }));
    t.same(r.Contents?.map((o) => [o.Key, o.Size]), Object.entries(expect).map(([k, b]) => [k, b.length]));
    const head = await moto.client.send(new HeadObjectCommand({ Bucket: 'cli-data', Key: 'app/v2.zip.delta' }));
    const created = new Date(`${head.Metadata!['dg-created-at'].replace(/Z$/, '')}Z`);
    const v2 = r.Contents!.find((o) => o.Key === 'app/v2.zip')!;
    t.equal(Math.floor(v2.LastModified!.getTime() / 1000), Math.floor(created.getTime() / 1000), 'Last-Modified is dg-created-at');
    const d = await c.send(new ListObjectsV2Command({ Bucket: 'releases', Delimiter: '/' }));
    t.same(d.CommonPrefixes?.map((p) => p.Prefix), ['app/', 'gz/', 'gz2/', 'plain/']);
    t.same(d.Contents?.map((o) => o.Key), ['top.txt']);
    const buckets = await c.send(new ListBucketsCommand({}));
    const rel = buckets.Buckets?.find((b) => b.Name === 'releases');
    t.ok(rel && rel.CreationDate!.getTime() > Date.now() - 3600_000, 'ListBuckets shows the CLI bucket with its creation date');
    const paged = await c.send(new ListObjectsV2Command({ Bucket: 'releases', MaxKeys: 2, StartAfter: 'app/notes.txt' }));
    t.same(paged.Contents?.map((o) => o.Key), ['app/v1.zip', 'app/v2.zip']);
  });

  await t.test('usage figures count what the CLI wrote: original sizes, and every stored byte', async (t) => {
    await proxy.app.engine.countCliUsage();
    let stored = 0;
    let token: string | undefined;
    do {
      const r = await moto.client.send(new ListObjectsV2Command({ Bucket: 'cli-data', ContinuationToken: token }));
      for (const o of r.Contents ?? []) if (!o.Key!.startsWith('.deltaglider/')) stored += o.Size ?? 0;
      token = r.NextContinuationToken;
    } while (token);
    const logical = Object.values(expect).reduce((n, b) => n + b.length, 0);
    t.same(proxy.app.engine.usageFigures().get('releases'), { objects: Object.keys(expect).length, logical, stored });
    t.ok(stored < logical, `deltas save bytes (${stored} of ${logical})`);
    // Deltas are sized in batches as the listing finds them (one a second):
    // batches of two, the last one short, give the same figures.
    await proxy.app.engine.countCliUsage(2);
    t.same(proxy.app.engine.usageFigures().get('releases'), { objects: Object.keys(expect).length, logical, stored }, 'counted in batches of two');
    const m = await fetch(`${proxy.url}/_/metrics`, { headers: { authorization: 'Bearer cli-scrape' } });
    t.match(await m.text(), `deltaglider_logical_bytes{bucket="releases"} ${logical}`, 'and the metrics say so');
  });

  await t.test('GET, HEAD and ranges rebuild and verify byte-exact', async (t) => {
    for (const k of ['app/v1.zip', 'app/v2.zip', 'app/notes.txt', 'top.txt', 'plain/readme.md', 'gz/a.tar.gz', 'gz/b.tar.gz', 'gz2/d1.tar.gz', 'gz2/d2.tar.gz']) {
      t.equal(sha(await body(c, 'releases', k)), sha(expect[k]), k);
    }
    const part = await body(c, 'releases', 'app/v2.zip', 'bytes=1000-1999');
    t.same(part, expect['app/v2.zip'].subarray(1000, 2000), 'range of a delta');
    const h = await c.send(new HeadObjectCommand({ Bucket: 'releases', Key: 'app/v2.zip' }));
    t.equal(h.ContentLength, expect['app/v2.zip'].length);
    t.match(h.ETag, /^"[0-9a-f]{32}-1"$/, 'a delta without a recorded MD5 has a non-MD5 ETag');
  });

  await t.test('a CLI delta of gzip that cannot be rebuilt is an error that says why', async (t) => {
    const err = await body(c, 'releases', 'gz/c.tar.gz').catch((e: Error & { Code?: string }) => e);
    t.type(err, Error);
    t.equal((err as { name?: string }).name, 'NotImplemented');
    t.match((err as Error).message, /without -D/);
  });

  await t.test('aws-cli v2 and v1, boto3, s3cmd and rclone read what the CLI wrote', async (t) => {
    const out = path.join(dir, 'out');
    await fsp.mkdir(out, { recursive: true });
    const aws = await available(['/usr/bin/aws', '--version'], 'aws-cli v2');
    if (!aws) {
      const r = await run('/usr/bin/aws', ['--endpoint-url', proxy.url, 's3', 'cp', '--recursive', 's3://releases/app/', `${out}/aws/`]);
      expectOk(t, r, 'aws s3 cp --recursive');
      for (const k of ['notes.txt', 'v1.zip', 'v2.zip']) t.equal(sha(await fsp.readFile(`${out}/aws/${k}`)), sha(expect[`app/${k}`]), `aws-cli ${k}`);
    } else t.comment(aws);
    const py = `
import sys, boto3, hashlib
from botocore.config import Config
s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', config=Config(s3={'addressing_style': 'path'}))
for o in s3.list_objects_v2(Bucket='releases', Prefix='app/')['Contents']:
    print(o['Key'], o['Size'], hashlib.sha256(s3.get_object(Bucket='releases', Key=o['Key'])['Body'].read()).hexdigest())
`;
    const b = await run('python3', ['-c', py, proxy.url]);
    expectOk(t, b, 'boto3');
    t.same(b.stdout.trim().split('\n'), ['app/notes.txt', 'app/v1.zip', 'app/v2.zip'].map((k) => `${k} ${expect[k].length} ${sha(expect[k])}`));
    const v1 = await available(['aws', '--version'], 'aws-cli v1');
    if (!v1) {
      const r = await run('aws', ['--endpoint-url', proxy.url, 's3', 'cp', 's3://releases/app/v2.zip', `${out}/v1-v2.zip`]);
      expectOk(t, r, 'aws-cli v1 s3 cp');
      t.equal(sha(await fsp.readFile(`${out}/v1-v2.zip`)), sha(expect['app/v2.zip']), 'aws-cli v1');
    } else t.comment(v1);
    const cmd = await available(['s3cmd', '--version'], 's3cmd');
    if (!cmd) {
      const cfg = path.join(dir, 's3cfg');
      await fsp.writeFile(cfg, `[default]\naccess_key = ${creds.accessKeyId}\nsecret_key = ${creds.secretAccessKey}\nhost_base = 127.0.0.1:${proxy.port}\nhost_bucket = 127.0.0.1:${proxy.port}\nuse_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n`);
      const r = await run('s3cmd', ['-c', cfg, 'get', 's3://releases/app/v2.zip', `${out}/cmd-v2.zip`]);
      expectOk(t, r, 's3cmd get');
      t.equal(sha(await fsp.readFile(`${out}/cmd-v2.zip`)), sha(expect['app/v2.zip']), 's3cmd');
    } else t.comment(cmd);
    const rc = await available(['rclone', 'version'], 'rclone');
    if (!rc) {
      const r = await run('rclone', ['copy', 'dgp:releases/app', `${out}/rclone`], { env: rcloneEnv(proxy.url) });
      expectOk(t, r, 'rclone copy');
      for (const k of ['notes.txt', 'v1.zip', 'v2.zip']) t.equal(sha(await fsp.readFile(`${out}/rclone/${k}`)), sha(expect[`app/${k}`]), `rclone ${k}`);
    } else t.comment(rc);
  });

  const v3 = release('zip', 3, 0.25);
  const big = Buffer.concat([release('zip', 4, 1), Buffer.alloc(6 << 20, 7)]);
  await t.test('what the proxy writes, the CLI reads', async (t) => {
    await c.send(new PutObjectCommand({ Bucket: 'releases', Key: 'app/v3.zip', Body: v3, ContentType: 'application/zip', Metadata: { build: '42' } }));
    await c.send(new PutObjectCommand({ Bucket: 'releases', Key: 'new/x.zip', Body: files['v1.zip'] }));
    await c.send(new PutObjectCommand({ Bucket: 'releases', Key: 'new/readme.txt', Body: 'hello' }));
    await new Upload({ client: c, params: { Bucket: 'releases', Key: 'new/big.zip', Body: big }, partSize: 5 << 20 }).done();
    const stored = await moto.client.send(new ListObjectsV2Command({ Bucket: 'cli-data', Prefix: 'new/' }));
    t.same(stored.Contents?.map((o) => o.Key), ['new/big.zip.delta', 'new/readme.txt', 'new/reference.bin', 'new/x.zip.delta'], 'the CLI layout');
    const h = await c.send(new HeadObjectCommand({ Bucket: 'releases', Key: 'app/v3.zip' }));
    t.equal(h.ContentType, 'application/zip');
    t.same(h.Metadata, { build: '42' });
    t.equal(h.ETag, `"${createHash('md5').update(v3).digest('hex')}"`);
    t.match((await c.send(new HeadObjectCommand({ Bucket: 'releases', Key: 'new/big.zip' }))).ETag, /-\d+"$/, 'multipart ETag kept');
    const r = await cli.run(
      ['cp', 's3://cli-data/app/v3.zip', path.join(dir, 'got-v3.zip')],
      ['cp', 's3://cli-data/new/x.zip', path.join(dir, 'got-x.zip')],
      ['cp', 's3://cli-data/new/big.zip', path.join(dir, 'got-big.zip')],
      ['cp', 's3://cli-data/new/readme.txt', path.join(dir, 'got-readme.txt')],
      ['ls', '-r', 's3://cli-data/'],
      ['verify', 's3://cli-data/app/v3.zip.delta'],
      // Mixed deltaspace the other way: the CLI's delta against the proxy's reference.
      ['cp', path.join(dir, 'v2.zip'), 's3://cli-data/new/v2.zip'],
    );
    t.same(r.map((x) => x.code), [0, 0, 0, 0, 0, 0, 0], r.map((x) => x.out).join('\n'));
    t.match(r[6].out, /new\/v2\.zip\.delta/, 'the CLI stored a delta against the reference the proxy seeded');
    t.equal(sha(await body(c, 'releases', 'new/v2.zip')), sha(files['v2.zip']), 'the proxy reads the CLI delta in its deltaspace');
    t.equal(sha(await fsp.readFile(path.join(dir, 'got-v3.zip'))), sha(v3));
    t.equal(sha(await fsp.readFile(path.join(dir, 'got-x.zip'))), sha(files['v1.zip']));
    t.equal(sha(await fsp.readFile(path.join(dir, 'got-big.zip'))), sha(big));
    t.equal(await fsp.readFile(path.join(dir, 'got-readme.txt'), 'utf8'), 'hello');
    t.match(r[4].out, /new\/readme\.txt/);
    t.match(r[5].out, /"valid": true/);
    t.equal(sha(await body(c, 'releases', 'new/big.zip')), sha(big), 'and the proxy reads it back');
  });

  await t.test('keys the layout cannot hold are refused', async (t) => {
    for (const Key of ['app/v9.zip.delta', 'app/reference.bin', '.deltaglider/x']) {
      const err = await c.send(new PutObjectCommand({ Bucket: 'releases', Key, Body: 'x' })).catch((e: Error) => e);
      t.equal((err as { name?: string }).name, 'InvalidArgument', Key);
    }
    const meta = await c.send(new PutObjectCommand({ Bucket: 'releases', Key: 'app/m.txt', Body: 'x', Metadata: { 'dg-file-sha256': 'x' } })).catch((e: Error) => e);
    t.equal((meta as { name?: string }).name, 'InvalidArgument', 'dg-* user metadata');
    // Within S3's 2 KB for user metadata, but not beside the layout's own records.
    const big = await c.send(new PutObjectCommand({ Bucket: 'releases', Key: 'meta/a.zip', Body: 'x', Metadata: { pad: 'p'.repeat(1900) } })).catch((e: Error) => e);
    t.equal((big as { name?: string }).name, 'MetadataTooLarge');
    const left = await moto.client.send(new ListObjectsV2Command({ Bucket: 'cli-data', Prefix: 'meta/' }));
    t.equal(left.KeyCount, 0, 'no reference seeded for a refused upload');
    // Multipart uploads are refused when they begin, not after their parts.
    for (const Key of ['app/v9.zip.delta', 'app/reference.bin', '.deltaglider/x']) {
      const err = await c.send(new CreateMultipartUploadCommand({ Bucket: 'releases', Key })).catch((e: Error) => e);
      t.equal((err as { name?: string }).name, 'InvalidArgument', `CreateMultipartUpload ${Key}`);
    }
    const mpuMeta = await c.send(new CreateMultipartUploadCommand({ Bucket: 'releases', Key: 'app/m.zip', Metadata: { 'dg-file-sha256': 'x' } })).catch((e: Error) => e);
    t.equal((mpuMeta as { name?: string }).name, 'InvalidArgument', 'CreateMultipartUpload with dg-* user metadata');
    const uploads = await c.send(new ListMultipartUploadsCommand({ Bucket: 'releases' }));
    t.same(uploads.Uploads ?? [], [], 'and no upload was begun');
  });

  await t.test('deletes keep the reference while deltas need it', async (t) => {
    const { DeleteObjectCommand } = await import('@aws-sdk/client-s3');
    await c.send(new DeleteObjectCommand({ Bucket: 'releases', Key: 'app/v1.zip' }));
    const names = async (Prefix: string) => (await moto.client.send(new ListObjectsV2Command({ Bucket: 'cli-data', Prefix }))).Contents?.map((o) => o.Key) ?? [];
    t.ok((await names('app/')).includes('app/reference.bin'), 'app/ still has deltas');
    t.equal(sha(await body(c, 'releases', 'app/v2.zip')), sha(expect['app/v2.zip']));
    for (const Key of ['new/x.zip', 'new/big.zip', 'new/v2.zip']) await c.send(new DeleteObjectCommand({ Bucket: 'releases', Key }));
    t.same(await names('new/'), ['new/readme.txt'], 'the last delta took the reference with it');
  });

  await t.test('a CLI delta whose reference is gone is an error, not NoSuchKey', async (t) => {
    const { DeleteObjectCommand } = await import('@aws-sdk/client-s3');
    const r = await cli.run(['cp', path.join(dir, 'v1.zip'), 's3://cli-data/broken/v1.zip'], ['cp', path.join(dir, 'v2.zip'), 's3://cli-data/broken/v2.zip']);
    t.same(r.map((x) => x.code), [0, 0], r.map((x) => x.out).join('\n'));
    // Removed behind the proxy's back (another tool, a lifecycle rule).
    await moto.client.send(new DeleteObjectCommand({ Bucket: 'cli-data', Key: 'broken/reference.bin' }));
    const once = sdk(proxy.url, { maxAttempts: 1 });
    t.teardown(() => once.destroy());
    const err = (await body(once, 'releases', 'broken/v2.zip').catch((e: unknown) => e)) as { name?: string; $metadata?: { httpStatusCode?: number } };
    t.equal(err.$metadata?.httpStatusCode, 500, 'the object is damaged: InternalError, the cause in the log');
    t.equal(err.name, 'InternalError');
    // HEAD reads no reference: the object is still listed and described.
    t.equal((await once.send(new HeadObjectCommand({ Bucket: 'releases', Key: 'broken/v2.zip' }))).ContentLength, files['v2.zip'].length);
    for (const Key of ['broken/v1.zip.delta', 'broken/v2.zip.delta']) await moto.client.send(new DeleteObjectCommand({ Bucket: 'cli-data', Key }));
  });

  await t.test('migration into the native format verifies every object, and resumes', async (t) => {
    const config = { ...proxy.config };
    const out: string[] = [];
    const sink = { write: (s: string) => out.push(s) };
    const progress = { write: () => true };
    t.equal(await runMigrate(config, ['s3://releases', 's3://migrated'], true, sink, progress), 1, 'the gzip object that cannot be rebuilt fails');
    const report = JSON.parse(out.join('')) as { copied: number; skipped: number; failed: number; failures: { key: string; reason: string }[] };
    t.same(report.failures.map((f) => f.key), ['gz/c.tar.gz']);
    t.match(report.failures[0].reason, /without -D/);
    const listed = await c.send(new ListObjectsV2Command({ Bucket: 'migrated' }));
    const keys = listed.Contents!.map((o) => o.Key!);
    t.same(keys, ['app/notes.txt', 'app/v2.zip', 'app/v3.zip', 'gz/a.tar.gz', 'gz/b.tar.gz', 'gz2/d1.tar.gz', 'gz2/d2.tar.gz', 'new/readme.txt', 'plain/readme.md', 'top.txt']);
    for (const k of keys) {
      const want = k === 'app/v3.zip' ? v3 : k === 'new/readme.txt' ? Buffer.from('hello') : expect[k];
      t.equal(sha(await body(c, 'migrated', k)), sha(want), `migrated ${k}`);
    }
    t.equal((await c.send(new HeadObjectCommand({ Bucket: 'migrated', Key: 'app/v3.zip' }))).Metadata?.build, '42', 'user metadata kept');
    out.length = 0;
    await runMigrate(config, ['s3://releases', 's3://migrated'], true, sink, progress);
    const again = JSON.parse(out.join('')) as { copied: number; skipped: number };
    t.same([again.copied, again.skipped], [0, keys.length], 'a second run finds everything there');

    // In place: into the native bucket of the same name, seen once the mapping goes.
    out.length = 0;
    t.equal(await runMigrate(config, ['s3://releases/app/'], true, sink, progress), 0);
    const nativeOnly = await startProxy(t, { ...native, cliBuckets: [] });
    const n = sdk(nativeOnly.url);
    t.teardown(() => n.destroy());
    const inPlace = await n.send(new ListObjectsV2Command({ Bucket: 'releases' }));
    t.same(inPlace.Contents?.map((o) => o.Key), ['app/notes.txt', 'app/v2.zip', 'app/v3.zip']);
    t.equal(sha(await body(n, 'releases', 'app/v2.zip')), sha(expect['app/v2.zip']));
  });
});
