import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

// AWS Signature Version 4 as S3 applies it (S3 API reference, "Authenticating
// Requests (AWS Signature Version 4)"). The canonical request is built here,
// exactly as S3 does for its clients, and signed with a cached signing key.

export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

export const sha256hex = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

const UNRESERVED = /^[A-Za-z0-9\-._~]*$/;
const UNRESERVED_OR_SLASH = /^[A-Za-z0-9\-._~/]*$/;

/**
 * UriEncode of the SigV4 spec: everything but A-Z a-z 0-9 - . _ ~ is %XX.
 * encodeURIComponent does the same (uppercase hex, UTF-8) except that it
 * leaves ! ' ( ) * as they are; it throws on a lone surrogate, which the
 * byte loop below encodes as U+FFFD like Buffer.from does. Every request's
 * path and query go through here: the loop alone was a few per cent of a
 * small GET's CPU.
 */
export function uriEncode(s: string, keepSlash = false): string {
  if ((keepSlash ? UNRESERVED_OR_SLASH : UNRESERVED).test(s)) return s;
  try {
    const out = encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
    return keepSlash ? out.replace(/%2F/g, '/') : out;
  } catch {
    return uriEncodeBytes(s, keepSlash);
  }
}

/** The spec's definition, byte by byte: the reference for uriEncode (and its fallback). */
export function uriEncodeBytes(s: string, keepSlash = false): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-._~]/.test(c) || (keepSlash && c === '/')) out += c;
    else out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * Canonical URIs a client may have signed for this raw path: S3 clients sign
 * the URI-encoded key (each byte outside the unreserved set as %XX, '/'
 * kept), which is usually but not always the path they sent (some leave '+',
 * '!' or '$' raw, some encode '/' inside keys).
 */
export function canonicalUris(rawPath: string): string[] {
  const decodedSegments = rawPath.split('/').map((seg) => uriEncode(safeDecode(seg)));
  const a = decodedSegments.join('/');
  const b = uriEncode(safeDecode(rawPath), true);
  return [...new Set([a, b, rawPath])];
}

/** A query name or value as signed: decoded and encoded again (as sent, when it holds only unreserved characters). */
const canonicalPart = (s: string) => (UNRESERVED.test(s) ? s : uriEncode(safeDecode(s)));

/** Canonical query string: decoded, re-encoded, sorted by name then value. */
export function canonicalQuery(rawQuery: string, exclude?: string): string {
  if (!rawQuery) return '';
  const pairs: [string, string][] = [];
  for (const part of rawQuery.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = canonicalPart(eq < 0 ? part : part.slice(0, eq));
    if (name === exclude) continue;
    pairs.push([name, eq < 0 ? '' : canonicalPart(part.slice(eq + 1))]);
  }
  pairs.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0));
  return pairs.map(([n, v]) => `${n}=${v}`).join('&');
}

/**
 * Canonical headers from the raw header list: names lower-cased, values
 * trimmed with inner runs of spaces collapsed, repeated headers joined by ','.
 * Returns null when a signed header is absent.
 */
export function canonicalHeaders(rawHeaders: string[], signed: string[]): string | null {
  let out = '';
  for (const h of signed) {
    let value: string | undefined;
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
      const name = rawHeaders[i];
      if (name.length !== h.length || name.toLowerCase() !== h) continue;
      const v = canonicalValue(rawHeaders[i + 1]);
      value = value === undefined ? v : `${value},${v}`;
    }
    if (value === undefined) return null;
    out += `${h}:${value}\n`;
  }
  return out;
}

/** A header value trimmed, with inner runs of whitespace as one space (most values have none to fold). */
function canonicalValue(raw: string): string {
  const v = raw.trim();
  return /[^\S ]| {2}/.test(v) ? v.replace(/\s+/g, ' ') : v;
}

export interface Scope {
  /** yyyymmdd */
  date: string;
  region: string;
  service: string;
}

export const scopeString = (s: Scope) => `${s.date}/${s.region}/${s.service}/aws4_request`;

/**
 * Signing keys by secret and scope: deriving one is four HMACs (S3 API
 * reference, "Signature Calculations for the Authorization Header": kDate,
 * kRegion, kService, kSigning), and a key serves every request of its day.
 * Bounded, so a flood of requests naming many dates or regions cannot grow
 * it; at the bound it starts over.
 */
const signingKeys = new Map<string, Buffer>();
const hmac = (key: string | Buffer, data: string | Buffer) => createHmac('sha256', key).update(data).digest();

export function signingKey(secret: string, scope: Scope): Buffer {
  const id = `${scope.date}/${scope.region}/${scope.service}/${secret}`;
  let key = signingKeys.get(id);
  if (!key) {
    key = hmac(hmac(hmac(hmac(`AWS4${secret}`, scope.date), scope.region), scope.service), 'aws4_request');
    if (signingKeys.size >= 1024) signingKeys.clear();
    signingKeys.set(id, key);
  }
  return key;
}

/** HMAC-SHA256 of `stringToSign` with the SigV4 signing key of `secret` for `scope`, as lower-case hex. */
export function signString(secret: string, scope: Scope, stringToSign: string): string {
  return createHmac('sha256', signingKey(secret, scope)).update(stringToSign).digest('hex');
}

export function requestStringToSign(amzDate: string, scope: Scope, canonicalRequest: string | Buffer): string {
  return ['AWS4-HMAC-SHA256', amzDate, scopeString(scope), sha256hex(canonicalRequest)].join('\n');
}

export function canonicalRequest(method: string, uri: string, query: string, headers: string, signedHeaders: string, payload: string): string {
  return [method, uri, query, headers, signedHeaders, payload].join('\n');
}

/** Constant-time comparison of two hex signatures. */
export function sameSignature(a: string, b: string): boolean {
  const x = Buffer.from(a.toLowerCase(), 'utf8');
  const y = Buffer.from(b.toLowerCase(), 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** yyyymmddThhmmssZ to a Date, or null. */
export function parseAmzDate(s: string | undefined): Date | null {
  const m = s && /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m) return null;
  const d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
  return Number.isNaN(d.getTime()) ? null : d;
}
