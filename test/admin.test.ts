import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import aws4 from 'aws4';
import t from 'tap';
import { creds, sdk } from './helpers/clients.js';
import { startProxy } from './helpers/proxy.js';
import { prettyLine } from '../src/http/request-log.js';

// The proxy's own endpoints under /_/: who may see what.

const get = (url: string, headers: Record<string, string> = {}, init: RequestInit = {}) => fetch(url, { headers, redirect: 'manual', signal: AbortSignal.timeout(10_000), ...init });

const login = (url: string, body: unknown, headers: Record<string, string> = { 'x-deltaglider-console': '1' }) =>
  get(`${url}/_/api/login`, { 'content-type': 'application/json', ...headers }, { method: 'POST', body: JSON.stringify(body) });

t.test('health, ready and metrics', async (t) => {
  const p = await startProxy(t, { metricsToken: 'scrape-token-123' });
  t.equal((await get(`${p.url}/_/health`)).status, 200, '/_/health is open');
  t.same(await (await get(`${p.url}/health`)).json(), { status: 'ok' }, 'unsigned /health still answers');

  const none = await get(`${p.url}/_/metrics`);
  t.equal(none.status, 401, 'metrics without the token');
  t.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
  t.equal((await get(`${p.url}/_/metrics`, { authorization: 'Bearer wrong' })).status, 401, 'wrong token');
  t.equal((await get(`${p.url}/_/ready`)).status, 401, 'ready needs the token too');
  const ok = await get(`${p.url}/_/metrics`, { authorization: 'Bearer scrape-token-123' });
  t.equal(ok.status, 200);
  t.match(ok.headers.get('content-type') ?? '', 'text/plain');
  const text = await ok.text();
  for (const name of ['deltaglider_requests_total', 'deltaglider_request_duration_seconds', 'deltaglider_received_bytes_total', 'deltaglider_sent_bytes_total', 'deltaglider_codec_runs_total', 'deltaglider_codec_queue_length', 'deltaglider_reference_cache_hits_total', 'deltaglider_reference_cache_misses_total', 'deltaglider_logical_bytes', 'deltaglider_stored_bytes', 'deltaglider_objects']) {
    t.match(text, `# TYPE ${name} `, `${name} is exported`);
  }
  const ready = await get(`${p.url}/_/ready`, { authorization: 'Bearer scrape-token-123' });
  t.equal(ready.status, 200);
  t.same(await ready.json(), { status: 'ready', backend: 'ok', xdelta3: 'ok' });

  // S3 requests show up by operation and status.
  const s3 = sdk(p.url);
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'met1' }));
  await s3.send(new PutObjectCommand({ Bucket: 'met1', Key: 'a.txt', Body: 'x'.repeat(1000) }));
  await s3.send(new ListObjectsV2Command({ Bucket: 'met1' }));
  await s3.send(new ListObjectsV2Command({ Bucket: 'nope-missing' })).catch(() => {});
  const after = await (await get(`${p.url}/_/metrics`, { authorization: 'Bearer scrape-token-123' })).text();
  t.match(after, /deltaglider_requests_total\{operation="PutObject",status="200"\} 1/);
  t.match(after, /deltaglider_requests_total\{operation="ListObjectsV2",status="404"\} 1/);
  t.match(after, /deltaglider_request_duration_seconds_count\{operation="PutObject"\} 1/);
  const received = Number(/deltaglider_received_bytes_total\{operation="PutObject"\} (\d+)/.exec(after)?.[1]);
  t.ok(received >= 1000, `bytes in counted (${received})`);
  t.notMatch(after, /operation="Admin"/, 'scrapes are not S3 requests');

  const open = await startProxy(t, { metricsPublic: true });
  t.equal((await get(`${open.url}/_/metrics`)).status, 200, 'metrics.public opens them');
});

t.test('a signed request for /health reaches the bucket "health"', async (t) => {
  const p = await startProxy(t);
  const s3 = sdk(p.url);
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'health' }));
  await s3.send(new PutObjectCommand({ Bucket: 'health', Key: 'k', Body: 'v' }));
  const r = await s3.send(new ListObjectsV2Command({ Bucket: 'health' }));
  t.same(r.Contents?.map((c) => c.Key), ['k']);
  // Virtual-hosted style: '/_/x' is the key '_/x' of the bucket.
  await s3.send(new PutObjectCommand({ Bucket: 'health', Key: '_/health', Body: 'not an endpoint' }));
  const host = `health.localhost:${p.port}`;
  const signed = aws4.sign({ host, path: '/_/health', method: 'GET', service: 's3', region: 'us-east-1' }, creds);
  const vr = await p.app.inject({ method: 'GET', url: '/_/health', headers: signed.headers as Record<string, string> });
  t.equal(vr.body, 'not an endpoint');
});

