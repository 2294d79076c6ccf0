import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyBaseLogger } from 'fastify';
import { LRUCache } from 'lru-cache';
import type { Config } from '../config/config.js';
import type { Engine } from '../engine/engine.js';
import type { ObjectMeta } from '../engine/meta.js';
import { authenticate, authorize, type KeyStore } from './auth/authenticate.js';
import { logSafeUrl } from './auth/redact.js';
import type { Metrics } from './admin/metrics.js';
import { turnIsFree } from './connection-order.js';
import { objectHeaders } from './object-headers.js';
import { logRequest, type RequestFacts } from './request-log.js';

// HeadObject in its plainest form, answered before fastify sees the request.
//
// A HEAD has no body, so what it costs is the request handling itself:
// through fastify's routing, hooks, request and reply objects it took more
// CPU than everything else a HEAD does (bench/small.ts; the profile is in
// the commit that added this file). A HEAD of an object whose sidecar is in
// memory and unchanged on disk is answered here instead, synchronously,
// with the very functions the full path uses: parseTarget,
// authenticate and authorize, engine.peekObject (what headObject would
// find), objectHeaders, the request's log line and metrics.
//
// Everything else goes on to fastify unchanged: any refusal (so the error
// answer is the full path's), conditional and range headers, checksum mode,
// query parameters other than a signature's, a body, an object the engine
// would have to read, a response still under way before this one on its
// connection, and a server shutting down.

export interface FastHeadDeps {
  engine: Engine;
  config: Config;
  keys: KeyStore;
  metrics: Metrics;
  log: FastifyBaseLogger;
  closing: () => boolean;
  requestId: () => string;
  parseTarget: (rawUrl: string, host: string | undefined, domains: string[]) => { bucket: string; key?: string; virtual?: boolean };
}

/** Request headers that ask HeadObject for more than its plain answer (GetObject reference). */
const FULL_PATH_HEADERS = ['range', 'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since', 'x-amz-checksum-mode', 'transfer-encoding'];

/**
 * Whether every query parameter is one a signature uses (X-Amz-*, and the
 * SDKs' x-id): none of them changes what HeadObject answers. versionId,
 * partNumber, response-* and sub-resources take the full path.
 */
function onlySignatureParams(rawQuery: string): boolean {
  for (let at = 0; at < rawQuery.length; ) {
    const end = rawQuery.indexOf('&', at) >>> 0;
    if (end !== at && !rawQuery.startsWith('X-Amz-', at) && !rawQuery.startsWith('x-amz-', at) && !rawQuery.startsWith('x-id=', at)) return false;
    at = Math.min(end, rawQuery.length) + 1;
  }
  return true;
}

/**
 * The headers describing a version, flattened with its Content-Length, as
 * writeHead takes them: made once per version (sidecars in the engine's
 * cache are frozen, so one object stands for one version).
 */
const described = new WeakMap<ObjectMeta, string[]>();
function describe(meta: ObjectMeta): string[] {
  let flat = described.get(meta);
  if (!flat) {
    flat = [];
    for (const [k, v] of objectHeaders(meta, false)) flat.push(k, v);
    flat.push('content-length', String(meta.size));
    if (Object.isFrozen(meta)) described.set(meta, flat);
  }
  return flat;
}

/**
 * The request target as logged (auth/redact.ts), kept for URLs seen again:
 * a presigned URL is fetched many times, and dropping its signature
 * parameters is then the same work each time. At most 1024 URLs of up to
 * 2 kB each (a header may hold 16 kB).
 */
const safeUrls = new LRUCache<string, string>({ max: 1024 });
function safeUrl(rawUrl: string): string {
  let safe = safeUrls.get(rawUrl);
  if (safe === undefined) {
    safe = logSafeUrl(rawUrl);
    if (rawUrl.length <= 2048) safeUrls.set(rawUrl, safe);
  }
  return safe;
}

/** Answers the request and returns true, or returns false and leaves it untouched for fastify. */
export function fastHead(d: FastHeadDeps): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    if (req.method !== 'HEAD' || d.closing()) return false;
    const h = req.headers;
    for (const name of FULL_PATH_HEADERS) if (h[name] !== undefined) return false;
    if (h['content-length'] !== undefined && h['content-length'] !== '0') return false;
    const rawUrl = req.url ?? '';
    const q = rawUrl.indexOf('?');
    if (rawUrl[0] !== '/' || (q >= 0 && !onlySignatureParams(rawUrl.slice(q + 1)))) return false;
    if (!turnIsFree(req)) return false;
    const started = performance.now();
    let bucket: string;
    let key: string | undefined;
    let principal;
    try {
      const t = d.parseTarget(rawUrl, h.host, d.config.virtualHostDomains);
      bucket = t.bucket;
      key = t.key;
      if (key === undefined || bucket === '') return false;
      // The query is parsed only if the signature has to be verified (a
      // presigned URL seen before is not: auth/verify-v4.ts presignedAgain).
      principal = authenticate(req, rawUrl, d.keys, Date.now(), { virtualBucket: t.virtual ? bucket : undefined });
      authorize(principal, bucket, false);
    } catch {
      return false; // the full path gives the refusal its S3 error
    }
    const meta = d.engine.peekObject(bucket, key);
    if (!meta) return false;

    const id = d.requestId();
    // The headers the full path sends, in its order (app.ts onRequest, ops/get-object.ts).
    const headers = ['x-amz-request-id', id, 'x-amz-id-2', id, 'server', 'DeltaGliderProxy', ...describe(meta)];
    const socket = req.socket;
    const writtenBefore = socket.bytesWritten;
    res.writeHead(200, headers);
    // A HEAD's answer is its headers: end() hands them to the socket now,
    // so no send timeout is needed (app.ts watchSend is for bodies).
    res.end();
    const facts: RequestFacts = {
      operation: 'HeadObject',
      status: 200,
      accessKeyId: principal.accessKeyId,
      auth: principal.auth,
      bytesIn: 0,
      bytesOut: Math.max(0, socket.bytesWritten - writtenBefore),
      ms: Math.round(performance.now() - started),
    };
    d.metrics.observe(facts);
    logRequest({ method: 'HEAD', url: rawUrl, log: d.log }, facts, id, safeUrl(rawUrl));
    return true;
  };
}
