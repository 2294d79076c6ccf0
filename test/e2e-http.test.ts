import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import http from 'node:http';
import { crc32 } from 'node:zlib';
import aws4 from 'aws4';
import t from 'tap';
import { creds } from './helpers/clients.js';
import { startProxy } from './helpers/proxy.js';
import { connect, signedHead, until } from './helpers/raw.js';

// Raw HTTP: what S3 tools rarely send but a proxy must answer with S3's errors
// (never a 500, a hang or a crash).

interface Res {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A request signed by aws4 (an independent SigV4 implementation), unless `unsigned`. */
export function request(url: string, method: string, path: string, opts: { headers?: Record<string, string>; body?: Buffer | string; unsigned?: boolean } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    let headers: Record<string, string | number> = { ...opts.headers };
    if (!opts.unsigned) {
      const hasHost = Object.keys(headers).some((h) => h.toLowerCase() === 'host');
      const streaming = String(headers['x-amz-content-sha256'] ?? '').startsWith('STREAMING-');
      const signed = aws4.sign(
        { host: hasHost ? undefined : u.host, method, path, headers, body: streaming ? undefined : opts.body ?? '', service: 's3', region: 'us-east-1' },
        creds,
      );
      headers = signed.headers as Record<string, string>;
    }
    const req = http.request({ host: u.hostname, port: u.port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

const code = (r: Res) => /<Code>([^<]+)<\/Code>/.exec(r.body)?.[1] ?? r.headers['x-amz-error-code'];

t.test('S3 errors for bad requests', async (t) => {
  const p = await startProxy(t, { maxObjectSize: 1024 * 1024 });
  const req = (method: string, path: string, opts?: Parameters<typeof request>[3]) => request(p.url, method, path, opts);
  t.equal((await req('PUT', '/errs')).status, 200);
  await req('PUT', '/errs/obj', { body: 'hello' });

  await t.test('every response has a request id', async (t) => {
    const r = await req('GET', '/errs/missing');
    t.equal(r.status, 404);
    t.match(r.headers['x-amz-request-id'], /^[0-9A-F]{16}$/);
    t.match(r.body, /<Error><Code>NoSuchKey<\/Code><Message>[^<]+<\/Message><Key>missing<\/Key><Resource>\/errs\/missing<\/Resource><RequestId>[0-9A-F]{16}<\/RequestId><\/Error>/);
  });

  await t.test('HEAD errors travel in headers', async (t) => {
    const r = await req('HEAD', '/errs/missing');
    t.equal(r.status, 404);
    t.equal(r.headers['x-amz-error-code'], 'NoSuchKey');
    t.equal(r.body, '');
  });

  await t.test('unsupported operations are NotImplemented', async (t) => {
    for (const [m, path] of [['GET', '/errs?acl'], ['PUT', '/errs/obj?tagging'], ['GET', '/errs?policy'], ['PUT', '/errs?versioning'], ['GET', '/errs/obj?retention'], ['PUT', '/errs/obj?partNumber=1']]) {
      const r = await req(m, path, { body: m === 'PUT' ? '<x/>' : undefined });
      t.equal(r.status, 501, `${m} ${path}`);
      t.equal(code(r), 'NotImplemented');
    }
    const obj = await req('GET', '/errs/obj');
    t.equal(obj.body, 'hello', 'PUT ?tagging did not overwrite the object');
    t.equal((await req('PATCH', '/errs/obj')).status, 405);
    t.equal(code(await req('POST', '/errs', { body: 'form' })), 'NotImplemented', 'browser form POST');
    t.equal((await req('GET', '/errs/obj?versionId=null')).body, 'hello', 'the one version, "null"');
    t.equal(code(await req('GET', '/errs/obj?versionId=3HL4kqtJlcpXroDTDmJ')), 'InvalidArgument');
    t.equal(code(await req('DELETE', '/errs/obj?versionId=3HL4kqtJlcpXroDTDmJ')), 'InvalidArgument');
  });

  await t.test('integrity checks on upload', async (t) => {
    const body = Buffer.from('payload');
    const md5 = createHash('md5').update(body).digest('base64');
    t.equal((await req('PUT', '/errs/md5', { body, headers: { 'content-md5': md5 } })).status, 200);
    const bad = await req('PUT', '/errs/md5', { body: 'other', headers: { 'content-md5': md5 } });
    t.equal(bad.status, 400);
    t.equal(code(bad), 'BadDigest');
    t.equal(code(await req('PUT', '/errs/md5', { body, headers: { 'content-md5': 'nope' } })), 'InvalidDigest');
    t.equal((await req('GET', '/errs/md5')).body, 'payload', 'failed uploads left the object as it was');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    const good = await req('PUT', '/errs/crc', { body, headers: { 'x-amz-checksum-crc32': crc.toString('base64') } });
    t.equal(good.headers['x-amz-checksum-crc32'], crc.toString('base64'));
    t.equal(code(await req('PUT', '/errs/crc2', { body, headers: { 'x-amz-checksum-crc32': 'AAAAAA==' } })), 'BadDigest');
    t.equal((await req('GET', '/errs/crc2')).status, 404, 'nothing stored');
    const sha = createHash('sha256').update('x').digest('hex');
    t.equal(code(await req('PUT', '/errs/sha', { body, headers: { 'x-amz-content-sha256': sha } })), 'XAmzContentSHA256Mismatch');
    const got = await req('GET', '/errs/crc', { headers: { 'x-amz-checksum-mode': 'ENABLED' } });
    t.equal(got.headers['x-amz-checksum-crc32'], crc.toString('base64'));
  });

  await t.test('aws-chunked bodies', async (t) => {
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.from('hello world')));
    const chunked = `5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:${crc.toString('base64')}\r\n\r\n`;
    const headers = { 'content-encoding': 'aws-chunked', 'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER', 'x-amz-decoded-content-length': '11', 'x-amz-trailer': 'x-amz-checksum-crc32' };
    t.equal((await req('PUT', '/errs/chunked', { body: chunked, headers })).status, 200);
    const got = await req('GET', '/errs/chunked');
    t.equal(got.body, 'hello world');
    t.equal(got.headers['content-encoding'], undefined, 'aws-chunked is not stored as the object encoding');
    const badTrailer = chunked.replace(crc.toString('base64'), 'AAAAAA==');
    t.equal(code(await req('PUT', '/errs/chunked2', { body: badTrailer, headers })), 'BadDigest');
    const truncated = '5\r\nhello\r\n6\r\n wor';
    t.equal((await req('PUT', '/errs/chunked3', { body: truncated, headers })).status, 400);
    t.equal((await req('PUT', '/errs/chunked4', { body: 'zz\r\nhello\r\n0\r\n\r\n', headers })).status, 400);
    t.equal((await req('PUT', '/errs/chunked5', { body: chunked, headers: { ...headers, 'x-amz-decoded-content-length': '12' } })).status, 400);
    for (const k of ['chunked2', 'chunked3', 'chunked4', 'chunked5']) t.equal((await req('HEAD', `/errs/${k}`)).status, 404, `${k} not stored`);
  });

  await t.test('bad XML and limits', async (t) => {
    t.equal(code(await req('POST', '/errs?delete', { body: '<Delete><Object>' })), 'MalformedXML');
    t.equal(code(await req('POST', '/errs?delete', { body: '<Delete></Delete>' })), 'MalformedXML');
    const many = `<Delete>${'<Object><Key>k</Key></Object>'.repeat(1001)}</Delete>`;
    t.equal(code(await req('POST', '/errs?delete', { body: many })), 'MalformedXML');
    t.equal(code(await req('PUT', '/errs/big', { body: Buffer.alloc(1024 * 1024 + 1) })), 'EntityTooLarge');
    t.equal(code(await req('GET', '/errs?list-type=2&max-keys=-1')), 'InvalidArgument');
    t.equal(code(await req('GET', '/errs?list-type=2&encoding-type=base64')), 'InvalidArgument');
    t.equal(code(await req('GET', '/errs/%E0%A4%A', { unsigned: true })), 'InvalidURI');
    t.equal(code(await req('PUT', '/errs/obj', { headers: { 'x-amz-storage-class': 'NOPE' }, body: 'x' })), 'InvalidStorageClass');
    t.equal(code(await req('PUT', '/errs/obj2', { headers: { 'x-amz-copy-source': 'nobucket' } })), 'InvalidArgument');
    t.equal(code(await req('PUT', '/errs/meta', { headers: { 'x-amz-meta-big': 'v'.repeat(3000) }, body: 'x' })), 'MetadataTooLarge');
    t.equal(code(await req('GET', '/errs/obj', { headers: { range: 'bytes=100-' } })), 'InvalidRange');
    t.equal((await req('GET', '/errs/obj', { headers: { range: 'bytes=3-1' } })).status, 200, 'an invalid range is ignored');
    t.equal(code(await req('DELETE', '/errs')), 'BucketNotEmpty');
    t.equal(code(await req('GET', '/no-such-bucket?list-type=2')), 'NoSuchBucket');
  });

  await t.test('virtual-hosted style', async (t) => {
    const r = await req('GET', '/obj', { headers: { host: `errs.localhost:${p.port}` } });
    t.equal(r.status, 200);
    t.equal(r.body, 'hello');
    const l = await req('GET', '/?list-type=2', { headers: { host: `errs.localhost:${p.port}` } });
    t.match(l.body, '<Key>obj</Key>');
    // A Host with nothing before the domain names no bucket: not ListBuckets, not a 501.
    for (const [m, path] of [['GET', '/obj'], ['PUT', '/obj'], ['GET', '/']]) {
      const bad = await req(m, path, { headers: { host: `.localhost:${p.port}` }, ...(m === 'PUT' ? { body: 'x' } : {}) });
      t.equal(bad.status, 400, `${m} ${path} with Host .localhost`);
      t.equal(code(bad), 'InvalidBucketName');
    }
  });

  await t.test('temp files are removed on every path', async (t) => {
    const spool = p.app.engine.opts.tmpDir;
    // A client that goes away mid-upload.
    await new Promise<void>((resolve) => {
      const u = new URL(p.url);
      const headers = aws4.sign({ host: u.host, method: 'PUT', path: '/errs/aborted.bin', headers: { 'content-length': String(512 * 1024), 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, service: 's3', region: 'us-east-1' }, creds).headers as Record<string, string>;
      const req = http.request({ host: u.hostname, port: u.port, method: 'PUT', path: '/errs/aborted.bin', headers });
      req.on('error', () => resolve());
      req.write(Buffer.alloc(64 * 1024));
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 200);
    });
    await new Promise((r) => setTimeout(r, 300));
    t.same(await fsp.readdir(spool), [], 'after a client abort');
    t.equal((await req('HEAD', '/errs/aborted.bin')).status, 404, 'and nothing stored');
    await req('PUT', '/errs/bad.bin', { body: 'x', headers: { 'content-md5': createHash('md5').update('y').digest('base64') } });
    t.same(await fsp.readdir(spool), [], 'after a failed check');
    await req('PUT', '/errs/ok.zip', { body: Buffer.alloc(100_000, 3) });
    t.same(await fsp.readdir(spool), [], 'after a success');
  });

  await t.test('signed headers with runs of spaces, keys with + = and unicode', async (t) => {
    const put = await req('PUT', '/errs/a%2Bb%3Dc%20d%C3%BC', { body: 'v', headers: { 'x-amz-meta-spaced': 'a   b  c' } });
    t.equal(put.status, 200, put.body);
    const got = await req('GET', '/errs/a%2Bb%3Dc%20d%C3%BC');
    t.equal(got.body, 'v');
    t.equal(got.headers['x-amz-meta-spaced'], 'a   b  c', 'stored as sent');
  });

  await t.test('any Content-Type is stored as sent, as S3 does, never a 415 or a 500', async (t) => {
    const odd = ['x', 'text/', '/plain', 'text/plain, text/html', 'text/pl ain', 'a/b; c'];
    for (const [i, ct] of odd.entries()) {
      const put = await req('PUT', `/errs/ct-${i}`, { headers: { 'content-type': ct }, body: 'hi' });
      t.equal(put.status, 200, `PUT with Content-Type ${JSON.stringify(ct)}`);
      const head = await req('HEAD', `/errs/ct-${i}`);
      t.equal(head.headers['content-type'], ct, 'and answered with it');
    }
    // (No body: aws4 would add a Content-Type of its own beside an empty one.)
    const empty = await req('PUT', '/errs/ct-empty', { headers: { 'content-type': '' } });
    t.equal(empty.status, 200, 'an empty Content-Type (some SDKs send one)');
    t.equal((await req('GET', '/errs/ct-empty')).status, 200);
    t.equal(code(await req('PUT', '/errs/ct-anon', { headers: { 'content-type': 'x' }, body: 'hi', unsigned: true })), 'AccessDenied', 'unsigned: still refused');
    const mpu = await req('POST', '/errs/ct-mpu?uploads', { headers: { 'content-type': 'x' } });
    t.equal(mpu.status, 200, 'CreateMultipartUpload');
    t.equal((await req('DELETE', '/errs/ct-0', { headers: { 'content-type': 'x' } })).status, 204, 'DeleteObject');
  });

  await t.test('pipelined requests on one connection are processed in turn (RFC 9112, 9.3.2)', async (t) => {
    for (let i = 0; i < 5; i++) {
      const conn = await connect(Number(new URL(p.url).port));
      const port = Number(new URL(p.url).port);
      const body = `v${i}`;
      // A PUT and a GET of the same key, then a DELETE and a HEAD, sent at once.
      conn.socket.write(
        signedHead(port, 'PUT', `/errs/piped-${i}`, { 'content-length': String(body.length) }) + body +
          signedHead(port, 'GET', `/errs/piped-${i}`) +
          signedHead(port, 'DELETE', `/errs/piped-${i}`) +
          signedHead(port, 'HEAD', `/errs/piped-${i}`),
      );
      const statuses = () => [...conn.received().matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
      await until(() => statuses().length >= 4, 10_000, 'four responses');
      t.same(statuses(), ['200', '200', '204', '404'], 'each request sees the one before it');
      t.match(conn.received(), new RegExp(`\r\n\r\n${body}HTTP/1\\.1 204`), 'the GET has the PUT bytes');
      conn.socket.destroy();
    }
  });

  await t.test('health', async (t) => {
    const r = await req('GET', '/health', { unsigned: true });
    t.equal(r.status, 200);
    t.match(r.body, 'ok');
  });
});
