import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import t from 'tap';
import type { KeyGrant } from '../src/config/config.js';
import { sdk } from './helpers/clients.js';
import { blobs, startProxy } from './helpers/proxy.js';
import { presignV4, raw, signV4, utf8Bytes } from './helpers/signing.js';

// Only what a signature covers is trusted (S3: AccessDenied "There were
// headers present in the request which were not signed"), a declared payload
// hash is verified wherever it is declared, and non-ASCII header values are
// canonicalised as the clients that send them sign them.

const FULL: KeyGrant = { accessKeyId: 'AKFULL', secretAccessKey: 'secret-full', readOnly: false };
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

t.test('unsigned x-amz-* headers are refused, and change nothing', async (t) => {
  const proxy = await startProxy(t, { authKeys: [FULL] });
  const s3 = sdk(proxy.url, { credentials: FULL, maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'private' }));
  await s3.send(new CreateBucketCommand({ Bucket: 'drop' }));
  await s3.send(new PutObjectCommand({ Bucket: 'private', Key: 'secret.txt', Body: 'the secret' }));
  await s3.send(new PutObjectCommand({ Bucket: 'drop', Key: 'keep.txt', Body: 'keep' }));
  const before = { private: await blobs(proxy, 'private'), drop: await blobs(proxy, 'drop') };
  const refused = (r: { status: number; body: string }, header: string, what: string) => {
    t.equal(r.status, 403, what);
    t.match(r.body, '<Code>AccessDenied</Code>', what);
    t.match(r.body, 'There were headers present in the request which were not signed', what);
    t.match(r.body, new RegExp(`<HeadersNotSigned>[^<]*${header}`), `${what}: names ${header}`);
  };

  await t.test('header auth (a captured signed PUT replayed with copy headers)', async () => {
    const signed = signV4(proxy.url, 'PUT', '/drop/upload.txt', { 'x-amz-content-sha256': sha('') }, FULL, '');
    refused(await raw(proxy.url, 'PUT', '/drop/upload.txt', { ...signed, 'x-amz-copy-source': 'private/secret.txt' }, ''), 'x-amz-copy-source', 'unsigned copy source');
    refused(await raw(proxy.url, 'PUT', '/drop/upload.txt', { ...signed, 'x-amz-copy-source': '/private/secret.txt', 'x-amz-metadata-directive': 'REPLACE' }, ''), 'x-amz-metadata-directive', 'unsigned directive');
    refused(await raw(proxy.url, 'PUT', '/drop/upload.txt', { ...signed, 'x-amz-meta-owner': 'mallory' }, ''), 'x-amz-meta-owner', 'unsigned metadata');
    const del = signV4(proxy.url, 'DELETE', '/drop/keep.txt', { 'x-amz-content-sha256': sha('') }, FULL);
    refused(await raw(proxy.url, 'DELETE', '/drop/keep.txt', { ...del, 'x-amz-bypass-governance-retention': 'true' }), 'x-amz-bypass-governance-retention', 'unsigned header on DELETE');
    // The same requests, signed as sent, are fine.
    t.equal((await raw(proxy.url, 'PUT', '/drop/upload.txt', signed, '')).status, 200, 'the signed PUT itself');
  });

  await t.test('presigned URLs', async () => {
    const url = presignV4(proxy.url, 'PUT', '/drop/presigned.txt', FULL);
    refused(await raw(proxy.url, 'PUT', url, { 'x-amz-copy-source': 'private/secret.txt', 'content-length': '0' }, ''), 'x-amz-copy-source', 'presigned PUT turned into a copy');
    refused(await raw(proxy.url, 'PUT', url, { 'x-amz-meta-a': 'b', 'x-amz-storage-class': 'GLACIER' }, 'x'), 'x-amz-meta-a, x-amz-storage-class', 'presigned PUT with metadata');
    const get = presignV4(proxy.url, 'GET', '/private/secret.txt', FULL);
    refused(await raw(proxy.url, 'GET', get, { 'x-amz-checksum-mode': 'ENABLED' }), 'x-amz-checksum-mode', 'presigned GET');
    // x-amz-content-sha256 is the one header S3 tolerates unsigned; its digest is checked.
    t.equal((await raw(proxy.url, 'PUT', url, { 'x-amz-content-sha256': sha('pinned') }, 'pinned')).status, 200, 'unsigned x-amz-content-sha256 with the right digest');
    const bad = await raw(proxy.url, 'PUT', url, { 'x-amz-content-sha256': sha('other') }, 'tampered');
    t.equal(bad.status, 400);
    t.match(bad.body, 'XAmzContentSHA256Mismatch');
  });

  await t.test('nothing was stored, copied or deleted', async () => {
    t.same(await blobs(proxy, 'private'), before.private);
    const got = await s3.send(new GetObjectCommand({ Bucket: 'drop', Key: 'presigned.txt' }));
    t.equal(await got.Body!.transformToString(), 'pinned', 'only the accepted presigned PUT wrote');
    const upload = await s3.send(new HeadObjectCommand({ Bucket: 'drop', Key: 'upload.txt' }));
    t.equal(upload.ContentLength, 0, 'the replayed PUT stored its own empty body, never the secret');
    t.same(upload.Metadata, {});
    t.equal((await s3.send(new HeadObjectCommand({ Bucket: 'drop', Key: 'keep.txt' }))).ContentLength, 4, 'not deleted');
  });
});

