import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3ServiceException,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createHash, randomBytes } from 'node:crypto';
import t from 'tap';
import { release } from '../bench/corpus.js';
import { sdk } from './helpers/clients.js';
import { blobs, startProxy } from './helpers/proxy.js';

const MIB = 1024 * 1024;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (e instanceof S3ServiceException) return e.name;
    throw e;
  }
}

/** Blobs left in the backend's internal upload namespace (beside the records of completed uploads, kept for retries). */
async function uploadState(proxy: Awaited<ReturnType<typeof startProxy>>): Promise<string[]> {
  return (await blobs(proxy, '.uploads')).map((b) => b.name).filter((n) => !n.startsWith('_completed/'));
}

t.test('multipart uploads', async (t) => {
  const proxy = await startProxy(t);
  const s3 = sdk(proxy.url);
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'mpu' }));

  await t.test('lib-storage Upload, deltas, part reads', async (t) => {
    const v1 = Buffer.concat([release('zip', 1, 1), release('zip', 1, 1)]);
    const v2 = Buffer.concat([release('zip', 2, 1), release('zip', 2, 1)]);
    for (const [name, body] of [['v1', v1], ['v2', v2]] as const) {
      const up = new Upload({ client: s3, params: { Bucket: 'mpu', Key: `rel/${name}.zip`, Body: body, ContentType: 'application/zip', Metadata: { v: name } }, partSize: 5 * MIB, queueSize: 2 });
      const r = await up.done();
      t.match(r.ETag, /^"[0-9a-f]{32}-3"$/, 'multipart ETag');
    }
    const got = await s3.send(new GetObjectCommand({ Bucket: 'mpu', Key: 'rel/v2.zip' }));
    t.equal(sha(await got.Body!.transformToByteArray()), sha(v2), 'byte-exact');
    t.equal(got.ContentType, 'application/zip');
    t.same(got.Metadata, { v: 'v2' });
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'mpu', Key: 'rel/v2.zip' }));
    t.equal(head.ETag, got.ETag, 'same ETag on GET and HEAD');
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'mpu', Prefix: 'rel/' }));
    t.equal(listed.Contents?.find((c) => c.Key === 'rel/v2.zip')?.ETag, got.ETag, 'and in listings');
    const names = (await blobs(proxy, 'mpu', 'rel/')).map((b) => b.name);
    t.ok(names.some((n) => /^rel\/v2\.zip\.[0-9a-f]{16}\.delta\.bin$/.test(n)), `the completed upload is a delta (${names.join(', ')})`);
    const part2 = await s3.send(new GetObjectCommand({ Bucket: 'mpu', Key: 'rel/v2.zip', PartNumber: 2 }));
    t.equal(part2.$metadata.httpStatusCode, 206);
    t.equal(part2.PartsCount, 3);
    t.same(Buffer.from(await part2.Body!.transformToByteArray()), v2.subarray(5 * MIB, 10 * MIB));
    t.equal(await code(s3.send(new GetObjectCommand({ Bucket: 'mpu', Key: 'rel/v2.zip', PartNumber: 4 }))), 'InvalidPart', 'beyond the part count: 400 InvalidPart, as AWS');
    t.same(await uploadState(proxy), [], 'nothing left in the upload namespace');
  });

  await t.test('errors', async (t) => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'mpu', Key: 'err.bin' }));
    const small = randomBytes(1024);
    const big = randomBytes(5 * MIB);
    const p1 = await s3.send(new UploadPartCommand({ Bucket: 'mpu', Key: 'err.bin', UploadId, PartNumber: 1, Body: small }));
    const p2 = await s3.send(new UploadPartCommand({ Bucket: 'mpu', Key: 'err.bin', UploadId, PartNumber: 2, Body: big }));
    t.equal(p1.ETag, `"${md5(small)}"`);
    const complete = (parts: { PartNumber: number; ETag: string }[]) => s3.send(new CompleteMultipartUploadCommand({ Bucket: 'mpu', Key: 'err.bin', UploadId, MultipartUpload: { Parts: parts } }));
    t.equal(await code(complete([{ PartNumber: 1, ETag: '"00000000000000000000000000000000"' }])), 'InvalidPart');
    t.equal(await code(complete([{ PartNumber: 3, ETag: p2.ETag! }])), 'InvalidPart');
    t.equal(await code(complete([{ PartNumber: 2, ETag: p2.ETag! }, { PartNumber: 1, ETag: p1.ETag! }])), 'InvalidPartOrder');
    t.equal(await code(complete([{ PartNumber: 1, ETag: p1.ETag! }, { PartNumber: 2, ETag: p2.ETag! }])), 'EntityTooSmall');
    t.equal(await code(complete([])), 'MalformedXML');
    t.equal(await code(s3.send(new UploadPartCommand({ Bucket: 'mpu', Key: 'err.bin', UploadId, PartNumber: 10001, Body: small }))), 'InvalidArgument');
    t.equal(await code(s3.send(new UploadPartCommand({ Bucket: 'mpu', Key: 'err.bin', UploadId: 'f'.repeat(32), PartNumber: 1, Body: small }))), 'NoSuchUpload');
    t.equal(await code(s3.send(new UploadPartCommand({ Bucket: 'mpu', Key: 'other.bin', UploadId, PartNumber: 1, Body: small }))), 'NoSuchUpload', 'an upload belongs to its key');
    // Part 2 alone is a valid (last) part.
    t.equal(await code(complete([{ PartNumber: 2, ETag: p2.ETag! }])), 'ok');
    const got = await s3.send(new GetObjectCommand({ Bucket: 'mpu', Key: 'err.bin' }));
    t.equal(sha(await got.Body!.transformToByteArray()), sha(big));
    // A retried Complete (its response lost) answers as the first did, as AWS does.
    const again = await s3.send(new CompleteMultipartUploadCommand({ Bucket: 'mpu', Key: 'err.bin', UploadId, MultipartUpload: { Parts: [{ PartNumber: 2, ETag: p2.ETag! }] } }));
    t.equal(again.ETag, got.ETag, 'a retried Complete answers with the same ETag');
    t.equal(await code(s3.send(new UploadPartCommand({ Bucket: 'mpu', Key: 'err.bin', UploadId, PartNumber: 1, Body: small }))), 'NoSuchUpload', 'no parts after completion');
    t.equal(await code(s3.send(new CompleteMultipartUploadCommand({ Bucket: 'mpu', Key: 'other.bin', UploadId, MultipartUpload: { Parts: [{ PartNumber: 2, ETag: p2.ETag! }] } }))), 'NoSuchUpload', 'nor under another key');
  });

  await t.test('listing, copy parts, abort', async (t) => {
    const ids: string[] = [];
    for (const key of ['a/one', 'a/two', 'b/three', 'c']) ids.push((await s3.send(new CreateMultipartUploadCommand({ Bucket: 'mpu', Key: key }))).UploadId!);
    const all = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'mpu' }));
    t.same(all.Uploads?.map((u) => u.Key), ['a/one', 'a/two', 'b/three', 'c']);
    const grouped = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'mpu', Delimiter: '/' }));
    t.same(grouped.CommonPrefixes?.map((p) => p.Prefix), ['a/', 'b/']);
    t.same(grouped.Uploads?.map((u) => u.Key), ['c']);
    const paged = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'mpu', MaxUploads: 2 }));
    t.equal(paged.IsTruncated, true);
    const rest = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'mpu', KeyMarker: paged.NextKeyMarker, UploadIdMarker: paged.NextUploadIdMarker }));
    t.same(rest.Uploads?.map((u) => u.Key), ['b/three', 'c']);
    const pre = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'mpu', Prefix: 'a/' }));
    t.same(pre.Uploads?.map((u) => u.Key), ['a/one', 'a/two']);

    const source = randomBytes(6 * MIB);
    await s3.send(new PutObjectCommand({ Bucket: 'mpu', Key: 'src.bin', Body: source }));
    const c1 = await s3.send(new UploadPartCopyCommand({ Bucket: 'mpu', Key: 'a/one', UploadId: ids[0], PartNumber: 1, CopySource: 'mpu/src.bin', CopySourceRange: `bytes=0-${5 * MIB - 1}` }));
    const c2 = await s3.send(new UploadPartCopyCommand({ Bucket: 'mpu', Key: 'a/one', UploadId: ids[0], PartNumber: 2, CopySource: 'mpu/src.bin', CopySourceRange: `bytes=${5 * MIB}-${6 * MIB - 1}` }));
    const parts = await s3.send(new ListPartsCommand({ Bucket: 'mpu', Key: 'a/one', UploadId: ids[0] }));
    t.same(parts.Parts?.map((p) => [p.PartNumber, p.Size]), [[1, 5 * MIB], [2, MIB]]);
    const firstOnly = await s3.send(new ListPartsCommand({ Bucket: 'mpu', Key: 'a/one', UploadId: ids[0], MaxParts: 1 }));
    t.equal(firstOnly.IsTruncated, true);
    t.equal(firstOnly.NextPartNumberMarker, '1');
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: 'mpu', Key: 'a/one', UploadId: ids[0], MultipartUpload: { Parts: [{ PartNumber: 1, ETag: c1.CopyPartResult!.ETag }, { PartNumber: 2, ETag: c2.CopyPartResult!.ETag }] } }));
    const got = await s3.send(new GetObjectCommand({ Bucket: 'mpu', Key: 'a/one' }));
    t.equal(sha(await got.Body!.transformToByteArray()), sha(source), 'assembled from copied ranges');
    t.equal(await code(s3.send(new UploadPartCopyCommand({ Bucket: 'mpu', Key: 'a/two', UploadId: ids[1], PartNumber: 1, CopySource: 'mpu/src.bin', CopySourceRange: 'bytes=5-1' }))), 'InvalidArgument');

    await s3.send(new UploadPartCommand({ Bucket: 'mpu', Key: 'a/two', UploadId: ids[1], PartNumber: 1, Body: 'x' }));
    for (const [i, key] of ['a/two', 'b/three', 'c'].entries()) await s3.send(new AbortMultipartUploadCommand({ Bucket: 'mpu', Key: key, UploadId: ids[i + 1] }));
    t.equal(await code(s3.send(new AbortMultipartUploadCommand({ Bucket: 'mpu', Key: 'c', UploadId: ids[3] }))), 'NoSuchUpload');
    t.same((await s3.send(new ListMultipartUploadsCommand({ Bucket: 'mpu' }))).Uploads ?? [], []);
    t.same(await uploadState(proxy), [], 'aborts leave nothing behind');
  });
});

