import { execa } from 'execa';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { available, creds, expectOk, run } from './helpers/clients.js';
import { tempDir } from './helpers/proxy.js';
import { presignV2, presignV4, raw, signV2, signV4 } from './helpers/signing.js';

// Every client of the matrix signs and presigns against one proxy process,
// in every scheme it uses (SigV4 and SigV2, header and query); presigned URLs
// are fetched with curl. Then the proxy's log, at trace level, is searched for
// anything replayable: no signature, Authorization header, credential or
// presigned query string may appear, while the access key id does.

const loader = process.execArgv.filter((a) => a.includes('typescript'));
const main = path.resolve('src/main.ts');

const BOTO3 = `
import sys, subprocess, urllib.request, boto3
from botocore.config import Config
url, bucket, sv, upload = sys.argv[1:5]
kw = {} if sv == 'default' else {'signature_version': sv}
s3 = boto3.client('s3', endpoint_url=url, region_name='us-east-1', config=Config(s3={'addressing_style': 'path'}, **kw))
s3.create_bucket(Bucket=bucket)
s3.put_object(Bucket=bucket, Key='dir/k é+x.txt', Body=b'boto3 body', Metadata={'via': sv})
print('HEAD', s3.head_object(Bucket=bucket, Key='dir/k é+x.txt')['Metadata'].get('via'))
print('LIST', [o['Key'] for o in s3.list_objects(Bucket=bucket)['Contents']])
get = s3.generate_presigned_url('get_object', Params={'Bucket': bucket, 'Key': 'dir/k é+x.txt', 'ResponseContentDisposition': 'attachment; filename="x y.txt"'}, ExpiresIn=120)
print('GETURL', get)
r = urllib.request.urlopen(get)
print('GOT', r.read().decode(), r.headers.get('content-disposition'))
put = s3.generate_presigned_url('put_object', Params={'Bucket': bucket, 'Key': 'presigned.txt'}, ExpiresIn=120)
print('PUTURL', put)
code = subprocess.run(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-T', upload, put], capture_output=True, text=True).stdout
print('PUT', code, s3.get_object(Bucket=bucket, Key='presigned.txt')['Body'].read().decode())
s3.copy_object(Bucket=bucket, Key='copy.txt', CopySource={'Bucket': bucket, 'Key': 'dir/k é+x.txt'})
keys = [o['Key'] for o in s3.list_objects_v2(Bucket=bucket)['Contents']]
s3.delete_objects(Bucket=bucket, Delete={'Objects': [{'Key': k} for k in keys]})
s3.delete_bucket(Bucket=bucket)
print('DONE')
`;

interface Running {
  url: string;
  port: number;
  log: () => string;
}

