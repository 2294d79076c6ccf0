import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, ListBucketsCommand, ListObjectsV2Command, PutObjectCommand, S3ServiceException } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import aws4 from 'aws4';
import { createHash, createHmac } from 'node:crypto';
import http from 'node:http';
import t from 'tap';
import type { KeyGrant } from '../src/config/config.js';
import { sdk } from './helpers/clients.js';
import { blobs, startProxy } from './helpers/proxy.js';

// Who gets in: signed requests of configured keys, within their grants.
// Everything else gets S3's error and leaves no trace in storage.

const FULL: KeyGrant = { accessKeyId: 'AKFULL', secretAccessKey: 'secret-full', readOnly: false };
const RO: KeyGrant = { accessKeyId: 'AKREAD', secretAccessKey: 'secret-read', readOnly: true };
const SCOPED: KeyGrant = { accessKeyId: 'AKSCOPE', secretAccessKey: 'secret-scope', buckets: ['scoped'], readOnly: false };

const client = (url: string, k: { accessKeyId: string; secretAccessKey: string }, extra = {}) => sdk(url, { credentials: k, maxAttempts: 1, ...extra });

async function err(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof S3ServiceException) return `${e.$metadata.httpStatusCode} ${e.name}`;
    throw e;
  }
  return 'ok';
}