t.test('an upload survives a restart and completes through a new instance', async (t) => {
  const first = await startProxy(t);
  const s3 = sdk(first.url);
  await s3.send(new CreateBucketCommand({ Bucket: 'restart' }));
  const a = randomBytes(5 * MIB);
  const b = randomBytes(1000);
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'restart', Key: 'big.bin' }));
  const e1 = (await s3.send(new UploadPartCommand({ Bucket: 'restart', Key: 'big.bin', UploadId, PartNumber: 1, Body: a }))).ETag!;
  s3.destroy();
  await first.app.close();
  const second = await startProxy(t, first.config);
  const s3b = sdk(second.url);
  t.teardown(() => s3b.destroy());
  const e2 = (await s3b.send(new UploadPartCommand({ Bucket: 'restart', Key: 'big.bin', UploadId, PartNumber: 2, Body: b }))).ETag!;
  await s3b.send(new CompleteMultipartUploadCommand({ Bucket: 'restart', Key: 'big.bin', UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: e1 }, { PartNumber: 2, ETag: e2 }] } }));
  const got = await s3b.send(new GetObjectCommand({ Bucket: 'restart', Key: 'big.bin' }));
  t.equal(sha(await got.Body!.transformToByteArray()), sha(Buffer.concat([a, b])));
});