async function startProcess(t: Test, dir: string): Promise<Running> {
  const child = execa(process.execPath, [...loader, main, '--listen', '127.0.0.1:0', '--data-dir', path.join(dir, 'data')], {
    env: { DELTAGLIDER_PROXY_ACCESS_KEY_ID: creds.accessKeyId, DELTAGLIDER_PROXY_SECRET_ACCESS_KEY: creds.secretAccessKey, DELTAGLIDER_PROXY_LOG_LEVEL: 'trace' },
    all: true,
    reject: false,
  });
  let out = '';
  t.teardown(async () => {
    child.kill('SIGTERM');
    await child;
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start within 60 s: ${out}`)), 60_000);
    child.all!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    void child.then(() => reject(new Error(`exited: ${out}`)));
  });
  return { url: `http://127.0.0.1:${port}`, port, log: () => out };
}

const skips = {
  boto3: await available(['python3', '-c', 'import boto3'], 'boto3 (pip)'),
  debianBoto3: await available(['/usr/bin/python3', '-c', 'import boto3'], "Debian's python3-boto3"),
  awsV1: await available(['aws', '--version'], 'aws-cli v1'),
  awsV2: await available(['/usr/bin/aws', '--version'], 'aws-cli v2'),
  s3cmd: await available(['s3cmd', '--version'], 's3cmd'),
  curl: await available(['curl', '--version'], 'curl'),
};

t.test('every client, every scheme, and a clean log', async (t) => {
  const dir = await tempDir(t, 'dgp-presign-');
  const proxy = await startProcess(t, dir);
  const upload = path.join(dir, 'upload.txt');
  await fsp.writeFile(upload, 'uploaded with curl');
  const urls: string[] = [];

  for (const [python, label, skip] of [['python3', 'boto3 (pip)', skips.boto3], ['/usr/bin/python3', "boto3 (Debian's)", skips.debianBoto3]] as const) {
    for (const sv of ['default', 's3', 's3v4']) {
      await t.test(`${label}, signature_version ${sv}`, { skip: skip || skips.curl }, async (t) => {
        const script = path.join(dir, 'boto.py');
        await fsp.writeFile(script, BOTO3);
        const r = await run(python, [script, proxy.url, `boto-${sv}-${python.length}`, sv, upload]);
        expectOk(t, r, 'boto3 script');
        t.match(r.stdout, `HEAD ${sv}`);
        t.match(r.stdout, "LIST ['dir/k é+x.txt']", 'botocore asks for encoding-type=url and decodes it');
        t.match(r.stdout, 'GOT boto3 body attachment; filename="x y.txt"');
        t.match(r.stdout, 'PUT 200 uploaded with curl');
        t.match(r.stdout, 'DONE');
        const get = /GETURL (\S+)/.exec(r.stdout)?.[1] ?? '';
        // In us-east-1 botocore presigns with SigV2 unless told s3v4.
        t.match(get, sv === 's3v4' ? 'X-Amz-Signature=' : 'Signature=', 'the scheme the client chose');
        urls.push(get, /PUTURL (\S+)/.exec(r.stdout)?.[1] ?? '');
      });
    }
  }

  for (const [bin, label, skip, scheme] of [['aws', 'aws-cli v1', skips.awsV1, 'AWSAccessKeyId='], ['/usr/bin/aws', 'aws-cli v2', skips.awsV2, 'X-Amz-Signature=']] as const) {
    await t.test(`${label}: s3 presign, fetched with curl`, { skip: skip || skips.curl }, async (t) => {
      const bucket = `presign-${bin.length}`;
      expectOk(t, await run(bin, ['--endpoint-url', proxy.url, 's3', 'mb', `s3://${bucket}`]), 'mb');
      expectOk(t, await run(bin, ['--endpoint-url', proxy.url, 's3', 'cp', upload, `s3://${bucket}/app/a b.txt`]), 'cp');
      const p = await run(bin, ['--endpoint-url', proxy.url, 's3', 'presign', `s3://${bucket}/app/a b.txt`, '--expires-in', '120']);
      expectOk(t, p, 'presign');
      const url = p.stdout.trim();
      t.match(url, scheme, 'the scheme the CLI chose');
      urls.push(url);
      const got = await run('curl', ['-s', '-D', '-', url]);
      t.match(got.stdout, /^HTTP\/1\.1 200/);
      t.match(got.stdout, 'uploaded with curl');
      t.match(got.stdout, /x-deltaglider-stored-as: /i, "the README's presign step");
      expectOk(t, await run(bin, ['--endpoint-url', proxy.url, 's3', 'rb', '--force', `s3://${bucket}`]), 'rb');
    });
  }

  for (const v2 of [true, false]) {
    await t.test(`s3cmd with signature_v2 = ${v2 ? 'True' : 'False'}`, { skip: skips.s3cmd || skips.curl }, async (t) => {
      const cfg = path.join(dir, `s3cfg-${v2}`);
      await fsp.writeFile(cfg, `[default]\naccess_key = ${creds.accessKeyId}\nsecret_key = ${creds.secretAccessKey}\nhost_base = 127.0.0.1:${proxy.port}\nhost_bucket = 127.0.0.1:${proxy.port}\nuse_https = False\nsignature_v2 = ${v2 ? 'True' : 'False'}\nbucket_location = us-east-1\n`);
      const s3cmd = async (...args: string[]) => {
        const r = await run('s3cmd', ['-c', cfg, ...args]);
        expectOk(t, r, `s3cmd ${args.join(' ')}`);
        return r.stdout;
      };
      const bucket = `s3cmd-${v2 ? 'v2' : 'v4'}`;
      await s3cmd('mb', `s3://${bucket}`);
      await s3cmd('put', upload, `s3://${bucket}/dir/é x.txt`, '--add-header=x-amz-meta-tool:s3cmd');
      t.match(await s3cmd('ls', '--recursive', `s3://${bucket}`), 'dir/é x.txt');
      await s3cmd('get', '--force', `s3://${bucket}/dir/é x.txt`, path.join(dir, 'got.txt'));
      t.equal(await fsp.readFile(path.join(dir, 'got.txt'), 'utf8'), 'uploaded with curl');
      const url = (await s3cmd('signurl', `s3://${bucket}/dir/é x.txt`, '+120')).trim();
      urls.push(url);
      const got = await run('curl', ['-s', url]);
      t.equal(got.stdout, 'uploaded with curl', 'signurl fetched with curl');
      await s3cmd('del', `s3://${bucket}/dir/é x.txt`);
      await s3cmd('rb', `s3://${bucket}`);
    });
  }

  await t.test('raw requests in every scheme, and refusals', async (t) => {
    const k = creds;
    const mb = signV4(proxy.url, 'PUT', '/raw-bucket', { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, k);
    t.equal((await raw(proxy.url, 'PUT', '/raw-bucket', mb)).status, 200);
    const put = signV2('PUT', '/raw-bucket/x.txt', { 'content-length': '1' }, k);
    t.equal((await raw(proxy.url, 'PUT', '/raw-bucket/x.txt', put, 'x')).status, 200);
    const v4url = presignV4(proxy.url, 'GET', '/raw-bucket/x.txt', k);
    const v2url = presignV2('GET', '/raw-bucket/x.txt', k, Math.floor(Date.now() / 1000) + 60);
    urls.push(v4url, v2url);
    t.equal((await raw(proxy.url, 'GET', v4url, {})).status, 200);
    t.equal((await raw(proxy.url, 'GET', v2url, {})).status, 200);
    // HEADs of a presigned URL: from the second on, the fast path's log line.
    const headUrl = presignV4(proxy.url, 'HEAD', '/raw-bucket/x.txt', k);
    urls.push(headUrl);
    for (let i = 0; i < 3; i++) t.equal((await raw(proxy.url, 'HEAD', headUrl, {})).status, 200, 'a presigned HEAD');
    t.equal((await raw(proxy.url, 'GET', v4url.replace('x.txt', 'y.txt'), {})).status, 403, 'tampered V4 URL');
    t.equal((await raw(proxy.url, 'GET', v2url.replace('x.txt', 'y.txt'), {})).status, 403, 'tampered V2 URL');
    t.equal((await raw(proxy.url, 'GET', '/raw-bucket/x.txt', { ...put, authorization: put.authorization.replace(/.$/, 'A') })).status, 403);
  });

  await t.test('the log', async (t) => {
    await new Promise((r) => setTimeout(r, 300));
    const log = proxy.log();
    t.match(log, `"accessKeyId":"${creds.accessKeyId}"`, 'requests name their key');
    for (const mode of ['sigv4', 'sigv4-query', 'sigv2', 'sigv2-query']) t.match(log, `"auth":"${mode}"`, `a ${mode} request was logged`);
    const heads = log.split('\n').filter((l) => l.includes('"op":"HeadObject"') && l.includes('"url":"/raw-bucket/x.txt"'));
    t.ok(heads.length >= 3, `every presigned HEAD was logged, without its query (${heads.length} lines)`);
    t.notMatch(log, creds.secretAccessKey, 'no secret');
    for (const needle of ['Signature=', 'X-Amz-Signature', 'X-Amz-Credential', 'AWSAccessKeyId', 'X-Amz-Security-Token', 'AWS4-HMAC-SHA256', `AWS ${creds.accessKeyId}:`, '/aws4_request']) {
      t.notMatch(log, needle, `no ${needle}`);
    }
    t.notMatch(log, /authorization/i, 'no Authorization header');
    let signatures = 0;
    for (const u of urls.filter(Boolean)) {
      const q = new URL(u, proxy.url).searchParams;
      for (const s of [q.get('Signature'), q.get('X-Amz-Signature')]) {
        if (!s) continue;
        signatures++;
        t.notOk(log.includes(s) || log.includes(encodeURIComponent(s)), 'a presigned signature is not in the log');
      }
    }
    t.ok(signatures >= 4, `${signatures} presigned URLs checked`);
  });
});

