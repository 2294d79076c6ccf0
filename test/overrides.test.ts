import http from 'node:http';
import aws4 from 'aws4';
import t from 'tap';
import { creds } from './helpers/clients.js';
import { startProxy } from './helpers/proxy.js';

// GetObject response-* overrides (GetObject reference): values that cannot be
// HTTP header values are 400 InvalidArgument, never a 500 or a broken response.

function call(port: number, method: string, path: string, body = ''): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const signed = aws4.sign({ host: `127.0.0.1:${port}`, method, path, body, service: 's3', region: 'us-east-1' }, creds);
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: signed.headers as Record<string, string> }, (res) => {
      let b = '';
      res.setEncoding('latin1');
      res.on('data', (c: string) => (b += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

t.test('response-* overrides', async (t) => {
  const p = await startProxy(t);
  t.equal((await call(p.port, 'PUT', '/ovr')).status, 200);
  t.equal((await call(p.port, 'PUT', '/ovr/f.zip', 'data')).status, 200);
  const ok = await call(p.port, 'GET', `/ovr/f.zip?response-content-disposition=${encodeURIComponent('attachment; filename="caf\u00e9.zip"')}&response-cache-control=no-cache`);
  t.equal(ok.status, 200);
  t.equal(ok.headers['content-disposition'], 'attachment; filename="caf\u00e9.zip"', 'Latin-1 passes');
  t.equal(ok.headers['cache-control'], 'no-cache');
  for (const [param, value] of [
    ['response-content-disposition', 'attachment; filename="\u20ac.zip"'],
    ['response-content-type', 'text/plain\r\nx-injected: 1'],
    ['response-cache-control', 'a\nb'],
    ['response-expires', '\u0000'],
    ['response-content-language', '\u65e5\u672c'],
    ['response-content-encoding', 'x\ry'],
  ]) {
    for (const method of ['GET', 'HEAD']) {
      const r = await call(p.port, method, `/ovr/f.zip?${param}=${encodeURIComponent(value)}`);
      t.equal(r.status, 400, `${method} ${param}=${JSON.stringify(value)}`);
      t.equal(r.headers['x-amz-error-code'], 'InvalidArgument');
      t.notOk(r.headers['x-injected'], 'no header injected');
      if (method === 'GET') {
        t.match(r.body, '<Code>InvalidArgument</Code>');
        t.match(r.body, `<ArgumentName>${param}</ArgumentName>`);
      }
    }
  }
});
