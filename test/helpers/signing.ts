import aws4 from 'aws4';
import { createHmac } from 'node:crypto';
import http from 'node:http';

// Signed raw requests for tests: SigV4 through aws4 (an independent signer),
// SigV2 written here from the S3 developer guide ("Signing and authenticating
// REST requests"), and a raw HTTP client that sends headers byte for byte.

export interface Keys {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * Sends a request as given. Header values are latin1 strings: one character
 * per byte on the wire (use `utf8Bytes` to send raw UTF-8).
 */
export function raw(url: string, method: string, path: string, headers: Record<string, string>, body?: Buffer | string): Promise<RawResponse> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method, path, headers, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    // A string body would make Node write the head in the body's encoding
    // (UTF-8), changing the header bytes: always send bytes.
    req.end(body === undefined ? undefined : Buffer.from(body));
  });
}

/** A text's UTF-8 bytes as a latin1 string: sent raw, as curl or Go clients do. */
export const utf8Bytes = (s: string) => Buffer.from(s, 'utf8').toString('latin1');

/** SigV4 header auth by aws4; `headers` are signed (pass extra unsigned ones after). */
export function signV4(url: string, method: string, path: string, headers: Record<string, string>, k: Keys, body?: string | Buffer): Record<string, string> {
  const u = new URL(url);
  const signed = aws4.sign({ host: u.host, method, path, headers, body, service: 's3', region: 'us-east-1' }, k);
  return signed.headers as Record<string, string>;
}

/** A SigV4 presigned path (query auth) by aws4, signing only host. */
export function presignV4(url: string, method: string, path: string, k: Keys, expires = 60, extraQuery = ''): string {
  const u = new URL(url);
  const sep = path.includes('?') ? '&' : '?';
  const full = `${path}${sep}X-Amz-Expires=${expires}${extraQuery}`;
  const signed = aws4.sign({ host: u.host, method, path: full, service: 's3', region: 'us-east-1', signQuery: true }, k);
  return signed.path!;
}

/** StringToSign of SigV2 from its parts (the guide's formula). */
export function v2StringToSign(method: string, headers: Record<string, string>, resource: string, dateOrExpires: string): string {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const amz = Object.keys(lower)
    .filter((k) => k.startsWith('x-amz-'))
    .sort()
    .map((k) => `${k}:${lower[k].trim()}\n`)
    .join('');
  return `${method}\n${lower['content-md5'] ?? ''}\n${lower['content-type'] ?? ''}\n${dateOrExpires}\n${amz}${resource}`;
}

export const hmacSha1 = (secret: string, s: string) => createHmac('sha1', secret).update(s, 'utf8').digest('base64');

/** SigV2 header auth: adds Date and Authorization. `resource` is the CanonicalizedResource. */
export function signV2(method: string, resource: string, headers: Record<string, string>, k: Keys, date = new Date()): Record<string, string> {
  const h: Record<string, string> = { ...headers, date: date.toUTCString() };
  const sts = v2StringToSign(method, h, resource, h['x-amz-date'] !== undefined ? '' : h.date);
  return { ...h, authorization: `AWS ${k.accessKeyId}:${hmacSha1(k.secretAccessKey, sts)}` };
}

/** A SigV2 presigned path for `path` (no query), valid until `expires` (epoch seconds). */
export function presignV2(method: string, path: string, k: Keys, expires: number, resource = path): string {
  const sig = hmacSha1(k.secretAccessKey, v2StringToSign(method, {}, resource, String(expires)));
  const sep = path.includes('?') ? '&' : '?';
  return `${path}${sep}AWSAccessKeyId=${encodeURIComponent(k.accessKeyId)}&Expires=${expires}&Signature=${encodeURIComponent(sig)}`;
}
