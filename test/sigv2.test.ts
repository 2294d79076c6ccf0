import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { IncomingMessage } from 'node:http';
import t from 'tap';
import { loadConfig, type KeyGrant } from '../src/config/config.js';
import { authenticate, KeyStore } from '../src/http/auth/authenticate.js';
import { canonicalAmzHeaders, subresources } from '../src/http/auth/sigv2.js';
import { sdk } from './helpers/clients.js';
import { blobs, startProxy } from './helpers/proxy.js';
import { presignV2, raw, signV2 } from './helpers/signing.js';

// Signature Version 2 (S3 developer guide, "Signing and authenticating REST
// requests"): the guide's worked example as an oracle, then raw header and
// query requests against a proxy, with every refusal.

const AKID = 'AKIAIOSFODNN7EXAMPLE';
const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';

function fake(method: string, headers: [string, string][]): IncomingMessage {
  return { method, headers: Object.fromEntries(headers.map(([k, v]) => [k.toLowerCase(), v])), rawHeaders: headers.flat() } as unknown as IncomingMessage;
}

t.test("the guide's example (virtual-hosted GET) verifies", async (t) => {
  const keys = new KeyStore([{ accessKeyId: AKID, secretAccessKey: SECRET, readOnly: false }], 'none');
  const when = Date.parse('Tue, 27 Mar 2007 19:36:42 +0000');
  const headers: [string, string][] = [['Host', 'awsexamplebucket1.us-west-1.s3.amazonaws.com'], ['Date', 'Tue, 27 Mar 2007 19:36:42 +0000'], ['Authorization', `AWS ${AKID}:qgk2+6Sv9/oM7G3qLEjTH1a1l1g=`]];
  const p = authenticate(fake('GET', headers), '/photos/puppy.jpg', keys, when, { virtualBucket: 'awsexamplebucket1' });
  t.equal(p.auth, 'sigv2');
  t.equal(p.accessKeyId, AKID);
  t.throws(() => authenticate(fake('GET', headers), '/photos/kitten.jpg', keys, when, { virtualBucket: 'awsexamplebucket1' }), { code: 'SignatureDoesNotMatch' });
  t.throws(() => authenticate(fake('GET', headers), '/photos/puppy.jpg', keys, when + 16 * 60_000, { virtualBucket: 'awsexamplebucket1' }), { code: 'RequestTimeTooSkewed' });
  const off = new KeyStore([{ accessKeyId: AKID, secretAccessKey: SECRET, readOnly: false }], 'none', false);
  t.throws(() => authenticate(fake('GET', headers), '/photos/puppy.jpg', off, when, { virtualBucket: 'awsexamplebucket1' }), { code: 'InvalidRequest' }, 'auth.sigv2 = false');
});

t.test('canonical pieces', async (t) => {
  t.equal(
    canonicalAmzHeaders(['X-Amz-Meta-ReviewedBy', 'joe@example.com', 'x-amz-acl', ' public-read ', 'X-Amz-Meta-ReviewedBy', 'jane@example.com', 'Content-Type', 'x', 'x-amz-meta-folded', 'a\r\n  b']),
    'x-amz-acl:public-read\nx-amz-meta-folded:a b\nx-amz-meta-reviewedby:joe@example.com,jane@example.com\n',
  );
  t.equal(subresources('uploadId=a%2Bb&partNumber=2&prefix=x&uploads'), '?partNumber=2&uploadId=a+b&uploads');
  t.equal(subresources('response-content-disposition=attachment%3B%20x&acl'), '?acl&response-content-disposition=attachment; x');
  t.equal(subresources('list-type=2&prefix=a'), '');
});

const FULL: KeyGrant = { accessKeyId: 'AKV2', secretAccessKey: 'v2-secret', readOnly: false };
const RO: KeyGrant = { accessKeyId: 'AKV2RO', secretAccessKey: 'v2-read', readOnly: true, buckets: ['sig2'] };

