import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { execa } from 'execa';
import path from 'node:path';
import t from 'tap';
import { sdk } from './helpers/clients.js';
import { tempDir } from './helpers/proxy.js';

// The real entry point as a process: flags, start-up checks, and what it logs.

const loader = process.execArgv.filter((a) => a.includes('typescript'));
const main = path.resolve('src/main.ts');
const node = (args: string[], env: Record<string, string> = {}) =>
  execa(process.execPath, [...loader, main, ...args], { reject: false, all: true, env: { ...env, DELTAGLIDER_PROXY_LOG_LEVEL: env.DELTAGLIDER_PROXY_LOG_LEVEL ?? 'info' }, timeout: 60_000 });

t.test('--help, --version and bad settings', async (t) => {
  const help = await node(['--help']);
  t.equal(help.exitCode, 0);
  t.match(help.stdout, '--listen HOST:PORT');
  const version = await node(['--version']);
  t.match(version.stdout, /^deltaglider-proxy \d+\.\d+\.\d+/);
  const bad = await node([], { DELTAGLIDER_PROXY_MAX_DELTA_RATIO: 'lots' });
  t.equal(bad.exitCode, 2);
  t.match(bad.stderr, 'DELTAGLIDER_PROXY_MAX_DELTA_RATIO');
  const noXdelta = await node([], { DELTAGLIDER_PROXY_XDELTA3_PATH: '/nonexistent/xdelta3' });
  t.equal(noXdelta.exitCode, 1);
  t.match(noXdelta.stderr, 'apt-get install -y xdelta3');
});

t.test('serves, and never logs a secret', async (t) => {
  const dir = await tempDir(t);
  const secret = 'very-secret-value-1234567890';
  const child = execa(process.execPath, [...loader, main, '--listen', '127.0.0.1:0', '--data-dir', path.join(dir, 'data')], {
    env: { DELTAGLIDER_PROXY_ACCESS_KEY_ID: 'AKMAIN', DELTAGLIDER_PROXY_SECRET_ACCESS_KEY: secret, DELTAGLIDER_PROXY_LOG_LEVEL: 'trace' },
    all: true,
    reject: false,
  });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.all!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    void child.then(() => reject(new Error(`exited: ${out}`)));
  });
  const s3 = sdk(`http://127.0.0.1:${port}`, { credentials: { accessKeyId: 'AKMAIN', secretAccessKey: secret } });
  await s3.send(new CreateBucketCommand({ Bucket: 'main-bucket' }));
  await s3.send(new PutObjectCommand({ Bucket: 'main-bucket', Key: 'k.zip', Body: 'body' }));
  const got = await s3.send(new GetObjectCommand({ Bucket: 'main-bucket', Key: 'k.zip' }));
  t.equal(await got.Body!.transformToString(), 'body');
  const wrong = sdk(`http://127.0.0.1:${port}`, { credentials: { accessKeyId: 'AKMAIN', secretAccessKey: 'nope' }, maxAttempts: 1 });
  await t.rejects(wrong.send(new GetObjectCommand({ Bucket: 'main-bucket', Key: 'k.zip' })));
  s3.destroy();
  wrong.destroy();
  child.kill('SIGTERM');
  const r = await child;
  t.match(out, '"msg":"request"', 'requests are logged');
  t.notMatch(r.all ?? '', secret, 'the secret is not in the logs');
  t.notMatch(r.all ?? '', 'Signature=', 'signatures are not in the logs');
});
