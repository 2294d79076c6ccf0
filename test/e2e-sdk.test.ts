import {
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketLocationCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import t from 'tap';
import { release } from '../bench/corpus.js';
import { sdk } from './helpers/clients.js';
import { BACKEND, blobs, localData, noIds, startProxy } from './helpers/proxy.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function s3Error(p: Promise<unknown>): Promise<{ name: string; status?: number }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof S3ServiceException) return { name: err.name, status: err.$metadata.httpStatusCode };
    throw err;
  }
  throw new Error('expected an S3 error');
}

t.test('buckets, objects, listing and errors through @aws-sdk/client-s3', async (t) => {
  const proxy = await startProxy(t);
  const s3 = sdk(proxy.url);
  t.teardown(() => s3.destroy());

  await t.test('buckets', async (t) => {
    await s3.send(new CreateBucketCommand({ Bucket: 'alpha' }));
    // Re-creating an owned bucket is 200 in us-east-1 (409 elsewhere: e2e-conformance).
    await s3.send(new CreateBucketCommand({ Bucket: 'alpha' }));
    t.match(await s3Error(s3.send(new CreateBucketCommand({ Bucket: 'Bad_Name' }))), { name: 'InvalidBucketName', status: 400 });
    await s3.send(new HeadBucketCommand({ Bucket: 'alpha' }));
    t.match(await s3Error(s3.send(new HeadBucketCommand({ Bucket: 'nope-bucket' }))), { status: 404 });
    const list = await s3.send(new ListBucketsCommand({}));
    t.same(list.Buckets?.map((b) => b.Name), ['alpha']);
    const loc = await s3.send(new GetBucketLocationCommand({ Bucket: 'alpha' }));
    t.notOk(loc.LocationConstraint);
    const ver = await s3.send(new GetBucketVersioningCommand({ Bucket: 'alpha' }));
    t.notOk(ver.Status);
  });

  await t.test('put, get, head, delete with metadata', async (t) => {
    const body = Buffer.from('hello, delta world\n');
    const put = await s3.send(
      new PutObjectCommand({
        Bucket: 'alpha',
        Key: 'docs/readme.txt',
        Body: body,
        ContentType: 'text/plain',
        ContentDisposition: 'attachment; filename="readme.txt"',
        ContentLanguage: 'en',
        CacheControl: 'max-age=60',
        ContentEncoding: 'identity',
        Expires: new Date('2030-01-01T00:00:00Z'),
        Metadata: { owner: 'platform', build: '42' },
      }),
    );
    t.equal(put.ETag, `"${createHash('md5').update(body).digest('hex')}"`);
    const got = await s3.send(new GetObjectCommand({ Bucket: 'alpha', Key: 'docs/readme.txt' }));
    t.same(Buffer.from(await got.Body!.transformToByteArray()), body);
    t.equal(got.ContentType, 'text/plain');
    t.equal(got.ContentDisposition, 'attachment; filename="readme.txt"');
    t.equal(got.ContentLanguage, 'en');
    t.equal(got.CacheControl, 'max-age=60');
    t.equal(got.ContentEncoding, 'identity');
    t.equal(got.Expires?.toISOString(), '2030-01-01T00:00:00.000Z');
    t.same(got.Metadata, { owner: 'platform', build: '42' });
    t.equal(got.ETag, put.ETag);
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'alpha', Key: 'docs/readme.txt' }));
    t.equal(head.ContentLength, body.length);
    t.equal(head.$metadata.httpStatusCode, 200);
    t.match(await s3Error(s3.send(new GetObjectCommand({ Bucket: 'alpha', Key: 'docs/missing' }))), { name: 'NoSuchKey', status: 404 });
    t.match(await s3Error(s3.send(new HeadObjectCommand({ Bucket: 'alpha', Key: 'docs/missing' }))), { name: 'NotFound', status: 404 });
    t.match(await s3Error(s3.send(new GetObjectCommand({ Bucket: 'nope-bucket', Key: 'x' }))), { name: 'NoSuchBucket', status: 404 });
    await s3.send(new DeleteObjectCommand({ Bucket: 'alpha', Key: 'docs/readme.txt' }));
    const again = await s3.send(new DeleteObjectCommand({ Bucket: 'alpha', Key: 'docs/readme.txt' }));
    t.equal(again.$metadata.httpStatusCode, 204);
    t.match(await s3Error(s3.send(new HeadObjectCommand({ Bucket: 'alpha', Key: 'docs/readme.txt' }))), { status: 404 });
  });

  await t.test('delta storage of release versions, byte-exact', async (t) => {
    const versions = [1, 2, 3].map((v) => release('zip', v, 0.25));
    for (const [i, b] of versions.entries()) {
      const put = await s3.send(new PutObjectCommand({ Bucket: 'alpha', Key: `rel/app-1.0.${i}.zip`, Body: b }));
      t.equal(put.$metadata.httpStatusCode, 200);
    }
    for (const [i, b] of versions.entries()) {
      const got = await s3.send(new GetObjectCommand({ Bucket: 'alpha', Key: `rel/app-1.0.${i}.zip` }));
      t.equal(sha(await got.Body!.transformToByteArray()), sha(b), `v${i} round-trips`);
    }
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'alpha', Key: 'rel/app-1.0.2.zip' }));
    const headers = (head.$metadata as unknown as Record<string, unknown>) ?? {};
    void headers;
    const files = (await blobs(proxy, 'alpha', 'rel/')).map((f) => ({ rel: f.name, size: f.size }));
    t.same(files.map((f) => noIds(f.rel.replace('rel/', ''))), [
      'app-1.0.0.zip.ID.delta.bin', 'app-1.0.0.zip.object.meta', 'app-1.0.1.zip.ID.delta.bin', 'app-1.0.1.zip.object.meta',
      'app-1.0.2.zip.ID.delta.bin', 'app-1.0.2.zip.object.meta', 'reference.ID.bin', 'reference.meta',
    ]);
    const deltas = files.filter((f) => f.rel.endsWith('.delta.bin'));
    for (const d of deltas) t.ok(d.size < versions[0].length / 10, `${d.rel} is a small delta (${d.size} bytes)`);
  });

  await t.test('ranges', async (t) => {
    const b = release('zip', 4, 0.25);
    await s3.send(new PutObjectCommand({ Bucket: 'alpha', Key: 'rel/app-range.zip', Body: b }));
    await s3.send(new PutObjectCommand({ Bucket: 'alpha', Key: 'plain/data.raw', Body: b }));
    for (const key of ['rel/app-range.zip', 'plain/data.raw']) {
      for (const [range, lo, hi] of [['bytes=0-99', 0, 99], ['bytes=1000-', 1000, b.length - 1], ['bytes=-500', b.length - 500, b.length - 1], [`bytes=${b.length - 10}-${b.length + 100}`, b.length - 10, b.length - 1]] as const) {
        const got = await s3.send(new GetObjectCommand({ Bucket: 'alpha', Key: key, Range: range }));
        t.equal(got.$metadata.httpStatusCode, 206, `${key} ${range}`);
        t.equal(got.ContentRange, `bytes ${lo}-${hi}/${b.length}`);
        t.same(Buffer.from(await got.Body!.transformToByteArray()), b.subarray(lo, hi + 1));
      }
      t.match(await s3Error(s3.send(new GetObjectCommand({ Bucket: 'alpha', Key: key, Range: `bytes=${b.length}-` }))), { name: 'InvalidRange', status: 416 });
    }
  });

  await t.test('conditional requests', async (t) => {
    const put = await s3.send(new PutObjectCommand({ Bucket: 'alpha', Key: 'cond/x.bin', Body: 'abc' }));
    const etag = put.ETag!;
    const past = new Date(Date.now() - 3600_000);
    const future = new Date(Date.now() + 3600_000);
    const ok = await s3.send(new GetObjectCommand({ Bucket: 'alpha', Key: 'cond/x.bin', IfMatch: etag }));
    t.equal(ok.$metadata.httpStatusCode, 200);
    await ok.Body!.transformToByteArray();
    t.match(await s3Error(s3.send(new GetObjectCommand({ Bucket: 'alpha', Key: 'cond/x.bin', IfMatch: '"nope"' }))), { status: 412 });
    t.match(await s3Error(s3.send(new GetObjectCommand({ Bucket: 'alpha', Key: 'cond/x.bin', IfNoneMatch: etag }))), { status: 304 });
    t.match(await s3Error(s3.send(new HeadObjectCommand({ Bucket: 'alpha', Key: 'cond/x.bin', IfNoneMatch: etag }))), { status: 304 });
    t.match(await s3Error(s3.send(new GetObjectCommand({ Bucket: 'alpha', Key: 'cond/x.bin', IfModifiedSince: future }))), { status: 304 });
    t.match(await s3Error(s3.send(new GetObjectCommand({ Bucket: 'alpha', Key: 'cond/x.bin', IfUnmodifiedSince: past }))), { status: 412 });
    const mod = await s3.send(new GetObjectCommand({ Bucket: 'alpha', Key: 'cond/x.bin', IfModifiedSince: past }));
    t.equal(await mod.Body!.transformToString(), 'abc');
    // If-Match true wins over a false If-Unmodified-Since (S3's rule).
    const both = await s3.send(new GetObjectCommand({ Bucket: 'alpha', Key: 'cond/x.bin', IfMatch: etag, IfUnmodifiedSince: past }));
    t.equal(await both.Body!.transformToString(), 'abc');
    // Conditional writes.
    t.match(await s3Error(s3.send(new PutObjectCommand({ Bucket: 'alpha', Key: 'cond/x.bin', Body: 'new', IfNoneMatch: '*' }))), { status: 412 });
    await s3.send(new PutObjectCommand({ Bucket: 'alpha', Key: 'cond/y.bin', Body: 'new', IfNoneMatch: '*' }));
  });

  await t.test('response-* overrides', async (t) => {
    const got = await s3.send(new GetObjectCommand({ Bucket: 'alpha', Key: 'cond/x.bin', ResponseContentType: 'application/x-test', ResponseContentDisposition: 'inline', ResponseCacheControl: 'no-cache' }));
    t.equal(got.ContentType, 'application/x-test');
    t.equal(got.ContentDisposition, 'inline');
    t.equal(got.CacheControl, 'no-cache');
    await got.Body!.transformToByteArray();
  });

  await t.test('copy', async (t) => {
    await s3.send(new PutObjectCommand({ Bucket: 'alpha', Key: 'src/a b+c.txt', Body: 'copy me', Metadata: { k: 'v' }, ContentType: 'text/x-src' }));
    const c = await s3.send(new CopyObjectCommand({ Bucket: 'alpha', Key: 'dst/copy.txt', CopySource: encodeURIComponent('alpha/src/a b+c.txt') }));
    t.ok(c.CopyObjectResult?.ETag);
    const got = await s3.send(new GetObjectCommand({ Bucket: 'alpha', Key: 'dst/copy.txt' }));
    t.equal(await got.Body!.transformToString(), 'copy me');
    t.same(got.Metadata, { k: 'v' });
    t.equal(got.ContentType, 'text/x-src');
    await s3.send(new CopyObjectCommand({ Bucket: 'alpha', Key: 'dst/copy2.txt', CopySource: 'alpha/src/a%20b%2Bc.txt', MetadataDirective: 'REPLACE', Metadata: { n: '1' }, ContentType: 'text/y' }));
    const got2 = await s3.send(new HeadObjectCommand({ Bucket: 'alpha', Key: 'dst/copy2.txt' }));
    t.same(got2.Metadata, { n: '1' });
    t.equal(got2.ContentType, 'text/y');
    t.match(await s3Error(s3.send(new CopyObjectCommand({ Bucket: 'alpha', Key: 'src/a b+c.txt', CopySource: 'alpha/src/a%20b%2Bc.txt' }))), { name: 'InvalidRequest', status: 400 });
    t.match(await s3Error(s3.send(new CopyObjectCommand({ Bucket: 'alpha', Key: 'dst/c3', CopySource: 'alpha/src/a%20b%2Bc.txt', CopySourceIfMatch: '"zzz"' }))), { name: 'PreconditionFailed', status: 412 });
    t.match(await s3Error(s3.send(new CopyObjectCommand({ Bucket: 'alpha', Key: 'dst/c3', CopySource: 'alpha/nothing' }))), { name: 'NoSuchKey', status: 404 });
  });

  await t.test('listing v2 and v1', async (t) => {
    await s3.send(new CreateBucketCommand({ Bucket: 'listing' }));
    const keys = ['a/1', 'a/2', 'a/b/3', 'b/4', 'c', 'd e/5', 'f+g/6', 'ü/7'];
    for (const k of keys) await s3.send(new PutObjectCommand({ Bucket: 'listing', Key: k, Body: k }));
    const all: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const r = await s3.send(new ListObjectsV2Command({ Bucket: 'listing', MaxKeys: 3, ContinuationToken: token }));
      all.push(...(r.Contents ?? []).map((c) => c.Key!));
      t.equal(r.KeyCount, (r.Contents ?? []).length);
      token = r.NextContinuationToken;
      pages++;
    } while (token);
    t.same(all, keys);
    t.equal(pages, 3);
    const d = await s3.send(new ListObjectsV2Command({ Bucket: 'listing', Delimiter: '/' }));
    t.same(d.Contents?.map((c) => c.Key), ['c']);
    t.same(d.CommonPrefixes?.map((c) => c.Prefix), ['a/', 'b/', 'd e/', 'f+g/', 'ü/']);
    const p = await s3.send(new ListObjectsV2Command({ Bucket: 'listing', Prefix: 'a/', Delimiter: '/', FetchOwner: true }));
    t.same(p.Contents?.map((c) => [c.Key, c.Size]), [['a/1', 3], ['a/2', 3]]);
    t.ok(p.Contents?.[0].Owner?.ID);
    t.same(p.CommonPrefixes?.map((c) => c.Prefix), ['a/b/']);
    const sa = await s3.send(new ListObjectsV2Command({ Bucket: 'listing', StartAfter: 'b/4' }));
    t.same(sa.Contents?.map((c) => c.Key), ['c', 'd e/5', 'f+g/6', 'ü/7']);
    const enc = await s3.send(new ListObjectsV2Command({ Bucket: 'listing', EncodingType: 'url', Prefix: 'd' }));
    t.same(enc.Contents?.map((c) => c.Key), ['d+e/5'], 'keys come back URL-encoded as S3 does, a space as "+" (the JS SDK does not decode them)');
    const v1: string[] = [];
    let marker: string | undefined;
    for (;;) {
      const r = await s3.send(new ListObjectsCommand({ Bucket: 'listing', MaxKeys: 2, Marker: marker, Delimiter: '/' }));
      v1.push(...(r.Contents ?? []).map((c) => c.Key!), ...(r.CommonPrefixes ?? []).map((c) => c.Prefix!));
      if (!r.IsTruncated) break;
      t.ok(r.NextMarker);
      marker = r.NextMarker;
    }
    t.same(v1.sort(), ['a/', 'b/', 'c', 'd e/', 'f+g/', 'ü/']);
    t.match(await s3Error(s3.send(new ListObjectsV2Command({ Bucket: 'listing', ContinuationToken: 'garbage!' }))), { name: 'InvalidArgument', status: 400 });
  });

  await t.test('delete objects and bucket', async (t) => {
    const r = await s3.send(new DeleteObjectsCommand({ Bucket: 'listing', Delete: { Objects: ['a/1', 'a/2', 'a/b/3', 'b/4', 'c', 'nope'].map((Key) => ({ Key })) } }));
    t.equal(r.Deleted?.length, 6);
    t.match(await s3Error(s3.send(new DeleteBucketCommand({ Bucket: 'listing' }))), { name: 'BucketNotEmpty', status: 409 });
    const q = await s3.send(new DeleteObjectsCommand({ Bucket: 'listing', Delete: { Quiet: true, Objects: ['d e/5', 'f+g/6', 'ü/7'].map((Key) => ({ Key })) } }));
    t.notOk(q.Deleted?.length);
    await s3.send(new DeleteBucketCommand({ Bucket: 'listing' }));
    t.match(await s3Error(s3.send(new HeadBucketCommand({ Bucket: 'listing' }))), { status: 404 });
  });

  await t.test('reference removed with the last delta', async (t) => {
    await s3.send(new CreateBucketCommand({ Bucket: 'gc-bucket' }));
    await s3.send(new PutObjectCommand({ Bucket: 'gc-bucket', Key: 'r/v1.zip', Body: release('zip', 1, 0.1) }));
    await s3.send(new PutObjectCommand({ Bucket: 'gc-bucket', Key: 'r/v2.zip', Body: release('zip', 2, 0.1) }));
    await s3.send(new DeleteObjectCommand({ Bucket: 'gc-bucket', Key: 'r/v1.zip' }));
    t.ok((await blobs(proxy, 'gc-bucket')).some((f) => /^r\/reference\.[0-9a-f]{16}\.bin$/.test(f.name)), 'kept while a delta needs it');
    await s3.send(new DeleteObjectCommand({ Bucket: 'gc-bucket', Key: 'r/v2.zip' }));
    t.same(await blobs(proxy, 'gc-bucket'), [], 'nothing left once the deltaspace is empty');
    await s3.send(new DeleteBucketCommand({ Bucket: 'gc-bucket' }));
    if (BACKEND === 's3') t.same(await localData(proxy), [], 'the S3 backend leaves the local data dir empty');
  });
});
