import * as fsp from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import aws4 from 'aws4';
import { execa } from 'execa';
import t from 'tap';
import { defaultConfig } from '../src/config/config.js';
import { LOCK_NAME } from '../src/lifecycle/data-dir-lock.js';
import { startServer } from '../src/server.js';
import { creds } from './helpers/clients.js';
import { tempDir } from './helpers/proxy.js';
import { connect, signedHead, until } from './helpers/raw.js';

// The entry point as a process: SIGTERM drains requests in flight, cleans
// up and exits 0. TLS: HTTPS with a configured certificate.

const loader = process.execArgv.filter((a) => a.includes('typescript'));
const main = path.resolve('src/main.ts');

t.test('SIGTERM: requests in flight finish, new ones are refused, then exit 0 with nothing left', async (t) => {
  const dir = await tempDir(t);
  const dataDir = path.join(dir, 'data');
  const child = execa(process.execPath, [...loader, main, '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
    env: { DELTAGLIDER_PROXY_LOG_LEVEL: 'info', DELTAGLIDER_PROXY_SHUTDOWN_TIMEOUT_SECS: '20' },
    all: true,
    reject: false,
    timeout: 60_000,
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
  const mk = await connect(port);
  mk.socket.write(signedHead(port, 'PUT', '/drain', { 'content-length': '0' }));
  await until(() => mk.received().includes('\r\n\r\n'), 5000, 'CreateBucket');
  t.match(mk.received(), /^HTTP\/1\.1 200/);
  mk.socket.destroy();

  // An upload that takes 2 s, signalled half-way.
  const up = await connect(port);
  up.socket.write(signedHead(port, 'PUT', '/drain/slow.zip', { 'content-length': '20' }));
  up.socket.write('0123456789');
  await until(async () => (await fsp.readdir(dataDir).catch(() => [] as string[])).includes(LOCK_NAME), 5000, 'the lock');
  child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 1000));
  const late = await connect(port).then(
    () => 'connected',
    (e: NodeJS.ErrnoException) => e.code,
  );
  t.equal(late, 'ECONNREFUSED', 'no new connections once stopping');
  up.socket.write('0123456789');
  // Within the shutdown timeout set above (20 s), not a shorter guess: a
  // loaded CI machine (Node 26, the whole suite at once) once took more than 10 s.
  await until(() => up.received().includes('\r\n\r\n'), 20_000, 'the upload to be answered');
  t.match(up.received(), /^HTTP\/1\.1 200/, 'the request in flight completed');
  const r = await child;
  t.equal(r.exitCode, 0, 'exit 0');
  t.match(out, 'SIGTERM: shutting down');
  const left = await fsp.readdir(dataDir);
  t.notOk(left.includes(LOCK_NAME), 'lock released');
  t.same(await fsp.readdir(path.join(dataDir, '.deltaglider')), [], 'temp files removed');
  t.ok((await fsp.readdir(path.join(dataDir, 'drain'))).length > 0, 'the object was stored');
});

t.test('HTTPS with a configured certificate', async (t) => {
  const dir = await tempDir(t);
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  await execa('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
  const s = await startServer(defaultConfig({ logLevel: 'silent', listenAddr: '127.0.0.1:0', dataDir: path.join(dir, 'data'), tlsCertFile: cert, tlsKeyFile: key }));
  t.teardown(() => s.stop(1000));
  t.match(s.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const ca = await fsp.readFile(cert);
  const u = new URL(s.url);
  const call = (method: string, p: string, body = '') =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const signed = aws4.sign({ host: u.host, method, path: p, body, service: 's3', region: 'us-east-1' }, creds);
      const req = https.request({ host: u.hostname, port: u.port, method, path: p, headers: signed.headers as Record<string, string>, ca }, (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body: b }));
      });
      req.on('error', reject);
      req.end(body);
    });
  t.equal((await call('PUT', '/tlsbucket')).status, 200);
  t.equal((await call('PUT', '/tlsbucket/k.txt', 'over tls')).status, 200);
  t.equal((await call('GET', '/tlsbucket/k.txt')).body, 'over tls');
  // A bad key is a start-up failure that names the settings.
  await fsp.writeFile(key, 'not a key');
  const err = await startServer(defaultConfig({ logLevel: 'silent', listenAddr: '127.0.0.1:0', dataDir: path.join(dir, 'data2'), tlsCertFile: cert, tlsKeyFile: key })).catch((e: Error) => e);
  t.match((err as Error).message, /^tls_cert_file \/ tls_key_file: /);
});