function raw(url: string, method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method, path, headers }, (res) => {
      let b = '';
      res.on('data', (c) => (b += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const hmac = (key: Buffer | string, s: string) => createHmac('sha256', key).update(s).digest();
const hex = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

/** A STREAMING-AWS4-HMAC-SHA256-PAYLOAD upload: seed signed by aws4, chunks chained here. */
function signedChunkedPut(url: string, path: string, data: Buffer, k: KeyGrant, chunkSize: number) {
  const u = new URL(url);
  const chunks: Buffer[] = [];
  for (let i = 0; i < data.length; i += chunkSize) chunks.push(data.subarray(i, i + chunkSize));
  chunks.push(Buffer.alloc(0));
  const headers: Record<string, string> = {
    'content-encoding': 'aws-chunked',
    'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
    'x-amz-decoded-content-length': String(data.length),
  };
  const signed = aws4.sign({ host: u.host, method: 'PUT', path, headers, service: 's3', region: 'us-east-1' }, k);
  const amzDate = signed.headers!['X-Amz-Date'] as string;
  let prev = /Signature=([0-9a-f]+)/.exec(signed.headers!.Authorization as string)![1];
  const scope = `${amzDate.slice(0, 8)}/us-east-1/s3/aws4_request`;
  const key = hmac(hmac(hmac(hmac(`AWS4${k.secretAccessKey}`, amzDate.slice(0, 8)), 'us-east-1'), 's3'), 'aws4_request');
  const parts: Buffer[] = [];
  for (const c of chunks) {
    const sts = ['AWS4-HMAC-SHA256-PAYLOAD', amzDate, scope, prev, hex(''), hex(c)].join('\n');
    prev = createHmac('sha256', key).update(sts).digest('hex');
    parts.push(Buffer.from(`${c.length.toString(16)};chunk-signature=${prev}\r\n`), c, Buffer.from('\r\n'));
  }
  return { headers: signed.headers as Record<string, string>, body: Buffer.concat(parts) };
}

t.test('signatures, grants and presigned URLs', async (t) => {
  const proxy = await startProxy(t, { authKeys: [FULL, RO, SCOPED] });
  const full = client(proxy.url, FULL);
  t.teardown(() => full.destroy());
  await full.send(new CreateBucketCommand({ Bucket: 'open' }));
  await full.send(new CreateBucketCommand({ Bucket: 'scoped' }));
  await full.send(new PutObjectCommand({ Bucket: 'open', Key: 'a.txt', Body: 'A' }));
  const before = await blobs(proxy, 'open');

  await t.test('bad credentials', async (t) => {
    t.equal(await err(client(proxy.url, { ...FULL, secretAccessKey: 'wrong' }).send(new GetObjectCommand({ Bucket: 'open', Key: 'a.txt' }))), '403 SignatureDoesNotMatch');
    t.equal(await err(client(proxy.url, { accessKeyId: 'NOPE', secretAccessKey: 'x' }).send(new ListBucketsCommand({}))), '403 InvalidAccessKeyId');
    t.equal(await err(client(proxy.url, FULL, { systemClockOffset: -20 * 60 * 1000 }).send(new ListBucketsCommand({}))), '403 RequestTimeTooSkewed');
    t.equal(await err(client(proxy.url, { ...FULL, secretAccessKey: 'wrong' }).send(new PutObjectCommand({ Bucket: 'open', Key: 'evil.txt', Body: 'x' }))), '403 SignatureDoesNotMatch');
    const unsigned = await raw(proxy.url, 'PUT', '/open/evil.txt', { 'content-length': '1' }, Buffer.from('x'));
    t.equal(unsigned.status, 403);
    t.match(unsigned.body, '<Code>AccessDenied</Code>');
  });

  await t.test('grants', async (t) => {
    const ro = client(proxy.url, RO);
    const got = await ro.send(new GetObjectCommand({ Bucket: 'open', Key: 'a.txt' }));
    t.equal(await got.Body!.transformToString(), 'A');
    t.equal(await err(ro.send(new PutObjectCommand({ Bucket: 'open', Key: 'ro.txt', Body: 'x' }))), '403 AccessDenied');
    const scoped = client(proxy.url, SCOPED);
    t.equal(await err(scoped.send(new PutObjectCommand({ Bucket: 'scoped', Key: 's.txt', Body: 'S' }))), 'ok');
    t.equal(await err(scoped.send(new GetObjectCommand({ Bucket: 'open', Key: 'a.txt' }))), '403 AccessDenied');
    t.equal(await err(scoped.send(new ListObjectsV2Command({ Bucket: 'open' }))), '403 AccessDenied');
    const buckets = await scoped.send(new ListBucketsCommand({}));
    t.same(buckets.Buckets?.map((b) => b.Name), ['scoped'], 'ListBuckets shows only granted buckets');
    await full.send(new ListObjectsV2Command({ Bucket: 'scoped' }));
  });

  await t.test('presigned URLs', async (t) => {
    const url = await getSignedUrl(full, new GetObjectCommand({ Bucket: 'open', Key: 'a.txt' }), { expiresIn: 60 });
    const ok = await fetch(url);
    t.equal(ok.status, 200);
    t.equal(await ok.text(), 'A');
    const tampered = await fetch(url.replace('/a.txt', '/b.txt'));
    t.equal(tampered.status, 403);
    t.match(await tampered.text(), 'SignatureDoesNotMatch');
    const put = await getSignedUrl(full, new PutObjectCommand({ Bucket: 'open', Key: 'presigned.txt' }), { expiresIn: 60 });
    t.equal((await fetch(put, { method: 'PUT', body: 'via presigned PUT' })).status, 200);
    const back = await full.send(new GetObjectCommand({ Bucket: 'open', Key: 'presigned.txt' }));
    t.equal(await back.Body!.transformToString(), 'via presigned PUT');
    const short = await getSignedUrl(full, new GetObjectCommand({ Bucket: 'open', Key: 'a.txt' }), { expiresIn: 1 });
    await new Promise((r) => setTimeout(r, 2100));
    const expired = await fetch(short);
    t.equal(expired.status, 403);
    t.match(await expired.text(), '<Code>AccessDenied</Code>');
    const week = new URL(url);
    week.searchParams.set('X-Amz-Expires', '604801');
    t.equal((await fetch(week)).status, 400);
    await full.send(new DeleteObjectCommand({ Bucket: 'open', Key: 'presigned.txt' }));
  });

  await t.test('signed aws-chunked bodies', async (t) => {
    const data = Buffer.alloc(200_000, 7);
    const good = signedChunkedPut(proxy.url, '/open/chunked.bin', data, FULL, 65536);
    t.equal((await raw(proxy.url, 'PUT', '/open/chunked.bin', good.headers, good.body)).status, 200);
    const back = await full.send(new GetObjectCommand({ Bucket: 'open', Key: 'chunked.bin' }));
    t.same(Buffer.from(await back.Body!.transformToByteArray()), data);
    const bad = signedChunkedPut(proxy.url, '/open/tampered.bin', data, FULL, 65536);
    bad.body[100_000] ^= 1; // a byte in the middle of the second chunk
    const r = await raw(proxy.url, 'PUT', '/open/tampered.bin', bad.headers, bad.body);
    t.equal(r.status, 403);
    t.match(r.body, 'SignatureDoesNotMatch');
    await full.send(new DeleteObjectCommand({ Bucket: 'open', Key: 'chunked.bin' }));
  });

  await t.test('rejected requests leave no trace', async (t) => {
    t.same(await blobs(proxy, 'open'), before);
  });
});

t.test('anonymous access only when configured', async (t) => {
  const proxy = await startProxy(t, { authKeys: [FULL], anonymous: 'read-only' });
  const full = client(proxy.url, FULL);
  t.teardown(() => full.destroy());
  await full.send(new CreateBucketCommand({ Bucket: 'pub' }));
  await full.send(new PutObjectCommand({ Bucket: 'pub', Key: 'x', Body: 'public' }));
  const get = await raw(proxy.url, 'GET', '/pub/x', {});
  t.equal(get.status, 200);
  t.equal(get.body, 'public');
  t.equal((await raw(proxy.url, 'PUT', '/pub/y', { 'content-length': '1' }, Buffer.from('y'))).status, 403);
});
