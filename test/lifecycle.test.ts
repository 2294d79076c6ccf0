import * as fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import t, { type Test } from 'tap';
import { defaultConfig, type Config } from '../src/config/config.js';
import { LOCK_NAME } from '../src/lifecycle/data-dir-lock.js';
import { startServer, StartupError, type RunningServer } from '../src/server.js';
import { sdk } from './helpers/clients.js';
import { tempDir } from './helpers/proxy.js';

// One instance per data dir; per-instance scratch directories, so that a
// shared tmp_dir is safe; clear one-line start-up failures.

async function start(t: Test, over: Partial<Config>, notices: string[] = []): Promise<RunningServer> {
  const s = await startServer(defaultConfig({ logLevel: 'silent', listenAddr: '127.0.0.1:0', ...over }), { notice: (m) => notices.push(m) });
  t.teardown(() => s.stop(1000));
  return s;
}

const bootId = async () => (await fsp.readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim();

t.test('a second instance on a data dir in use refuses to start and touches nothing', async (t) => {
  const dataDir = path.join(await tempDir(t), 'data');
  const first = await start(t, { dataDir });
  const s3 = sdk(first.url);
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'locked' }));
  await s3.send(new PutObjectCommand({ Bucket: 'locked', Key: 'a.zip', Body: 'one' }));
  const scratchBefore = await fsp.readdir(path.join(dataDir, '.deltaglider'));
  const err = await startServer(defaultConfig({ logLevel: 'silent', listenAddr: '127.0.0.1:0', dataDir })).then(
    () => null,
    (e: Error) => e,
  );
  t.type(err, StartupError);
  t.match(err?.message, /^data_dir \S+ is in use by another deltaglider-proxy \(pid \d+ on host \S+, started \d{4}-/);
  t.notMatch(err?.message, '\n', 'one line');
  t.same(await fsp.readdir(path.join(dataDir, '.deltaglider')), scratchBefore, 'the running instance keeps its scratch space');
  await s3.send(new PutObjectCommand({ Bucket: 'locked', Key: 'b.zip', Body: 'one!' }));
  const got = await s3.send(new GetObjectCommand({ Bucket: 'locked', Key: 'b.zip' }));
  t.equal(await got.Body!.transformToString(), 'one!', 'the first instance still serves deltas');
  await first.stop();
  await t.rejects(fsp.stat(path.join(dataDir, LOCK_NAME)), 'the lock is released at stop');
  t.same(await fsp.readdir(path.join(dataDir, '.deltaglider')), [], 'and the scratch space removed');
});

t.test('a lock whose holder is gone is taken over, with a notice', async (t) => {
  const dataDir = await tempDir(t);
  const lock = path.join(dataDir, LOCK_NAME);
  // A process of this host that no longer exists.
  await fsp.writeFile(lock, JSON.stringify({ pid: 2 ** 22 + 17, host: os.hostname(), bootId: await bootId(), startedAt: '2026-01-01T00:00:00Z', process: 'p1', instance: 'i1' }));
  const notices: string[] = [];
  const s = await start(t, { dataDir }, notices);
  t.match(notices.join('\n'), /taking over the lock of an instance that is gone \(pid 4194321 .*process 4194321 is gone\)/);
  await s.stop();
  // Another host (or a container that was pid 1 too): only its heartbeat tells.
  await fsp.writeFile(lock, JSON.stringify({ pid: 1, host: 'elsewhere', bootId: 'x', startedAt: '2026-01-01T00:00:00Z', process: 'p2', instance: 'i2' }));
  const old = new Date(Date.now() - 120_000);
  await fsp.utimes(lock, old, old);
  const notices2: string[] = [];
  await start(t, { dataDir }, notices2);
  t.match(notices2.join('\n'), /no heartbeat for \d+ s/);
});

