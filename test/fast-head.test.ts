import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { creds } from './helpers/clients.js';
import { connect, signedHead, until } from './helpers/raw.js';
import { presignV4, raw, signV4, type RawResponse } from './helpers/signing.js';
import { listFiles, startProxy, type Proxy } from './helpers/proxy.js';

// The HEAD fast path (src/http/fast-head.ts) answers a plain HeadObject
// before fastify sees it. Whatever path a HEAD takes, the client must get
// the same answer: the same headers for the same version, the full path's
// refusals and conditional answers, the newest version under concurrent
// overwrites and after pipelined writes, and the request's log line and
// metrics. Which path answered is seen through engine.getObject, which only
// the full path calls.

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Counts the full path's HEADs and GETs (engine.getObject). */
function countFullPath(p: Proxy): () => number {
  const engine = p.app.engine;
  const original = engine.getObject.bind(engine);
  let n = 0;
  engine.getObject = ((...args: Parameters<typeof engine.getObject>) => {
    n++;
    return original(...args);
  }) as typeof engine.getObject;
  return () => n;
}

const head = (p: Proxy, path: string, extra: Record<string, string> = {}) =>
  raw(p.url, 'HEAD', path, { ...signV4(p.url, 'HEAD', path, { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...extra }, creds) });
const put = (p: Proxy, path: string, body: Buffer, extra: Record<string, string> = {}) =>
  raw(p.url, 'PUT', path, signV4(p.url, 'PUT', path, { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', 'content-length': String(body.length), ...extra }, creds), body);

/** Response headers, without those that differ per response. */
function stable(r: RawResponse): Record<string, unknown> {
  const out: Record<string, unknown> = { status: r.status };
  for (const [k, v] of Object.entries(r.headers)) if (!['x-amz-request-id', 'x-amz-id-2', 'date'].includes(k)) out[k] = v;
  return out;
}

t.test('HEAD fast path', async (t) => {
  const p = await startProxy(t, { metricsPublic: true });
  const fullPath = countFullPath(p);
  t.equal((await raw(p.url, 'PUT', '/fasthead', signV4(p.url, 'PUT', '/fasthead', { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, creds))).status, 200);
  const body = randomBytes(5000);
  const meta = { 'content-type': 'text/x-fast', 'cache-control': 'max-age=60', 'content-disposition': 'attachment; filename="a b.txt"', 'x-amz-meta-colour': 'blue', 'x-amz-meta-note': 'caf\u00c3\u00a9' };
  t.equal((await put(p, '/fasthead/dir/a.txt', body, meta)).status, 200);
  // A release in a deltaspace: the second version is stored as a delta.
  const v1 = randomBytes(64 * 1024);
  const v2 = Buffer.from(v1);
  v2.fill(7, 1000, 1400);
  t.equal((await put(p, '/fasthead/rel/v1.zip', v1)).status, 200);
  t.equal((await put(p, '/fasthead/rel/v2.zip', v2)).status, 200);

  await t.test('answers as the full path does, for direct and delta objects', async (t) => {
    for (const key of ['/fasthead/dir/a.txt', '/fasthead/rel/v2.zip']) {
      await head(p, key); // reads the sidecar: the fast path needs it in memory
      const before = fullPath();
      const fast = await head(p, key);
      t.equal(fullPath(), before, `${key}: answered by the fast path`);
      // A condition that holds sends the same HEAD through the full path.
      const full = await head(p, key, { 'if-none-match': '"not-this-one"' });
      t.equal(fullPath(), before + 1, `${key}: If-None-Match takes the full path`);
      t.same(stable(fast), stable(full), `${key}: the same status and headers`);
      t.match(fast.headers['x-amz-request-id'], /^[0-9A-F]{16}$/, 'a request id');
      t.equal(fast.headers['x-amz-id-2'], fast.headers['x-amz-request-id']);
      t.equal(fast.body, '', 'no body');
    }
    const a = await head(p, '/fasthead/dir/a.txt');
    t.equal(a.headers['content-length'], '5000');
    t.equal(a.headers['content-type'], 'text/x-fast');
    t.equal(a.headers['x-amz-meta-colour'], 'blue');
    t.equal(a.headers['content-disposition'], meta['content-disposition']);
    t.equal((await head(p, '/fasthead/rel/v2.zip')).headers['x-deltaglider-stored-as'], 'delta');
  });

  await t.test('a presigned URL is answered by the fast path from its second use', async (t) => {
    const url = presignV4(p.url, 'HEAD', '/fasthead/dir/a.txt', creds);
    t.equal((await raw(p.url, 'HEAD', url, {})).status, 200);
    const before = fullPath();
    for (let i = 0; i < 5; i++) t.equal((await raw(p.url, 'HEAD', url, {})).status, 200);
    // At most one: the engine confirms a bucket again every 2 s (the full path).
    t.ok(fullPath() - before <= 1, `on the fast path (${fullPath() - before} full-path HEADs of 5)`);
    // The same URL for another method does not verify (the signature covers it).
    t.equal((await raw(p.url, 'GET', url, {})).status, 403, 'a HEAD URL used for GET');
  });

  await t.test('what asks for more than the plain answer takes the full path', async (t) => {
    const key = '/fasthead/dir/a.txt';
    const etag = (await head(p, key)).headers.etag as string;
    const cases: [string, Record<string, string>, string, number][] = [
      ['If-None-Match that matches', { 'if-none-match': etag }, key, 304],
      ['If-Match that fails', { 'if-match': '"other"' }, key, 412],
      ['If-Modified-Since in the future', { 'if-modified-since': new Date(Date.now() + 3600_000).toUTCString() }, key, 304],
      ['If-Unmodified-Since long ago', { 'if-unmodified-since': 'Mon, 01 Jan 2001 00:00:00 GMT' }, key, 412],
      ['a Range', { range: 'bytes=0-9' }, key, 206],
      ['an unsatisfiable Range', { range: 'bytes=9000-' }, key, 416],
      ['checksum mode', { 'x-amz-checksum-mode': 'ENABLED' }, key, 200],
      ['a partNumber', {}, `${key}?partNumber=1`, 206],
      ['a partNumber beyond the parts', {}, `${key}?partNumber=2`, 400],
      ['a versionId', {}, `${key}?versionId=abc`, 400],
      ['the null versionId', {}, `${key}?versionId=null`, 200],
      ['a response-* override', {}, `${key}?response-content-type=x/y`, 200],
    ];
    for (const [what, headers, path, status] of cases) {
      const before = fullPath();
      const r = await head(p, path, headers);
      t.equal(r.status, status, `${what}: ${status}`);
      // The fast path answers nothing but 200; refusals before the engine is asked (a versionId) are not counted.
      if (status < 400) t.equal(fullPath(), before + 1, `${what}: full path`);
      else t.ok(r.headers['x-amz-error-code'], `${what}: ${r.headers['x-amz-error-code']}`);
    }
    t.equal((await head(p, `${key}?response-content-type=x/y`)).headers['content-type'], 'x/y', 'the override applies');
  });

  await t.test('refusals are the full path\'s', async (t) => {
    const ok = signV4(p.url, 'HEAD', '/fasthead/dir/a.txt', { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, creds);
    const { Authorization: authz, ...rest } = ok;
    const r1 = await raw(p.url, 'HEAD', '/fasthead/dir/a.txt', { ...rest, Authorization: authz.replace(/.$/, (c) => (c === '0' ? '1' : '0')) });
    t.equal(r1.status, 403, 'a bad signature');
    t.equal(r1.headers['x-amz-error-code'], 'SignatureDoesNotMatch');
    t.equal((await raw(p.url, 'HEAD', '/fasthead/dir/a.txt', {})).status, 403, 'unsigned');
    t.equal((await raw(p.url, 'HEAD', '/fasthead/dir/a.txt', { ...ok, 'x-amz-meta-extra': 'unsigned' })).status, 403, 'an unsigned x-amz-* header');
    t.equal((await head(p, '/fasthead/dir/missing.txt')).status, 404, 'NoSuchKey');
    t.equal((await head(p, '/nosuchbucket-fast/a.txt')).status, 404, 'NoSuchBucket');
    t.equal((await head(p, `/fasthead/${'k'.repeat(1100)}`)).status, 400, 'a key too long');
    t.equal((await raw(p.url, 'HEAD', '/fasthead/a%ZZ', {})).status, 400, 'a bad escape (InvalidURI)');
    // Paths that name files outside the bucket's directory are keys like any other.
    t.equal((await head(p, '/fasthead/..%2F..%2F..%2Fetc%2Fpasswd')).status, 404, 'dot segments');
    t.equal((await head(p, '/fasthead/dir/..%2Fa.txt')).status, 404);
    // A presigned URL past its expiry is refused even though it was verified before.
    const url = presignV4(p.url, 'HEAD', '/fasthead/dir/a.txt', creds, 1);
    t.equal((await raw(p.url, 'HEAD', url, {})).status, 200);
    await new Promise((r) => setTimeout(r, 2100));
    const late = await raw(p.url, 'HEAD', url, {});
    t.equal(late.status, 403, 'expired');
    t.equal(late.headers['x-amz-error-code'], 'AccessDenied');
  });

  await t.test('the newest version, under concurrent overwrites and pipelined writes', async (t) => {
    const versions = new Map<string, string>();
    const key = '/fasthead/race.bin';
    // 3 s and at least 10 overwrites (a loaded machine fsyncs slowly), 30 s at most.
    const deadline = Date.now() + 3000;
    const cap = Date.now() + 30_000;
    let writes = 0;
    let heads = 0;
    let writing = true;
    const writer = async () => {
      while ((Date.now() < deadline || writes < 10) && Date.now() < cap) {
        const b = randomBytes(100 + (writes++ % 50));
        const r = await put(p, key, b);
        versions.set(r.headers.etag as string, String(b.length));
      }
    };
    const seen: [string, string][] = [];
    const reader = async () => {
      while (writing) {
        const r = await head(p, key);
        heads++;
        t.equal(r.status, 200);
        seen.push([r.headers.etag as string, r.headers['content-length'] as string]);
      }
    };
    const seed = await put(p, key, Buffer.from('seed'));
    versions.set(seed.headers.etag as string, '4');
    await Promise.all([Promise.all([writer(), writer()]).then(() => (writing = false)), reader(), reader(), reader()]);
    // Every answer is one version whole: an etag some PUT answered, with that PUT's length.
    const wrong = seen.filter(([etag, len]) => versions.get(etag) !== len);
    t.same(wrong, [], 'every HEAD names one version with its own length');
    t.ok(heads > 10 && writes >= 10, `${heads} HEADs beside ${writes} PUTs`);

    const port = p.port;
    for (let i = 0; i < 3; i++) {
      const conn = await connect(port);
      const b = `piped-${i}-${sha(randomBytes(8))}`;
      // Warm: a HEAD of the key on the fast path, then a PUT and a HEAD sent at once.
      await head(p, key);
      conn.socket.write(signedHead(port, 'PUT', key, { 'content-length': String(b.length) }) + b + signedHead(port, 'HEAD', key));
      const statuses = () => [...conn.received().matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
      await until(() => statuses().length >= 2, 10_000, 'two responses');
      const etags = [...conn.received().matchAll(/etag: ("[^"]+")/gi)].map((m) => m[1]);
      t.same(statuses(), ['200', '200']);
      t.equal(etags[1], etags[0], 'the pipelined HEAD sees the PUT before it');
      t.match(conn.received(), new RegExp(`content-length: ${b.length}\r\n`, 'i'));
      conn.socket.destroy();
    }
  });

  await t.test('a HEAD after a PUT is answered sees that PUT, at once', async (t) => {
    // The fast path takes a version it checked a moment ago without a stat
    // while nothing is written (engine.ts HEAD_TRUST_MS): a write through the
    // proxy must end that trust before it is answered.
    const key = '/fasthead/ryw.bin';
    for (let i = 0; i < 20; i++) {
      const b = randomBytes(10 + i);
      const w = await put(p, key, b);
      // The first HEAD reads the new sidecar, the next ones find it in memory.
      for (let j = 0; j < 3; j++) {
        const r = await head(p, key);
        t.equal(r.headers.etag, w.headers.etag, `write ${i}, HEAD ${j}: its own etag`);
        t.equal(r.headers['content-length'], String(b.length));
      }
    }
    const gone = await raw(p.url, 'DELETE', key, signV4(p.url, 'DELETE', key, { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, creds));
    t.equal(gone.status, 204);
    t.equal((await head(p, key)).status, 404, 'a delete, at once');
  });

  await t.test('a sidecar removed beside the proxy is seen within a second', async (t) => {
    const key = '/fasthead/beside.txt';
    t.equal((await put(p, key, Buffer.from('beside'))).status, 200);
    t.equal((await head(p, key)).status, 200);
    t.equal((await head(p, key)).status, 200);
    const sidecar = (await listFiles(p.dataDir)).find((f) => f.rel.endsWith('fasthead/beside.txt.object.meta'));
    t.ok(sidecar, 'the sidecar on disk');
    await fsp.rm(path.join(p.dataDir, sidecar!.rel));
    await new Promise((r) => setTimeout(r, 1100));
    t.equal((await head(p, key)).status, 404, 'not found once the trust has lapsed');
  });

  await t.test('logged and counted like every request', async (t) => {
    const count = async () => {
      const text = await (await fetch(`${p.url}/_/metrics`)).text();
      return Number(/^deltaglider_requests_total\{operation="HeadObject",status="200"\} (\d+)$/m.exec(text)?.[1] ?? 0);
    };
    // One HEAD first: the engine confirms its buckets again now and then (full path).
    await head(p, '/fasthead/dir/a.txt');
    const before = await count();
    const fullBefore = fullPath();
    for (let i = 0; i < 7; i++) t.equal((await head(p, '/fasthead/dir/a.txt')).status, 200);
    t.ok(fullPath() - fullBefore <= 1, `on the fast path (${fullPath() - fullBefore} full-path HEADs of 7)`);
    t.equal((await count()) - before, 7, 'seven HEADs counted');
  });

  await t.test('keep-alive as fastify sets it', async (t) => {
    const r = await head(p, '/fasthead/dir/a.txt');
    t.equal(r.headers['keep-alive'], 'timeout=72');
  });
});
