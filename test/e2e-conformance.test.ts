import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetBucketLocationCommand,
  ListBucketsCommand,
  PutObjectCommand,
  S3ServiceException,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import t from 'tap';
import { creds, sdk } from './helpers/clients.js';
import { startProxy } from './helpers/proxy.js';
import { presignV4, raw, signV4 } from './helpers/signing.js';

// Answers checked against the S3 API reference and AWS's observed behaviour
// (docs/s3-compatibility.md says which is which).

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (e instanceof S3ServiceException) return `${e.$metadata.httpStatusCode} ${e.name}`;
    throw e;
  }
}

t.test('us-east-1', async (t) => {
  const proxy = await startProxy(t);
  const s3 = sdk(proxy.url, { maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  const get = (path: string, headers: Record<string, string> = {}) => raw(proxy.url, 'GET', path, signV4(proxy.url, 'GET', path, { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...headers }, creds));
  for (const b of ['alpha', 'beta', 'bravo', 'charlie', 'delta']) await s3.send(new CreateBucketCommand({ Bucket: b }));

  await t.test('X-Amz-Expires out of range is 400 AuthorizationQueryParametersError', async (t) => {
    for (const bad of ['0', '604801', '-1', 'soon']) {
      const r = await raw(proxy.url, 'GET', presignV4(proxy.url, 'GET', '/alpha', creds).replace(/X-Amz-Expires=\d+/, `X-Amz-Expires=${bad}`), {});
      t.equal(r.status, 400, bad);
      t.match(r.body, 'AuthorizationQueryParametersError', bad);
    }
    t.equal((await raw(proxy.url, 'GET', presignV4(proxy.url, 'GET', '/alpha', creds, 604800), {})).status, 200, 'a week is allowed');
  });

  await t.test('CreateBucket of an owned bucket answers 200 in us-east-1', async (t) => {
    t.equal(await code(s3.send(new CreateBucketCommand({ Bucket: 'alpha' }))), 'ok');
  });

  await t.test('ListBuckets pagination', async (t) => {
    const names: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await s3.send(new ListBucketsCommand({ MaxBuckets: 2, ContinuationToken: token }));
      names.push(...(page.Buckets ?? []).map((b) => b.Name!));
      token = page.ContinuationToken;
      pages++;
    } while (token && pages < 10);
    t.same(names, ['alpha', 'beta', 'bravo', 'charlie', 'delta']);
    t.equal(pages, 3);
    const b = await s3.send(new ListBucketsCommand({ Prefix: 'b' }));
    t.same(b.Buckets?.map((x) => x.Name), ['beta', 'bravo']);
    t.equal(b.Prefix, 'b');
    t.equal(b.ContinuationToken, undefined);
    t.equal((await s3.send(new ListBucketsCommand({}))).Buckets?.length, 5, 'everything without max-buckets');
    for (const bad of ['0', '10001', 'x']) t.match((await get(`/?max-buckets=${bad}`)).body, 'InvalidArgument', `max-buckets=${bad}`);
    t.match((await get('/?continuation-token=bm9wZQ')).body, 'InvalidArgument', 'a forged token');
    t.match((await get('/?continuation-token=')).body, '<Name>delta</Name>', 'an empty token is none');
  });

  await t.test('GetBucketLocation', async (t) => {
    await s3.send(new CreateBucketCommand({ Bucket: 'in-eu', CreateBucketConfiguration: { LocationConstraint: 'eu-west-1' } }));
    t.equal((await s3.send(new GetBucketLocationCommand({ Bucket: 'in-eu' }))).LocationConstraint, 'eu-west-1', 'the constraint it was created with');
    t.equal((await s3.send(new GetBucketLocationCommand({ Bucket: 'alpha' }))).LocationConstraint, undefined, 'us-east-1 is empty');
    const list = await s3.send(new ListBucketsCommand({ Prefix: 'in-' }));
    t.equal(list.Buckets?.[0].BucketRegion, 'eu-west-1');
  });

  await t.test('encoding-type=url encodes what S3 encodes', async (t) => {
    await s3.send(new PutObjectCommand({ Bucket: 'alpha', Key: 'dir a/b+c é~*.txt', Body: 'x' }));
    const v1 = (await get('/alpha?encoding-type=url&prefix=dir%20a%2F&delimiter=%2F&marker=dir%20a%2F0')).body;
    t.match(v1, '<Prefix>dir a/</Prefix>', 'v1 returns Prefix as sent');
    t.match(v1, '<Marker>dir+a%2F0</Marker>'.replace('%2F', '/'));
    t.match(v1, '<Key>dir+a/b%2Bc+%C3%A9%7E*.txt</Key>');
    t.match(v1, '<Delimiter>/</Delimiter>');
    const v2 = (await get('/alpha?list-type=2&encoding-type=url&prefix=dir%20a%2F&start-after=dir%20a%2F0')).body;
    t.match(v2, '<Prefix>dir+a/</Prefix>', 'v2 encodes Prefix');
    t.match(v2, '<StartAfter>dir+a/0</StartAfter>');
    t.match(v2, '<Key>dir+a/b%2Bc+%C3%A9%7E*.txt</Key>');
  });

  await t.test('ListObjectsV2 with an empty continuation-token', async (t) => {
    const r = await get('/alpha?list-type=2&continuation-token=');
    t.equal(r.status, 400);
    t.match(r.body, '<Code>InvalidArgument</Code><Message>The continuation token provided is incorrect</Message><ArgumentName>continuation-token</ArgumentName>');
  });

  await t.test('GET ?partNumber', async (t) => {
    await s3.send(new PutObjectCommand({ Bucket: 'beta', Key: 'single.bin', Body: 'ten bytes!' }));
    const one = await get('/beta/single.bin?partNumber=1');
    t.equal(one.status, 206, 'part 1 of a single-part object is the whole object, as a range');
    t.equal(one.headers['content-range'], 'bytes 0-9/10');
    t.equal(one.headers['x-amz-mp-parts-count'], undefined);
    t.equal(one.body, 'ten bytes!');
    const two = await get('/beta/single.bin?partNumber=2');
    t.equal(two.status, 400);
    t.match(two.body, '<Code>InvalidPart</Code>');
    const both = await get('/beta/single.bin?partNumber=1', { range: 'bytes=0-1' });
    t.equal(both.status, 400);
    t.match(both.body, 'InvalidRequest');
    t.match((await get('/beta/single.bin?partNumber=10001')).body, 'InvalidArgument');
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'beta', Key: 'multi.bin' }));
    const p1 = await s3.send(new UploadPartCommand({ Bucket: 'beta', Key: 'multi.bin', UploadId, PartNumber: 1, Body: Buffer.alloc(5 * 1024 * 1024, 1) }));
    const p2 = await s3.send(new UploadPartCommand({ Bucket: 'beta', Key: 'multi.bin', UploadId, PartNumber: 2, Body: Buffer.alloc(10, 2) }));
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: 'beta', Key: 'multi.bin', UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }, { PartNumber: 2, ETag: p2.ETag }] } }));
    const second = await get('/beta/multi.bin?partNumber=2');
    t.equal(second.status, 206);
    t.equal(second.headers['content-range'], `bytes ${5 * 1024 * 1024}-${5 * 1024 * 1024 + 9}/${5 * 1024 * 1024 + 10}`);
    t.equal(second.headers['x-amz-mp-parts-count'], '2');
    const beyond = await get('/beta/multi.bin?partNumber=3');
    t.equal(beyond.status, 400, 'beyond the part count');
    t.match(beyond.body, '<Code>InvalidPart</Code>');
  });

  await t.test('UploadPartCopy with an invalid source range', async (t) => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'beta', Key: 'copy.bin' }));
    const copy = (range: string) => s3.send(new UploadPartCopyCommand({ Bucket: 'beta', Key: 'copy.bin', UploadId, PartNumber: 1, CopySource: 'beta/single.bin', CopySourceRange: range }));
    for (const bad of ['0-2', 'bytes=0', 'bytes=hello-world', 'bytes=0-bar', 'bytes=0-2,3-5', 'bytes=5-2']) t.equal(await code(copy(bad)), '400 InvalidArgument', bad);
    t.equal(await code(copy('bytes=0-21')), '416 InvalidRange', 'beyond the source');
    t.equal(await code(copy('bytes=0-9')), 'ok');
  });

  await t.test('keys that are not valid UTF-8 are InvalidURI', async (t) => {
    for (const bad of ['/alpha/%FF', '/alpha/a%C3', '/alpha/%ED%A0%80']) {
      const r = await raw(proxy.url, 'GET', bad, {});
      t.equal(r.status, 400, bad);
      t.match(r.body, '<Code>InvalidURI</Code>', bad);
    }
  });
});

t.test('another region', async (t) => {
  const proxy = await startProxy(t, { region: 'eu-west-1' });
  const s3 = sdk(proxy.url, { maxAttempts: 1, region: 'eu-west-1' });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'mine', CreateBucketConfiguration: { LocationConstraint: 'eu-west-1' } }));
  t.equal(await code(s3.send(new CreateBucketCommand({ Bucket: 'mine', CreateBucketConfiguration: { LocationConstraint: 'eu-west-1' } }))), '409 BucketAlreadyOwnedByYou');
  await s3.send(new CreateBucketCommand({ Bucket: 'plain' }));
  t.equal((await s3.send(new GetBucketLocationCommand({ Bucket: 'plain' }))).LocationConstraint, 'eu-west-1', 'the configured region');
});