t.test('two instances share a tmp_dir; a dead instance directory is swept', async (t) => {
  const tmpDir = await tempDir(t);
  const dead = path.join(tmpDir, `deltaglider-proxy-${os.hostname()}-4194322-aaaaaaaaaaaa`);
  await fsp.mkdir(path.join(dead, 'spool'), { recursive: true });
  await fsp.writeFile(path.join(dead, 'owner.json'), JSON.stringify({ pid: 2 ** 22 + 18, host: os.hostname(), bootId: await bootId(), startedAt: 'x', process: 'p3', instance: 'i3' }));
  await fsp.writeFile(path.join(dead, 'spool', 'upload-left-over'), 'x');
  const foreign = path.join(tmpDir, 'someone-elses-file');
  await fsp.writeFile(foreign, 'keep');
  const a = await start(t, { dataDir: await tempDir(t), tmpDir });
  await t.rejects(fsp.stat(dead), 'the dead instance directory is gone');
  const s3a = sdk(a.url);
  t.teardown(() => s3a.destroy());
  await s3a.send(new CreateBucketCommand({ Bucket: 'shared' }));
  // A upload in flight on A while B starts on the same tmp_dir.
  const big = Buffer.alloc(20 << 20, 7);
  const upload = s3a.send(new PutObjectCommand({ Bucket: 'shared', Key: 'x/big.zip', Body: big }));
  const b = await start(t, { dataDir: await tempDir(t), tmpDir });
  await upload;
  const mine = (await fsp.readdir(tmpDir)).filter((n) => n.startsWith('deltaglider-proxy-'));
  t.equal(mine.length, 2, 'one directory per instance');
  t.equal(await fsp.readFile(foreign, 'utf8'), 'keep', 'files of others are left alone');
  const s3b = sdk(b.url);
  t.teardown(() => s3b.destroy());
  await s3b.send(new CreateBucketCommand({ Bucket: 'shared' }));
  await s3b.send(new PutObjectCommand({ Bucket: 'shared', Key: 'x/big.zip', Body: big }));
  const got = await s3a.send(new GetObjectCommand({ Bucket: 'shared', Key: 'x/big.zip' }));
  t.equal((await got.Body!.transformToByteArray()).length, big.length, 'A still works');
});

t.test("another user's look-alike of a dead instance directory is left alone", { skip: process.getuid?.() !== 0 ? 'needs root, to act as another user' : false }, async (t) => {
  const tmpDir = await tempDir(t);
  const theirs = path.join(tmpDir, `deltaglider-proxy-${os.hostname()}-4194323-bbbbbbbbbbbb`);
  await fsp.mkdir(theirs);
  await fsp.writeFile(path.join(theirs, 'owner.json'), JSON.stringify({ pid: 2 ** 22 + 19, host: os.hostname(), bootId: await bootId(), startedAt: 'x', process: 'p4', instance: 'i4' }));
  // Another user could swap a link in while it is removed: not ours to judge.
  await fsp.chown(theirs, 65534, 65534);
  await start(t, { dataDir: await tempDir(t), tmpDir });
  t.ok(await fsp.stat(path.join(theirs, 'owner.json')));
});

t.test('start-up failures are one line that names the setting', async (t) => {
  const dir = await tempDir(t);
  const busy = await start(t, { dataDir: path.join(dir, 'a') });
  const port = new URL(busy.url).port;
  const inUse = await startServer(defaultConfig({ logLevel: 'silent', listenAddr: `127.0.0.1:${port}`, dataDir: path.join(dir, 'b') })).catch((e: Error) => e);
  t.match((inUse as Error).message, /^listen_addr 127\.0\.0\.1:\d+ is already in use by another process: stop it, or choose another with --listen/);
  await t.rejects(fsp.stat(path.join(dir, 'b', LOCK_NAME)), 'the lock of the failed start is released');
  await fsp.writeFile(path.join(dir, 'file'), '');
  const notDir = await startServer(defaultConfig({ logLevel: 'silent', listenAddr: '127.0.0.1:0', dataDir: path.join(dir, 'file', 'data') })).catch((e: Error) => e);
  t.match((notDir as Error).message, /^data_dir \S+ is not a directory: .*--data-dir/);
  const noCert = await startServer(defaultConfig({ logLevel: 'silent', listenAddr: '127.0.0.1:0', dataDir: path.join(dir, 'c'), tlsCertFile: '/nonexistent.pem', tlsKeyFile: '/nonexistent.key' })).catch((e: Error) => e);
  t.match((noCert as Error).message, /^tls_cert_file \/nonexistent\.pem cannot be read \(ENOENT\)/);
});
