import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { release } from '../bench/corpus.js';
import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { mapLimit } from '../src/log.js';
import { available, creds, expectOk, rcloneEnv, run, sdk } from './helpers/clients.js';
import { startProxy, tempDir } from './helpers/proxy.js';

// Every CLI and SDK of the client matrix, as a subprocess against a proxy on
// port 0: each one creates a bucket, puts two versions of a release zip and a
// small file, lists, gets byte-exact, and deletes.

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const BOTO3_SCRIPT = `
import sys, boto3, hashlib
from botocore.config import Config
url, bucket, a, b = sys.argv[1:5]
s3 = boto3.client('s3', endpoint_url=url, region_name='us-east-1', config=Config(s3={'addressing_style': 'path'}))
s3.create_bucket(Bucket=bucket)
s3.upload_file(a, bucket, 'rel/v1.zip')
with open(b, 'rb') as f:
    s3.put_object(Bucket=bucket, Key='rel/v2.zip', Body=f, Metadata={'client': 'boto3'})
s3.put_object(Bucket=bucket, Key='notes/hello world.txt', Body=b'hi there')
keys = [o['Key'] for o in s3.list_objects_v2(Bucket=bucket)['Contents']]
print('KEYS', ','.join(keys))
for k, p in (('rel/v1.zip', a), ('rel/v2.zip', b)):
    got = s3.get_object(Bucket=bucket, Key=k)['Body'].read()
    print('SHA', k, hashlib.sha256(got).hexdigest())
s3.download_file(bucket, 'rel/v2.zip', b + '.down')
print('HEAD', s3.head_object(Bucket=bucket, Key='rel/v2.zip')['Metadata'].get('client'))
s3.delete_objects(Bucket=bucket, Delete={'Objects': [{'Key': k} for k in keys]})
s3.delete_bucket(Bucket=bucket)
print('DONE')
`;

interface Files {
  dir: string;
  v1: string;
  v2: string;
  sums: { v1: string; v2: string };
}

async function corpus(t: Test): Promise<Files> {
  const dir = await tempDir(t, 'dgp-clients-');
  const a = release('zip', 1, 0.25);
  const b = release('zip', 2, 0.25);
  await fsp.writeFile(path.join(dir, 'v1.zip'), a);
  await fsp.writeFile(path.join(dir, 'v2.zip'), b);
  await fsp.writeFile(path.join(dir, 'hello world.txt'), 'hi there');
  return { dir, v1: path.join(dir, 'v1.zip'), v2: path.join(dir, 'v2.zip'), sums: { v1: sha(a), v2: sha(b) } };
}

async function fileSha(p: string): Promise<string> {
  return sha(await fsp.readFile(p));
}

async function awsCliTest(name: string, bin: string) {
  const skip = await available([bin, '--version'], name);
  t.test(name, { skip }, async (t) => {
    const proxy = await startProxy(t);
    const f = await corpus(t);
    const aws = (...args: string[]) => run(bin, ['--endpoint-url', proxy.url, ...args]);
    const ok = async (...args: string[]) => {
      const r = await aws(...args);
      expectOk(t, r, `aws ${args.join(' ')}`);
      return r.stdout;
    };
    await ok('s3', 'mb', 's3://cli-bucket');
    await ok('s3', 'cp', f.v1, 's3://cli-bucket/rel/v1.zip');
    await ok('s3', 'cp', f.v2, 's3://cli-bucket/rel/v2.zip');
    await ok('s3', 'cp', path.join(f.dir, 'hello world.txt'), 's3://cli-bucket/notes/hello world.txt');
    const ls = await ok('s3', 'ls', '--recursive', 's3://cli-bucket');
    t.match(ls, /rel\/v1\.zip/);
    t.match(ls, /notes\/hello world\.txt/);
    t.notMatch(ls, /reference\.bin|\.delta|\.meta/);
    const api = JSON.parse(await ok('s3api', 'list-objects-v2', '--bucket', 'cli-bucket', '--output', 'json')) as { Contents: { Key: string }[] };
    t.same(api.Contents.map((c) => c.Key), ['notes/hello world.txt', 'rel/v1.zip', 'rel/v2.zip']);
    await ok('s3', 'cp', 's3://cli-bucket/rel/v1.zip', `${f.dir}/down1.zip`);
    await ok('s3', 'cp', 's3://cli-bucket/rel/v2.zip', `${f.dir}/down2.zip`);
    t.equal(await fileSha(`${f.dir}/down1.zip`), f.sums.v1);
    t.equal(await fileSha(`${f.dir}/down2.zip`), f.sums.v2);
    await ok('s3api', 'head-object', '--bucket', 'cli-bucket', '--key', 'rel/v2.zip');
    await ok('s3', 'rm', '--recursive', 's3://cli-bucket');
    await ok('s3', 'rb', 's3://cli-bucket');
  });
}