t.test('abandoned uploads are removed after multipart_max_age_hours', async (t) => {
  const first = await startProxy(t, { multipartMaxAgeHours: 0.0003 });
  const s3 = sdk(first.url);
  await s3.send(new CreateBucketCommand({ Bucket: 'sweep' }));
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'sweep', Key: 'x' }));
  await s3.send(new UploadPartCommand({ Bucket: 'sweep', Key: 'x', UploadId, PartNumber: 1, Body: 'part' }));
  s3.destroy();
  await first.app.close();
  await new Promise((r) => setTimeout(r, 1500));
  const second = await startProxy(t, first.config);
  t.same(await uploadState(second), [], 'swept at start-up');
});

t.test('CreateMultipartUpload racing DeleteBucket leaves no upload for a new bucket of that name', async (t) => {
  const p = await startProxy(t);
  const s3 = sdk(p.url);
  t.teardown(() => s3.destroy());
  const outcomes = new Set<string>();
  for (let i = 0; i < 10; i++) {
    await s3.send(new CreateBucketCommand({ Bucket: 'gone' }));
    const [created, deleted] = await Promise.all([
      s3.send(new CreateMultipartUploadCommand({ Bucket: 'gone', Key: 'k' })).then((r) => r.UploadId!, (e: Error) => e.name),
      code(s3.send(new DeleteBucketCommand({ Bucket: 'gone' }))),
    ]);
    t.equal(deleted, 'ok', 'the bucket is deleted');
    outcomes.add(/^[0-9a-f]{32}$/.test(created) ? 'created' : created);
    await s3.send(new CreateBucketCommand({ Bucket: 'gone' }));
    t.same((await s3.send(new ListMultipartUploadsCommand({ Bucket: 'gone' }))).Uploads ?? [], [], 'the new bucket has no upload');
    if (/^[0-9a-f]{32}$/.test(created)) {
      t.equal(await code(s3.send(new UploadPartCommand({ Bucket: 'gone', Key: 'k', UploadId: created, PartNumber: 1, Body: 'x' }))), 'NoSuchUpload', 'the old upload id is dead');
    }
    t.same(await uploadState(p), [], 'nothing left in the upload namespace');
    await s3.send(new DeleteBucketCommand({ Bucket: 'gone' }));
  }
  t.ok([...outcomes].every((o) => o === 'created' || o === 'NoSuchBucket'), `outcomes: ${[...outcomes].join(', ')}`);
});

