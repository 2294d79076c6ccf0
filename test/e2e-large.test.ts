import { CreateBucketCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import t from 'tap';
import { available, creds, expectOk, rcloneEnv, run, sdk } from './helpers/clients.js';
import { BACKEND, blobs, startProxy, tempDir } from './helpers/proxy.js';

// Large objects through every client of the matrix: each uploads a file well
// above its multipart threshold and downloads it byte-exact; aws-cli v2 also
// uploads a 1 %-changed successor, which must be stored as a delta. 300 MB on
// the filesystem backend; 40 MB on the S3 backend, whose test server keeps
// everything in memory.

const MB = BACKEND === 's3' ? 40 : 300;
const MIB = 1024 * 1024;

async function writeRandom(file: string, size: number): Promise<void> {
  const out = createWriteStream(file);
  for (let left = size; left > 0; left -= 16 * MIB) {
    if (!out.write(randomBytes(Math.min(16 * MIB, left)))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

/** A copy of `src` with ~1 % of its bytes rewritten in scattered 16 KiB blocks. */
async function writeChanged(src: string, dst: string, size: number): Promise<void> {
  await fsp.copyFile(src, dst);
  const fh = await fsp.open(dst, 'r+');
  try {
    const blocks = Math.ceil((size * 0.01) / (16 * 1024));
    for (let i = 0; i < blocks; i++) {
      const at = Math.floor(((i + 0.5) / blocks) * (size - 16 * 1024));
      await fh.write(randomBytes(16 * 1024), 0, 16 * 1024, at);
    }
  } finally {
    await fh.close();
  }
}

async function fileSha(file: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(file), h);
  return h.digest('hex');
}

async function streamSha(s: Readable): Promise<string> {
  const h = createHash('sha256');
  await pipeline(s, h);
  return h.digest('hex');
}

t.test(`${MB} MB objects through every client`, async (t) => {
  const proxy = await startProxy(t);
  const dir = await tempDir(t, 'dgp-large-');
  const big = path.join(dir, 'big.dat');
  await writeRandom(big, MB * MIB);
  const bigSha = await fileSha(big);
  const s3 = sdk(proxy.url);
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'large' }));

  await t.test('aws-cli v2: a release and its 1 %-changed successor', { skip: await available(['/usr/bin/aws', '--version'], 'aws-cli v2') }, async (t) => {
    const next = path.join(dir, 'next.dat');
    await writeChanged(big, next, MB * MIB);
    const aws = (...a: string[]) => run('/usr/bin/aws', ['--endpoint-url', proxy.url, '--only-show-errors', ...a]);
    for (const [file, key] of [[big, 'rel/app-1.0.img'], [next, 'rel/app-1.1.img']]) {
      const r = await aws('s3', 'cp', file, `s3://large/${key}`);
      expectOk(t, r, 'client script');
    }
    const down = path.join(dir, 'down.img');
    expectOk(t, await aws('s3', 'cp', 's3://large/rel/app-1.1.img', down), 'download');
    t.equal(await fileSha(down), await fileSha(next), 'successor byte-exact');
    await fsp.rm(down);
    const stored = await blobs(proxy, 'large', 'rel/');
    const delta = stored.find((b) => /^rel\/app-1\.1\.img\.[0-9a-f]{16}\.delta\.bin$/.test(b.name));
    t.ok(delta, `the successor is a delta (${stored.map((b) => b.name).join(', ')})`);
    t.ok(delta && delta.size < MB * MIB * 0.05, `delta of ${delta?.size} bytes for a ${MB} MB object`);
    await fsp.rm(next);
  });

  await t.test('aws-cli v1', { skip: await available(['aws', '--version'], 'aws-cli v1') }, async (t) => {
    const down = path.join(dir, 'v1.dat');
    expectOk(t, await run('aws', ['--endpoint-url', proxy.url, 's3', 'cp', big, 's3://large/v1/big.dat']), 'command');
    expectOk(t, await run('aws', ['--endpoint-url', proxy.url, 's3', 'cp', 's3://large/v1/big.dat', down]), 'command');
    t.equal(await fileSha(down), bigSha);
    await fsp.rm(down);
  });

  for (const [name, python] of [['boto3 (pip)', 'python3'], ["boto3 (Debian's)", '/usr/bin/python3']]) {
    await t.test(`${name} upload_file / download_file, 8 MB threshold`, { skip: await available([python, '-c', 'import boto3'], name) }, async (t) => {
      const script = `
import sys, boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
url, src, dst = sys.argv[1:4]
s3 = boto3.client('s3', endpoint_url=url, region_name='us-east-1', config=Config(s3={'addressing_style': 'path'}))
cfg = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024)
s3.upload_file(src, 'large', 'boto/big.dat', Config=cfg)
s3.download_file('large', 'boto/big.dat', dst, Config=cfg)
print('ETAG', s3.head_object(Bucket='large', Key='boto/big.dat')['ETag'])
`;
      const down = path.join(dir, 'boto.dat');
      const r = await run(python, ['-c', script, proxy.url, big, down]);
      expectOk(t, r, 'client script');
      t.match(r.stdout, /ETAG "[0-9a-f]{32}-\d+"/, 'a multipart upload');
      t.equal(await fileSha(down), bigSha);
      await fsp.rm(down);
    });
  }

  await t.test('s3cmd', { skip: await available(['s3cmd', '--version'], 's3cmd') }, async (t) => {
    const cfg = path.join(dir, 's3cfg');
    await fsp.writeFile(cfg, `[default]\naccess_key = ${creds.accessKeyId}\nsecret_key = ${creds.secretAccessKey}\nhost_base = 127.0.0.1:${proxy.port}\nhost_bucket = 127.0.0.1:${proxy.port}\nuse_https = False\nsignature_v2 = False\nmultipart_chunk_size_mb = 15\n`);
    const down = path.join(dir, 's3cmd.dat');
    expectOk(t, await run('s3cmd', ['-c', cfg, 'put', big, 's3://large/s3cmd/big.dat']), 'command');
    expectOk(t, await run('s3cmd', ['-c', cfg, 'get', 's3://large/s3cmd/big.dat', down]), 'command');
    t.equal(await fileSha(down), bigSha);
    await fsp.rm(down);
  });

  await t.test('rclone', { skip: await available(['rclone', 'version'], 'rclone') }, async (t) => {
    const env = rcloneEnv(proxy.url, { RCLONE_CONFIG_DGP_UPLOAD_CUTOFF: '16M', RCLONE_CONFIG_DGP_CHUNK_SIZE: '16M' });
    const down = path.join(dir, 'rclone.dat');
    expectOk(t, await run('rclone', ['copyto', big, 'dgp:large/rclone/big.dat'], { env }), 'command');
    expectOk(t, await run('rclone', ['copyto', 'dgp:large/rclone/big.dat', down], { env }), 'command');
    t.equal(await fileSha(down), bigSha);
    await fsp.rm(down);
  });

  await t.test('@aws-sdk/lib-storage', async (t) => {
    const up = new Upload({ client: s3, params: { Bucket: 'large', Key: 'sdk/big.dat', Body: createReadStream(big) }, partSize: 16 * MIB, queueSize: 4 });
    await up.done();
    const got = await s3.send(new GetObjectCommand({ Bucket: 'large', Key: 'sdk/big.dat' }));
    t.equal(await streamSha(got.Body as Readable), bigSha);
  });

  t.same((await blobs(proxy, '.uploads')).map((b) => b.name).filter((n) => !n.startsWith('_completed/')), [], 'no upload state left');
  const spool = proxy.app.engine.opts.tmpDir;
  if (BACKEND === 'filesystem') t.same(await fsp.readdir(spool), [], 'no temp files left');
});