await awsCliTest('aws-cli v2 (/usr/bin/aws)', '/usr/bin/aws');
await awsCliTest('aws-cli v1 (pip, aws on PATH)', 'aws');

async function boto3Test(name: string, python: string) {
  const skip = await available([python, '-c', 'import boto3'], name);
  t.test(name, { skip }, async (t) => {
    const proxy = await startProxy(t);
    const f = await corpus(t);
    const script = path.join(f.dir, 'client.py');
    await fsp.writeFile(script, BOTO3_SCRIPT);
    const r = await run(python, [script, proxy.url, 'boto-bucket', f.v1, f.v2]);
    expectOk(t, r, 'client script');
    t.match(r.stdout, 'KEYS notes/hello world.txt,rel/v1.zip,rel/v2.zip');
    t.match(r.stdout, `SHA rel/v1.zip ${f.sums.v1}`);
    t.match(r.stdout, `SHA rel/v2.zip ${f.sums.v2}`);
    t.match(r.stdout, 'HEAD boto3');
    t.match(r.stdout, 'DONE');
    t.equal(await fileSha(`${f.v2}.down`), f.sums.v2);
  });
}

await boto3Test('boto3 (pip, recent: CRC32 trailers)', 'python3');
await boto3Test("boto3 (Debian's python3-boto3)", '/usr/bin/python3');

t.test('s3cmd', { skip: await available(['s3cmd', '--version'], 's3cmd') }, async (t) => {
  const proxy = await startProxy(t);
  const f = await corpus(t);
  const cfg = path.join(f.dir, 's3cfg');
  await fsp.writeFile(
    cfg,
    `[default]\naccess_key = ${creds.accessKeyId}\nsecret_key = ${creds.secretAccessKey}\nhost_base = 127.0.0.1:${proxy.port}\nhost_bucket = 127.0.0.1:${proxy.port}\nuse_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n`,
  );
  const s3cmd = async (...args: string[]) => {
    const r = await run('s3cmd', ['-c', cfg, ...args]);
    expectOk(t, r, `s3cmd ${args.join(' ')}`);
    return r.stdout;
  };
  await s3cmd('mb', 's3://cmd-bucket');
  await s3cmd('put', f.v1, 's3://cmd-bucket/rel/v1.zip');
  await s3cmd('put', f.v2, 's3://cmd-bucket/rel/v2.zip');
  const ls = await s3cmd('ls', '--recursive', 's3://cmd-bucket');
  t.match(ls, /rel\/v1\.zip/);
  t.match(ls, /rel\/v2\.zip/);
  t.notMatch(ls, /reference\.bin|\.delta/);
  await s3cmd('get', 's3://cmd-bucket/rel/v2.zip', `${f.dir}/got2.zip`);
  t.equal(await fileSha(`${f.dir}/got2.zip`), f.sums.v2);
  await s3cmd('del', 's3://cmd-bucket/rel/v1.zip', 's3://cmd-bucket/rel/v2.zip');
  await s3cmd('rb', 's3://cmd-bucket');
});

t.test('rclone', { skip: await available(['rclone', 'version'], 'rclone') }, async (t) => {
  const proxy = await startProxy(t);
  const f = await corpus(t);
  const env = rcloneEnv(proxy.url);
  const rclone = async (...args: string[]) => {
    const r = await run('rclone', args, { env });
    expectOk(t, r, `rclone ${args.join(' ')}`);
    return r.stdout;
  };
  await rclone('mkdir', 'dgp:rc-bucket');
  await rclone('copyto', f.v1, 'dgp:rc-bucket/rel/v1.zip');
  await rclone('copyto', f.v2, 'dgp:rc-bucket/rel/v2.zip');
  const ls = await rclone('lsf', '-R', 'dgp:rc-bucket');
  t.same(ls.trim().split('\n').sort(), ['rel/', 'rel/v1.zip', 'rel/v2.zip']);
  await rclone('copyto', 'dgp:rc-bucket/rel/v2.zip', `${f.dir}/rc2.zip`);
  t.equal(await fileSha(`${f.dir}/rc2.zip`), f.sums.v2);
  await rclone('check', f.dir, 'dgp:rc-bucket/rel', '--include', 'v*.zip', '--one-way');
  await rclone('purge', 'dgp:rc-bucket');
});