t.test('a new bucket starts without the uploads an earlier one of its name left behind', async (t) => {
  const p = await startProxy(t);
  const s3 = sdk(p.url);
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'left' }));
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'left', Key: 'k' }));
  await s3.send(new UploadPartCommand({ Bucket: 'left', Key: 'k', UploadId, PartNumber: 1, Body: 'part' }));
  // The upload was begun through an instance whose clock runs an hour ahead:
  // what decides is the order of the backend's operations, not the clocks.
  const engine = p.app.engine;
  const record = (await uploadState(p)).find((n) => n.endsWith('/upload.json'))!;
  const rec = JSON.parse((await engine.backend.readSmall('.uploads', record))!.body.toString('utf8')) as { created: string };
  await engine.backend.putBytes('.uploads', record, Buffer.from(JSON.stringify({ ...rec, created: new Date(Date.now() + 3600_000).toISOString() })));
  // A DeleteBucket that crashed after removing the bucket, before its uploads.
  await engine.backend.deleteBucket('left', () => false);
  await s3.send(new CreateBucketCommand({ Bucket: 'left' }));
  t.same((await s3.send(new ListMultipartUploadsCommand({ Bucket: 'left' }))).Uploads ?? [], [], 'no upload listed');
  t.equal(await code(s3.send(new UploadPartCommand({ Bucket: 'left', Key: 'k', UploadId, PartNumber: 2, Body: 'x' }))), 'NoSuchUpload', 'the old upload id is dead');
  t.same(await uploadState(p), [], 'its records and parts are gone');
  const fresh = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'left', Key: 'k' }));
  await s3.send(new CreateBucketCommand({ Bucket: 'other' }));
  t.equal(await code(s3.send(new UploadPartCommand({ Bucket: 'left', Key: 'k', UploadId: fresh.UploadId, PartNumber: 1, Body: 'x' }))), 'ok', 'an upload of the new bucket is kept');
  // us-east-1 answers 200 to creating a bucket one already owns, as S3 does there.
  t.equal(await code(s3.send(new CreateBucketCommand({ Bucket: 'left' }))), 'ok');
  t.equal(await code(s3.send(new UploadPartCommand({ Bucket: 'left', Key: 'k', UploadId: fresh.UploadId, PartNumber: 2, Body: 'y' }))), 'ok', 'also after a CreateBucket of the existing bucket');
});
