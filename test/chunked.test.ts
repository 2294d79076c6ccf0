import { Readable } from 'node:stream';
import t from 'tap';
import { AwsChunkedDecoder, type ChunkVerifier } from '../src/http/chunked.js';
import { S3Error } from '../src/errors.js';

async function decode(parts: string[], verifier?: ChunkVerifier) {
  const d = new AwsChunkedDecoder(verifier);
  const out: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    d.on('data', (c: Buffer) => out.push(c));
    d.on('end', resolve);
    d.on('error', reject);
  });
  Readable.from(parts.map((p) => Buffer.from(p))).pipe(d);
  await done;
  return { body: Buffer.concat(out).toString(), trailers: d.trailers };
}

t.test('decodes in any split', async (t) => {
  const wire = '4;chunk-signature=aa\r\nWiki\r\n5;chunk-signature=bb\r\npedia\r\n0;chunk-signature=cc\r\n\r\n';
  for (let cut = 1; cut < wire.length; cut++) {
    const r = await decode([wire.slice(0, cut), wire.slice(cut)]);
    t.equal(r.body, 'Wikipedia');
  }
  const bytewise = await decode(wire.split(''));
  t.equal(bytewise.body, 'Wikipedia');
});

t.test('trailers, with or without the final CRLF', async (t) => {
  for (const end of ['\r\n\r\n', '\r\n', '']) {
    const r = await decode([`3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==${end}`]);
    t.equal(r.body, 'abc');
    t.same(r.trailers, { 'x-amz-checksum-crc32': 'NSRBwg==' });
  }
});

t.test('verifier sees signatures and data', async (t) => {
  const seen: string[] = [];
  const v: ChunkVerifier = {
    update: (d) => void seen.push(`data:${d.toString()}`),
    chunk: (sig, size) => void seen.push(`chunk:${sig}:${size}`),
    trailer: (lines, sig) => void seen.push(`trailer:${lines.join('|')}:${sig}`),
  };
  await decode(['2;chunk-signature=s1\r\nhi\r\n0;chunk-signature=s2\r\nx-amz-checksum-sha1:q\r\nx-amz-trailer-signature:ts\r\n\r\n'], v);
  t.same(seen, ['chunk:s1:2', 'data:hi', 'chunk:s2:0', 'trailer:x-amz-checksum-sha1:q:ts']);
});

t.test('malformed bodies are refused', async (t) => {
  for (const bad of ['zz\r\nab\r\n0\r\n\r\n', '3\r\nabcX\r\n0\r\n\r\n', '3\r\nab', '3\r\nabc\r\n', `${'1'.repeat(5000)}\r\n`]) {
    await t.rejects(decode([bad]), S3Error, JSON.stringify(bad.slice(0, 20)));
  }
  const throwing: ChunkVerifier = { update() {}, chunk() { throw new S3Error('SignatureDoesNotMatch'); }, trailer() {} };
  await t.rejects(decode(['1\r\na\r\n0\r\n\r\n'], throwing), { code: 'SignatureDoesNotMatch' });
});