t.test('a pinned payload hash is verified', async (t) => {
  const proxy = await startProxy(t, { authKeys: [FULL] });
  const s3 = sdk(proxy.url, { credentials: FULL, maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'pin' }));
  const before = await blobs(proxy, 'pin');
  // Same lengths: the signed Content-Length stays true.
  const header = signV4(proxy.url, 'PUT', '/pin/h.txt', { 'x-amz-content-sha256': sha('declared') }, FULL, 'declared');
  const r1 = await raw(proxy.url, 'PUT', '/pin/h.txt', header, 'tampered');
  t.equal(r1.status, 400);
  t.match(r1.body, '<Code>XAmzContentSHA256Mismatch</Code>');
  // A presigned URL whose signed query pins the body (X-Amz-Content-Sha256).
  const url = presignV4(proxy.url, 'PUT', '/pin/q.txt', FULL, 60, `&X-Amz-Content-Sha256=${sha('declared')}`);
  const r2 = await raw(proxy.url, 'PUT', url, {}, 'tampered');
  t.equal(r2.status, 400);
  t.match(r2.body, '<Code>XAmzContentSHA256Mismatch</Code>');
  t.same(await blobs(proxy, 'pin'), before, 'nothing stored');
  t.equal((await raw(proxy.url, 'PUT', url, {}, 'declared')).status, 200, 'the pinned body is accepted');
  const tampered = url.replace(/X-Amz-Content-Sha256=[0-9a-f]+/, `X-Amz-Content-Sha256=${sha('tampered')}`);
  t.equal((await raw(proxy.url, 'PUT', tampered, {}, 'tampered')).status, 403, 'the pin is signed');
});

t.test('non-ASCII metadata: signed as clients sign it, stored and returned as S3 does', async (t) => {
  const proxy = await startProxy(t, { authKeys: [FULL] });
  const s3 = sdk(proxy.url, { credentials: FULL, maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'meta' }));
  const text = 'José Müller — 東京';
  // Raw UTF-8 bytes on the wire, the UTF-8 text signed (curl, Go, Rust clients).
  const signed = signV4(proxy.url, 'PUT', '/meta/raw.txt', { 'x-amz-content-sha256': sha('x'), 'x-amz-meta-who': text }, FULL, 'x');
  const r = await raw(proxy.url, 'PUT', '/meta/raw.txt', { ...signed, 'x-amz-meta-who': utf8Bytes(text) }, 'x');
  t.equal(r.status, 200, r.body);
  // @aws-sdk/client-s3: Node sends latin1 bytes, the SDK signs the UTF-8 text.
  await s3.send(new PutObjectCommand({ Bucket: 'meta', Key: 'sdk.txt', Body: 'y', Metadata: { who: 'Müller', plain: 'ascii' } }));
  // RFC 2047 encoded-words are decoded before storing.
  const encoded = `=?UTF-8?B?${Buffer.from(text).toString('base64')}?=`;
  await s3.send(new PutObjectCommand({ Bucket: 'meta', Key: 'word.txt', Body: 'z', Metadata: { who: encoded } }));
  const want = (s: string) => `=?UTF-8?B?${Buffer.from(s).toString('base64')}?=`;
  t.equal((await s3.send(new HeadObjectCommand({ Bucket: 'meta', Key: 'raw.txt' }))).Metadata?.who, want(text), 'returned RFC 2047 encoded');
  const sdkHead = await s3.send(new HeadObjectCommand({ Bucket: 'meta', Key: 'sdk.txt' }));
  t.equal(sdkHead.Metadata?.who, want('Müller'));
  t.equal(sdkHead.Metadata?.plain, 'ascii', 'ASCII values as they are');
  t.equal((await s3.send(new HeadObjectCommand({ Bucket: 'meta', Key: 'word.txt' }))).Metadata?.who, want(text), 'the same text whichever way it came');
  const tampered = await raw(proxy.url, 'PUT', '/meta/raw.txt', { ...signed, 'x-amz-meta-who': utf8Bytes('José Müller — 東亰') }, 'x');
  t.equal(tampered.status, 403, 'a changed byte still fails');
});