t.test('console API: sessions, CSRF, rate limit, transport', async (t) => {
  const p = await startProxy(t, { authKeys: [{ accessKeyId: 'viewer', secretAccessKey: 'viewer-secret', buckets: ['seen'], readOnly: true }, { accessKeyId: 'admin', secretAccessKey: 'admin-secret', readOnly: false }] });
  for (const path of ['/_/api/buckets', '/_/api/session', '/_/api/live', '/_/api/buckets/seen/deltaspaces']) {
    t.equal((await get(`${p.url}${path}`)).status, 401, `${path} without a session`);
  }
  t.equal((await login(p.url, { accessKeyId: 'admin', secretAccessKey: 'admin-secret' }, {})).status, 403, 'sign-in without the CSRF header');
  t.equal((await login(p.url, { accessKeyId: 'admin', secretAccessKey: 'nope' })).status, 401, 'wrong secret');
  const ok = await login(p.url, { accessKeyId: 'viewer', secretAccessKey: 'viewer-secret' });
  t.equal(ok.status, 200);
  const cookie = ok.headers.get('set-cookie') ?? '';
  t.match(cookie, /^dgp_console=[A-Za-z0-9_-]{40,};/);
  t.match(cookie, /HttpOnly/);
  t.match(cookie, /SameSite=Strict/);
  t.match(cookie, /Path=\/_\//);
  t.match(cookie, /Max-Age=3600/);
  const session = { cookie: cookie.split(';')[0] };

  const s3 = sdk(p.url, { credentials: { accessKeyId: 'admin', secretAccessKey: 'admin-secret' } });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'seen' }));
  await s3.send(new CreateBucketCommand({ Bucket: 'hidden' }));
  const buckets = (await (await get(`${p.url}/_/api/buckets`, session)).json()) as { buckets: { bucket: string }[] };
  t.same(buckets.buckets.map((b) => b.bucket), ['seen'], 'a key limited to some buckets sees only those');
  t.equal((await get(`${p.url}/_/api/buckets/hidden/objects`, session)).status, 404, 'nor their objects');
  t.equal((await get(`${p.url}/_/api/buckets/seen/objects`, session)).status, 200);

  const out = await get(`${p.url}/_/api/logout`, session, { method: 'POST' });
  t.equal(out.status, 403, 'logout needs the CSRF header too');
  t.equal((await get(`${p.url}/_/api/logout`, { ...session, 'x-deltaglider-console': '1' }, { method: 'POST' })).status, 200);
  t.equal((await get(`${p.url}/_/api/session`, session)).status, 401, 'the session is gone');

  // Attempts are rate-limited per client address (5, then one per 12 s).
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push((await login(p.url, { accessKeyId: 'admin', secretAccessKey: 'guess' })).status);
  t.same(statuses, [401, 401, 401, 429, 429, 429], 'the fourth attempt of this client in a row waits (two were spent above)');

  // Plain HTTP from another host: refused unless console.allow_http.
  const remote = await p.app.inject({ method: 'GET', url: '/_/', remoteAddress: '192.0.2.7' });
  t.equal(remote.statusCode, 403);
  t.match(remote.body, 'console.allow_http');
  const viaTls = await p.app.inject({ method: 'GET', url: '/_/', remoteAddress: '192.0.2.7', headers: { 'x-forwarded-proto': 'https' } });
  t.equal(viaTls.statusCode, 200, 'behind a TLS proxy');
  t.match(viaTls.headers['content-security-policy'], "default-src 'self'");
  const allowed = await startProxy(t, { consoleAllowHttp: true });
  t.equal((await allowed.app.inject({ method: 'GET', url: '/_/', remoteAddress: '192.0.2.7' })).statusCode, 200, 'console.allow_http');
  t.equal((await get(`${p.url}/_/static/console.js`)).status, 200);
  t.equal((await p.app.inject({ method: 'GET', url: '/_/static/..%2F..%2Fpackage.json' })).statusCode, 404);
  t.equal((await get(`${p.url}/_`)).status, 302);
});

t.test('log lines: readable form', async (t) => {
  const line = prettyLine(JSON.stringify({ level: 30, time: Date.parse('2026-11-22T05:00:00.123Z'), reqId: 'R1', msg: 'request', method: 'PUT', url: '/b/k.zip', op: 'PutObject', status: 403, code: 'AccessDenied', reason: 'Access Denied: this key is read-only', accessKeyId: 'viewer', in: 0, out: 243, ms: 3 }));
  t.equal(line, '05:00:00.123 INFO  PUT /b/k.zip 403 PutObject 3ms code=AccessDenied reason="Access Denied: this key is read-only" accessKeyId=viewer in=0 out=243 req=R1\n');
});

t.test('codec figures come from the codec pool statistics when the codec has them', async (t) => {
  const p = await startProxy(t, { metricsPublic: true });
  const before = await (await get(`${p.url}/_/metrics`)).text();
  t.match(before, /^deltaglider_codec_queue_length 0$/m, '0 without statistics');
  // The shape of Codec#stats from the codec pool (running, queued, runs, totalMs...).
  Object.defineProperty(p.app.engine.codec, 'stats', { get: () => ({ running: 2, queued: 3, memoryBytes: 1 << 26, runs: 7, totalMs: 1500, refused: 1, spoolBytes: 0 }) });
  const text = await (await get(`${p.url}/_/metrics`)).text();
  t.match(text, /^deltaglider_codec_running 2$/m);
  t.match(text, /^deltaglider_codec_queue_length 3$/m);
  t.match(text, /^deltaglider_codec_runs_total 7$/m);
  t.match(text, /^deltaglider_codec_seconds_total 1.5$/m);
  t.match(text, /^deltaglider_codec_refused_total 1$/m);
  t.match(text, /^deltaglider_codec_memory_bytes 67108864$/m);
});
