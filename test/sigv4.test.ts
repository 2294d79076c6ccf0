import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import t from 'tap';
import { authenticate, KeyStore, unsignedAmzHeaders } from '../src/http/auth/authenticate.js';
import { canonicalHeaders, canonicalQuery, canonicalUris, uriEncode, uriEncodeBytes } from '../src/http/auth/sigv4.js';
import { AwsChunkedDecoder } from '../src/http/chunked.js';

// The worked examples of the S3 API reference ("Signature Calculations for the
// Authorization Header: Transferring Payload in Multiple Chunks" and "...
// Including Trailing Headers"): an independent oracle for the seed, chunk and
// trailer signatures, 65,536 + 1,024 bytes of 'a'.

const AKID = 'AKIAIOSFODNN7EXAMPLE';
const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const DOC_TIME = Date.UTC(2013, 4, 24);
const keys = new KeyStore([{ accessKeyId: AKID, secretAccessKey: SECRET, readOnly: false }], 'none');

interface Example {
  headers: [string, string][];
  signed: string;
  seed: string;
  chunks: [string, string, string];
  trailer: string;
}

const PLAIN: Example = {
  headers: [['content-encoding', 'aws-chunked'], ['content-length', '66824'], ['host', 's3.amazonaws.com'], ['x-amz-content-sha256', 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD'], ['x-amz-date', '20130524T000000Z'], ['x-amz-decoded-content-length', '66560'], ['x-amz-storage-class', 'REDUCED_REDUNDANCY']],
  signed: 'content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class',
  seed: '4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9',
  chunks: ['ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648', '0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497', 'b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9'],
  trailer: '',
};

const TRAILER: Example = {
  headers: [['content-encoding', 'aws-chunked'], ['host', 's3.amazonaws.com'], ['x-amz-content-sha256', 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER'], ['x-amz-date', '20130524T000000Z'], ['x-amz-decoded-content-length', '66560'], ['x-amz-storage-class', 'REDUCED_REDUNDANCY'], ['x-amz-trailer', 'x-amz-checksum-crc32c']],
  signed: 'content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer',
  seed: '106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e',
  chunks: ['b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2', '1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7', '2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992'],
  trailer: 'x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n',
};

function fakeRequest(ex: Example, seed = ex.seed): IncomingMessage {
  const raw = [...ex.headers, ['authorization', `AWS4-HMAC-SHA256 Credential=${AKID}/20130524/us-east-1/s3/aws4_request,SignedHeaders=${ex.signed},Signature=${seed}`]];
  const headers: Record<string, string> = Object.fromEntries(raw);
  return { method: 'PUT', headers, rawHeaders: raw.flat() } as unknown as IncomingMessage;
}

function body(ex: Example, mutate?: (b: Buffer) => void): Buffer {
  const b = Buffer.concat([
    Buffer.from(`10000;chunk-signature=${ex.chunks[0]}\r\n`),
    Buffer.alloc(65536, 'a'),
    Buffer.from(`\r\n400;chunk-signature=${ex.chunks[1]}\r\n`),
    Buffer.alloc(1024, 'a'),
    Buffer.from(`\r\n0;chunk-signature=${ex.chunks[2]}\r\n${ex.trailer}\r\n`),
  ]);
  mutate?.(b);
  return b;
}

async function decode(ex: Example, payload: Buffer): Promise<{ data: Buffer; trailers: Record<string, string> }> {
  const principal = authenticate(fakeRequest(ex), '/examplebucket/chunkObject.txt', keys, DOC_TIME);
  const d = new AwsChunkedDecoder(principal.chunkVerifier!());
  const parts: Buffer[] = [];
  for await (const c of Readable.from([payload]).pipe(d)) parts.push(c as Buffer);
  return { data: Buffer.concat(parts), trailers: d.trailers };
}

t.test('the documented chunked upload verifies', async (t) => {
  t.equal(body(PLAIN).length, 66824, 'the documented Content-Length');
  const r = await decode(PLAIN, body(PLAIN));
  t.same(r.data, Buffer.alloc(66560, 'a'));
});

t.test('the documented chunked upload with a signed trailer verifies', async (t) => {
  const r = await decode(TRAILER, body(TRAILER));
  t.equal(r.data.length, 66560);
  t.same(r.trailers, { 'x-amz-checksum-crc32c': 'sOO8/Q==' });
});

t.test('tampering anywhere is SignatureDoesNotMatch', async (t) => {
  t.throws(() => authenticate(fakeRequest(PLAIN, '0'.repeat(64)), '/examplebucket/chunkObject.txt', keys, DOC_TIME), { code: 'SignatureDoesNotMatch' });
  const flips: [string, Example, (b: Buffer) => void][] = [
    ['a data byte of chunk 1', PLAIN, (b) => void (b[200] = 0x62)],
    ['a data byte of chunk 2', PLAIN, (b) => void (b[65536 + 200] = 0x62)],
    ['a chunk signature', PLAIN, (b) => void b.write('f', b.indexOf('0055627c'))],
    ['the final chunk signature', PLAIN, (b) => void b.write('c', b.indexOf('b6c6ea8a'))],
    ['the trailer value', TRAILER, (b) => void b.write('x', b.indexOf('sOO8'))],
    ['the trailer signature', TRAILER, (b) => void b.write('e', b.indexOf('d81f82fc'))],
  ];
  for (const [what, ex, flip] of flips) {
    await t.rejects(decode(ex, body(ex, flip)), { code: 'SignatureDoesNotMatch' }, what);
  }
  // Dropping the final chunk leaves the body incomplete.
  const cut = body(PLAIN).subarray(0, 66824 - 90);
  await t.rejects(decode(PLAIN, cut), { code: 'IncompleteBody' }, 'truncated body');
});

t.test('clock skew, unknown keys and malformed headers', async (t) => {
  const late = DOC_TIME + 16 * 60 * 1000;
  t.throws(() => authenticate(fakeRequest(PLAIN), '/examplebucket/chunkObject.txt', keys, late), { code: 'RequestTimeTooSkewed' });
  t.doesNotThrow(() => authenticate(fakeRequest(PLAIN), '/examplebucket/chunkObject.txt', keys, DOC_TIME + 14 * 60 * 1000));
  const other = new KeyStore([{ accessKeyId: 'OTHER', secretAccessKey: SECRET, readOnly: false }], 'none');
  t.throws(() => authenticate(fakeRequest(PLAIN), '/examplebucket/chunkObject.txt', other, DOC_TIME), { code: 'InvalidAccessKeyId' });
  const req = fakeRequest(PLAIN);
  req.headers.authorization = 'AWS4-HMAC-SHA256 Credential=x';
  t.throws(() => authenticate(req, '/x', keys, DOC_TIME), { code: 'AuthorizationHeaderMalformed' });
  req.headers.authorization = 'AWS AKID:sig';
  t.throws(() => authenticate(req, '/x', keys, DOC_TIME), { code: 'InvalidAccessKeyId' }, 'SigV2 is verified');
  const v4only = new KeyStore([{ accessKeyId: AKID, secretAccessKey: SECRET, readOnly: false }], 'none', false);
  t.throws(() => authenticate(req, '/x', v4only, DOC_TIME), { code: 'InvalidRequest' }, 'auth.sigv2 = false refuses SigV2');
  const unsigned = { method: 'GET', headers: {}, rawHeaders: [] } as unknown as IncomingMessage;
  t.throws(() => authenticate(unsigned, '/x', keys, DOC_TIME), { code: 'AccessDenied' });
  t.equal(authenticate(unsigned, '/x', new KeyStore([], 'read-only'), DOC_TIME).readOnly, true);
});

t.test('headers a signature must cover', async (t) => {
  const raw = ['Host', 'h', 'X-Amz-Meta-A', 'b', 'x-amz-content-sha256', 'c', 'X-Amz-Date', 'd', 'x-amzn-trace-id', 'e', 'User-Agent', 'f'];
  t.same(unsignedAmzHeaders(raw, ['x-amz-date']), ['host', 'x-amz-meta-a'], 'host and x-amz-*, but not x-amz-content-sha256 (as AWS)');
  t.same(unsignedAmzHeaders(raw, ['host', 'x-amz-date', 'x-amz-meta-a']), []);
});

t.test('canonical pieces', async (t) => {
  t.equal(uriEncode('a b+c/d~é'), 'a%20b%2Bc%2Fd~%C3%A9');
  t.equal(uriEncode('a/b', true), 'a/b');
  // The fast path equals the spec's byte loop on every kind of character,
  // the ones encodeURIComponent leaves alone and lone surrogates included.
  const alphabet = ["a", "Z", "0", "-", ".", "_", "~", "/", "!", "'", "(", ")", "*", " ", "+", "%", "&", "=", "?", "#", "é", "\u0000", "\u007f", "\u00ff", "\u0800", "\uffff", "😀", "\ud800", "\udfff"];
  for (let i = 0; i < 3000; i++) {
    let str = '';
    for (let n = (i * 7) % 12; n >= 0; n--) str += alphabet[(i * 31 + n * 17 + n * n) % alphabet.length];
    for (const keep of [false, true]) if (uriEncode(str, keep) !== uriEncodeBytes(str, keep)) t.fail(`uriEncode(${JSON.stringify(str)}, ${keep})`);
  }
  t.equal(uriEncode("!'()*", false), '%21%27%28%29%2A');
  t.equal(uriEncode('\ud800x'), '%EF%BF%BDx', 'a lone surrogate encodes as U+FFFD');
  t.ok(canonicalUris('/b/a+b').includes('/b/a%2Bb'), "a raw '+' is a plus");
  t.ok(canonicalUris('/b/a%20b').includes('/b/a%20b'));
  t.equal(canonicalQuery('prefix=a%2Fb&list-type=2&delimiter=%2F&acl'), 'acl=&delimiter=%2F&list-type=2&prefix=a%2Fb');
  t.equal(canonicalQuery('b=2&a=3&a=1&X-Amz-Signature=zz', 'X-Amz-Signature'), 'a=1&a=3&b=2');
});

t.test('a presigned URL, and its second use (KeyStore.verifiedUrls)', async (t) => {
  // The S3 API reference's example ("Authenticating Requests: Using Query
  // Parameters"): GET /test.txt on examplebucket, valid for 86400 s.
  const url = '/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404';
  const req = (method = 'GET', extra: [string, string][] = []) => {
    const raw: [string, string][] = [['Host', 'examplebucket.s3.amazonaws.com'], ...extra];
    return { method, headers: Object.fromEntries(raw.map(([k, v]) => [k.toLowerCase(), v])), rawHeaders: raw.flat() } as unknown as IncomingMessage;
  };
  const store = new KeyStore([{ accessKeyId: AKID, secretAccessKey: SECRET, readOnly: false }], 'none');
  const first = authenticate(req(), url, store, DOC_TIME + 1000);
  t.equal(first.auth, 'sigv4-query');
  t.equal(store.verifiedUrls.size, 1, 'remembered once verified');
  t.same(authenticate(req(), url, store, DOC_TIME + 2000), first, 'the second use gives the same principal');
  // What the second use must still check, each as the first use would.
  t.throws(() => authenticate(req(), url, store, DOC_TIME + 86_401_000), { code: 'AccessDenied', message: /expired/ }, 'expired since');
  t.throws(() => authenticate(req(), url, store, DOC_TIME - 16 * 60_000), { code: 'AccessDenied', message: /not valid yet/ }, 'not valid yet');
  t.throws(() => authenticate(req('HEAD'), url, store, DOC_TIME + 1000), { code: 'SignatureDoesNotMatch' }, 'another method');
  const otherHost = { ...req(), headers: { host: 'otherbucket.s3.amazonaws.com' }, rawHeaders: ['Host', 'otherbucket.s3.amazonaws.com'] } as unknown as IncomingMessage;
  t.throws(() => authenticate(otherHost, url, store, DOC_TIME + 1000), { code: 'SignatureDoesNotMatch' }, 'another host');
  t.throws(() => authenticate(req('GET', [['x-amz-meta-added', '1']]), url, store, DOC_TIME + 1000), { code: 'AccessDenied', message: /not signed/ }, 'an unsigned x-amz-* header');
  t.throws(() => authenticate(req('GET', [['Authorization', 'AWS4-HMAC-SHA256 Credential=x']]), url, store, DOC_TIME + 1000), { code: 'InvalidArgument' }, 'a second auth mechanism');
  t.throws(() => authenticate(req('GET', [['x-amz-content-sha256', 'nonsense']]), url, store, DOC_TIME + 1000), { code: 'InvalidArgument' }, 'a bad payload hash header');
  t.equal(authenticate(req('GET', [['x-amz-content-sha256', 'e'.repeat(64)]]), url, store, DOC_TIME + 1000).payloadSha256[0], 'e'.repeat(64), 'a payload hash header still binds the body');
  t.throws(() => authenticate(req(), url.replace('test.txt', 'test2.txt'), store, DOC_TIME + 1000), { code: 'SignatureDoesNotMatch' }, 'another key');
  t.throws(() => authenticate(req(), url.replace(/.$/, '5'), store, DOC_TIME + 1000), { code: 'SignatureDoesNotMatch' }, 'another signature');
  const other = new KeyStore([{ accessKeyId: AKID, secretAccessKey: 'another secret', readOnly: false }], 'none');
  t.throws(() => authenticate(req(), url, other, DOC_TIME + 1000), { code: 'SignatureDoesNotMatch' }, 'remembered per key store');
  t.equal(store.verifiedUrls.size, 1, 'refusals are never remembered');
});

t.test('canonical headers equal the straightforward definition', async (t) => {
  const reference = (raw: string[], signed: string[]) => {
    const values = new Map<string, string[]>();
    for (let i = 0; i + 1 < raw.length; i += 2) values.set(raw[i].toLowerCase(), [...(values.get(raw[i].toLowerCase()) ?? []), raw[i + 1].trim().replace(/\s+/g, ' ')]);
    let out = '';
    for (const h of signed) {
      const v = values.get(h);
      if (v === undefined) return null;
      out += `${h}:${v.join(',')}\n`;
    }
    return out;
  };
  const names = ['Host', 'host', 'X-Amz-Date', 'x-amz-meta-a', 'Content-Type', 'range'];
  const values = ['a', ' a  b ', 'a\tb', 'a\u00a0 b', '', '  ', 'x,y'];
  for (let i = 0; i < 2000; i++) {
    const raw: string[] = [];
    for (let n = i % 5; n >= 0; n--) raw.push(names[(i * 7 + n * 3) % names.length], values[(i * 5 + n) % values.length]);
    const signed = [...new Set(['host', 'x-amz-date', 'x-amz-meta-a', 'range'].filter((_, k) => (i >> k) & 1))];
    const got = canonicalHeaders(raw, signed);
    const want = reference(raw, signed);
    if (got !== want) t.fail(`${JSON.stringify(raw)} ${JSON.stringify(signed)}: ${JSON.stringify(got)} != ${JSON.stringify(want)}`);
  }
  t.pass('2000 header sets');
});