t.test('SigV2 requests against the proxy', async (t) => {
  const proxy = await startProxy(t, { authKeys: [FULL, RO] });
  const s3 = sdk(proxy.url, { credentials: FULL, maxAttempts: 1 });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'sig2' }));
  await s3.send(new CreateBucketCommand({ Bucket: 'other' }));
  await s3.send(new PutObjectCommand({ Bucket: 'sig2', Key: 'a b+c.txt', Body: 'hello v2' }));
  const path = '/sig2/a%20b%2Bc.txt';

  await t.test('header auth', async (t) => {
    const get = await raw(proxy.url, 'GET', path, signV2('GET', path, {}, FULL));
    t.equal(get.status, 200);
    t.equal(get.body, 'hello v2');
    const headers = signV2('PUT', '/sig2/new.txt', { 'content-type': 'text/plain', 'x-amz-meta-by': 'v2', 'content-length': '3' }, FULL);
    t.equal((await raw(proxy.url, 'PUT', '/sig2/new.txt', headers, 'new')).status, 200, 'PUT with x-amz-meta signed');
    const amzDate = signV2('GET', path, { 'x-amz-date': new Date().toUTCString() }, FULL, new Date(0));
    t.equal((await raw(proxy.url, 'GET', path, amzDate)).status, 200, 'x-amz-date wins over a stale Date, and the Date line is empty');
    const sub = signV2('GET', '/sig2?location', {}, FULL);
    t.equal((await raw(proxy.url, 'GET', '/sig2?location', sub)).status, 200, 'sub-resources are signed');
    const list = signV2('GET', '/sig2/', {}, FULL);
    t.equal((await raw(proxy.url, 'GET', '/sig2?prefix=a&max-keys=5', list)).status, 200, 'other parameters are not');
    const ro = signV2('GET', path, {}, RO);
    t.equal((await raw(proxy.url, 'GET', path, ro)).status, 200, 'a read-only key reads');
    const roPut = signV2('PUT', '/sig2/ro.txt', { 'content-length': '1' }, RO);
    t.match((await raw(proxy.url, 'PUT', '/sig2/ro.txt', roPut, 'x')).body, 'AccessDenied', 'the same grants as SigV4');
    const roOther = signV2('GET', '/other/', {}, RO);
    t.match((await raw(proxy.url, 'GET', '/other', roOther)).body, 'AccessDenied');
  });

  const before = await blobs(proxy, 'sig2');
  await t.test('header auth refusals', async (t) => {
    const tampered = signV2('PUT', '/sig2/evil.txt', { 'content-length': '4' }, FULL);
    const r1 = await raw(proxy.url, 'PUT', '/sig2/evil.txt', { ...tampered, 'x-amz-meta-added': 'later' }, 'evil');
    t.equal(r1.status, 403);
    t.match(r1.body, '<Code>SignatureDoesNotMatch</Code>', 'an added x-amz-* header is in the string to sign');
    const r2 = await raw(proxy.url, 'PUT', '/sig2/evil.txt', { ...tampered, 'x-amz-copy-source': 'sig2/a%20b%2Bc.txt' }, 'evil');
    t.match(r2.body, '<Code>SignatureDoesNotMatch</Code>', 'an added copy source too');
    const wrongKey = signV2('GET', path, {}, { ...FULL, secretAccessKey: 'wrong' });
    t.match((await raw(proxy.url, 'GET', path, wrongKey)).body, 'SignatureDoesNotMatch');
    const unknown = signV2('GET', path, {}, { accessKeyId: 'NOPE', secretAccessKey: 'x' });
    t.match((await raw(proxy.url, 'GET', path, unknown)).body, 'InvalidAccessKeyId');
    const old = signV2('GET', path, {}, FULL, new Date(Date.now() - 20 * 60_000));
    t.match((await raw(proxy.url, 'GET', path, old)).body, 'RequestTimeTooSkewed');
    const noDate = signV2('GET', path, {}, FULL);
    delete noDate.date;
    t.match((await raw(proxy.url, 'GET', path, noDate)).body, 'AccessDenied');
    t.match((await raw(proxy.url, 'GET', path, { authorization: 'AWS nocolon' })).body, 'InvalidArgument');
    const pinned = signV2('PUT', '/sig2/pinned.txt', { 'x-amz-content-sha256': 'a'.repeat(64), 'content-length': '4' }, FULL);
    const r3 = await raw(proxy.url, 'PUT', '/sig2/pinned.txt', pinned, 'body');
    t.equal(r3.status, 400);
    t.match(r3.body, 'XAmzContentSHA256Mismatch', 'a signed payload hash is verified');
  });

  await t.test('query auth (presigned URLs)', async (t) => {
    const future = Math.floor(Date.now() / 1000) + 60;
    const url = presignV2('GET', path, FULL, future);
    const ok = await raw(proxy.url, 'GET', url, {});
    t.equal(ok.status, 200);
    t.equal(ok.body, 'hello v2');
    const overrides = presignV2('GET', `${path}?response-content-type=text%2Fx-v2`, FULL, future, `${path}?response-content-type=text/x-v2`);
    const o = await raw(proxy.url, 'GET', overrides, {});
    t.equal(o.status, 200, 'response-* overrides are signed sub-resources');
    t.equal(o.headers['content-type'], 'text/x-v2');
    t.equal((await raw(proxy.url, 'GET', overrides.replace('x-v2', 'x-v3'), {})).status, 403, 'and cannot be changed');
    const put = presignV2('PUT', '/sig2/presigned.txt', FULL, future);
    t.equal((await raw(proxy.url, 'PUT', put, {}, 'via v2 url')).status, 200);
    const tampered = await raw(proxy.url, 'GET', url.replace('a%20b', 'a%20c'), {});
    t.equal(tampered.status, 403);
    t.match(tampered.body, 'SignatureDoesNotMatch');
    const longer = await raw(proxy.url, 'GET', url.replace(`Expires=${future}`, `Expires=${future + 3600}`), {});
    t.match(longer.body, 'SignatureDoesNotMatch', 'the expiry is signed');
    const expired = await raw(proxy.url, 'GET', presignV2('GET', path, FULL, Math.floor(Date.now() / 1000) - 5), {});
    t.equal(expired.status, 403);
    t.match(expired.body, '<Code>AccessDenied</Code><Message>Request has expired</Message>');
    const unsigned = await raw(proxy.url, 'PUT', put, { 'x-amz-copy-source': 'sig2/a%20b%2Bc.txt' }, 'x');
    t.match(unsigned.body, 'SignatureDoesNotMatch', 'an added x-amz-* header breaks a V2 URL');
    const both = await raw(proxy.url, 'GET', url, signV2('GET', path, {}, FULL));
    t.match(both.body, 'InvalidArgument', 'two auth mechanisms');
    t.match((await raw(proxy.url, 'GET', `${path}?AWSAccessKeyId=AKV2&Signature=x`, {})).body, 'AccessDenied', 'Expires missing');
  });

  await t.test('refused requests left no trace', async (t) => {
    const now = (await blobs(proxy, 'sig2')).map((b) => b.name);
    t.same(now.filter((n) => !before.some((b) => b.name === n) && !n.includes('presigned')), [], 'only the accepted presigned PUT added blobs');
  });
});

