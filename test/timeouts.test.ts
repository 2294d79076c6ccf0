import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import t from 'tap';
import { sdk } from './helpers/clients.js';
import { startProxy } from './helpers/proxy.js';
import { connect, connectNonReading, scratchFiles, signedHead, until } from './helpers/raw.js';

// Every wait on a client has a timeout: a stalled request body gets S3's
// 400 RequestTimeout, an unread response is cut off, and neither leaves a
// temp file or an xdelta3 process behind.

t.test('timeouts', async (t) => {
  const p = await startProxy(t, { bodyIdleTimeoutSecs: 1, sendIdleTimeoutSecs: 1 });
  const scratch = `${p.dataDir}/.deltaglider`;
  const codec = p.app.engine.codec;
  const s3 = sdk(p.url);
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'tbk' }));
  const ref = randomBytes(24 << 20);
  await s3.send(new PutObjectCommand({ Bucket: 'tbk', Key: 'd/a.zip', Body: ref }));
  const v2 = Buffer.from(ref);
  v2.write('changed', 1000);
  await s3.send(new PutObjectCommand({ Bucket: 'tbk', Key: 'd/b.zip', Body: v2 }));
  await s3.send(new PutObjectCommand({ Bucket: 'tbk', Key: 'plain.txt', Body: ref }));
  const meta = await p.app.engine.headObject('tbk', 'd/b.zip');
  t.equal(meta.kind, 'delta', 'b.zip is stored as a delta');

  t.test('a body that stalls gets 400 RequestTimeout, and its temp file goes', async (t) => {
    const c = await connect(p.port);
    c.socket.write(signedHead(p.port, 'PUT', '/tbk/stalled.txt', { 'content-length': '1000000' }));
    c.socket.write(Buffer.alloc(5000, 1));
    await until(async () => (await scratchFiles(scratch)).length > 0, 5000, 'the upload to spool');
    const ms = await c.closed;
    t.ok(ms >= 900 && ms < 6000, `closed after ${ms} ms`);
    t.match(c.received(), /^HTTP\/1\.1 400 /, '400');
    t.match(c.received(), '<Code>RequestTimeout</Code>');
    t.match(c.received(), 'Your socket connection to the server was not read from or written to within the timeout period.');
    t.match(c.received(), /connection: close/i);
    t.same(await scratchFiles(scratch), [], 'no temp file left');
  });

  t.test('a delta upload that stalls: its encoder is stopped too', async (t) => {
    const c = await connect(p.port);
    c.socket.write(signedHead(p.port, 'PUT', '/tbk/d/c.zip', { 'content-length': String(ref.length) }));
    c.socket.write(ref.subarray(0, 1 << 20));
    await until(() => codec.stats.running === 1, 5000, 'the upload-time encoder');
    const ms = await c.closed;
    t.ok(ms < 6000, `closed after ${ms} ms`);
    t.match(c.received(), '<Code>RequestTimeout</Code>');
    await until(() => codec.stats.running === 0, 5000, 'the encoder to exit');
    t.same(await scratchFiles(scratch), [], 'no temp file left');
  });

  t.test('slow but steady bodies are not cut', async (t) => {
    const c = await connect(p.port);
    c.socket.write(signedHead(p.port, 'PUT', '/tbk/slow.txt', { 'content-length': '40' }));
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 600));
      c.socket.write('0123456789');
    }
    await until(() => c.received().includes('\r\n\r\n'), 5000, 'the response');
    t.match(c.received(), /^HTTP\/1\.1 200 /);
    c.socket.destroy();
  });

  for (const key of ['plain.txt', 'd/b.zip']) {
    t.test(`a GET of ${key} that is never read is cut off, and nothing is kept`, async (t) => {
      const c = await connectNonReading(p.port);
      c.socket.write(signedHead(p.port, 'GET', `/tbk/${key}`));
      // The proxy's side lets go while the client still reads nothing.
      await new Promise((r) => setTimeout(r, 3500));
      t.equal(codec.stats.running, 0, 'no xdelta3 process');
      t.same(await scratchFiles(scratch), [], 'no temp file');
      // What the kernel buffered arrives, then the end: the body is cut short.
      let n = 0;
      c.socket.on('data', (b: Buffer) => (n += b.length));
      c.socket.resume();
      const ms = await Promise.race([c.closed, new Promise<number>((r) => setTimeout(() => r(-1), 10_000))]);
      t.ok(ms > 0, 'the connection was closed by the proxy');
      t.ok(n < ref.length, `got ${n} of ${ref.length} bytes`);
      t.equal(codec.stats.spoolBytes, 0, 'the decode spool budget is back');
    });
  }
});