const PAGES_SCRIPT = `
import sys, boto3
from botocore.config import Config
url, bucket = sys.argv[1:3]
s3 = boto3.client('s3', endpoint_url=url, region_name='us-east-1', config=Config(s3={'addressing_style': 'path'}))
keys = []
for page in s3.get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix='many/'):
    keys += [o['Key'] for o in page.get('Contents', [])]
print('V2', len(keys), len(set(keys)), keys == sorted(keys))
keys = []
for page in s3.get_paginator('list_objects').paginate(Bucket=bucket, Prefix='many/'):
    keys += [o['Key'] for o in page.get('Contents', [])]
print('V1', len(keys), len(set(keys)), keys == sorted(keys))
`;

// More keys than one page: on the S3 backend a page ends where a backend
// list call does (pages of 1000, then 999), with IsTruncated; every client
// must list each key exactly once.
t.test('listings longer than a page: every client lists each of 2,100 keys once', async (t) => {
  const proxy = await startProxy(t);
  const dir = await tempDir(t, 'dgp-pages-');
  const N = 2100;
  const keys = Array.from({ length: N }, (_, i) => `many/k-${String(i).padStart(5, '0')}.txt`);
  const client = sdk(proxy.url);
  t.teardown(() => client.destroy());
  await client.send(new CreateBucketCommand({ Bucket: 'pages' }));
  await mapLimit(keys, 16, (Key) => client.send(new PutObjectCommand({ Bucket: 'pages', Key, Body: Key })));
  const once = (got: string[], what: string) => {
    t.equal(got.length, N, `${what}: ${got.length} keys`);
    t.equal(new Set(got).size, N, `${what}: no key twice`);
  };
  const aws = (...args: string[]) => run('/usr/bin/aws', ['--endpoint-url', proxy.url, ...args]);
  if (!(await available(['/usr/bin/aws', '--version'], 'aws-cli v2'))) {
    const ls = await aws('s3', 'ls', '--recursive', 's3://pages/many/');
    expectOk(t, ls, 'aws s3 ls');
    once(ls.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).pop()!), 'aws-cli v2 s3 ls');
    const api = await aws('s3api', 'list-objects-v2', '--bucket', 'pages', '--prefix', 'many/', '--output', 'json');
    expectOk(t, api, 'aws s3api list-objects-v2');
    once((JSON.parse(api.stdout) as { Contents: { Key: string }[] }).Contents.map((c) => c.Key), 'aws-cli v2 list-objects-v2');
  }
  if (!(await available(['python3', '-c', 'import boto3'], 'boto3'))) {
    const script = path.join(dir, 'pages.py');
    await fsp.writeFile(script, PAGES_SCRIPT);
    const r = await run('python3', [script, proxy.url, 'pages']);
    expectOk(t, r, 'boto3 paginators');
    t.match(r.stdout, `V2 ${N} ${N} True`);
    t.match(r.stdout, `V1 ${N} ${N} True`);
  }
  if (!(await available(['rclone', 'version'], 'rclone'))) {
    const r = await run('rclone', ['lsf', 'dgp:pages/many'], { env: rcloneEnv(proxy.url) });
    expectOk(t, r, 'rclone lsf');
    once(r.stdout.trim().split('\n').map((k) => `many/${k}`), 'rclone lsf');
  }
  // Through the SDK, page by page: none over max-keys, none empty while truncated.
  let token: string | undefined;
  const got: string[] = [];
  for (let pages = 0; pages < 10; pages++) {
    const p = await client.send(new ListObjectsV2Command({ Bucket: 'pages', Prefix: 'many/', ContinuationToken: token }));
    const n = p.Contents?.length ?? 0;
    t.ok(n <= 1000 && (n > 0 || !p.IsTruncated), `page ${pages + 1}: ${n} keys, truncated ${p.IsTruncated}`);
    t.equal(p.KeyCount, n);
    got.push(...(p.Contents ?? []).map((c) => c.Key!));
    if (!p.IsTruncated) break;
    token = p.NextContinuationToken;
  }
  once(got, 'SDK pages');
  t.same(got, [...keys].sort(), 'in key order');
});