t.test('auth.sigv2 = false refuses SigV2 in both forms', async (t) => {
  const proxy = await startProxy(t, { authKeys: [FULL], authSigv2: false });
  const h = await raw(proxy.url, 'GET', '/', signV2('GET', '/', {}, FULL));
  t.equal(h.status, 400);
  t.match(h.body, 'InvalidRequest');
  const q = await raw(proxy.url, 'GET', presignV2('GET', '/', FULL, Math.floor(Date.now() / 1000) + 60), {});
  t.equal(q.status, 400);
  t.match(q.body, 'Please use AWS4-HMAC-SHA256');
});

t.test('auth.sigv2 in the TOML file and the environment', async (t) => {
  const sigv2 = (src: Parameters<typeof loadConfig>[0]) => {
    const r = loadConfig(src);
    return r.action === 'run' ? r.config.authSigv2 : undefined;
  };
  t.equal(sigv2({ toml: '' }), true, 'on by default');
  t.equal(sigv2({ toml: '[auth]\nsigv2 = false\n' }), false);
  t.equal(sigv2({ toml: '[auth]\nsigv2 = false\n', env: { DELTAGLIDER_PROXY_AUTH_SIGV2: 'true' } }), true, 'env over file');
  t.equal(sigv2({ toml: '', env: { DELTAGLIDER_PROXY_AUTH_SIGV2: 'false' } }), false);
  t.throws(() => loadConfig({ toml: '[auth]\nsigv2 = "maybe"\n' }), /auth\.sigv2/);
});
