import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../../config/config.js';
import type { Engine } from '../../engine/engine.js';
import { isBucketName } from '../../engine/keys.js';
import { saving, scanUsage, type ScanResult } from '../../engine/usage.js';
import { storedSize } from '../object-headers.js';
import { codecPoolStats, type Metrics } from './metrics.js';
import { type Session, Sessions } from './sessions.js';

// The console's JSON API under /_/api/. Every call but sign-in needs a
// session (401 otherwise); a key limited to some buckets sees only those.
// POSTs must carry the header CSRF_HEADER, which a cross-site form or a
// no-CORS fetch cannot send, on top of the SameSite=Strict cookie.

export const CSRF_HEADER = 'x-deltaglider-console';
const SCAN_TTL_MS = 10_000;
const MAX_BODY = 4096;
const BODY_TIMEOUT_MS = 10_000;

const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/;


function fail(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply.code(status).header('cache-control', 'no-store').send({ error: message });
}

/** A small JSON body, read with a size cap and a timeout. */
async function readJson(req: FastifyRequest): Promise<Record<string, unknown> | null> {
  const chunks: Buffer[] = [];
  let n = 0;
  const raw = req.raw;
  const timer = setTimeout(() => raw.destroy(new Error('body timeout')), BODY_TIMEOUT_MS);
  try {
    for await (const c of raw as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > MAX_BODY) return null;
      chunks.push(c);
    }
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export class ConsoleApi {
  private readonly scans = new Map<string, { at: number; result: Promise<ScanResult> }>();
  private readonly started = Date.now();

  constructor(
    private readonly engine: Engine,
    private readonly config: Config,
    private readonly sessions: Sessions,
    private readonly metrics: Metrics,
  ) {}

  /** Plain HTTP is allowed from loopback only, unless console.allow_http. */
  transportAllowed(req: FastifyRequest): boolean {
    return this.config.consoleAllowHttp || this.secure(req) || LOOPBACK.test(req.socket.remoteAddress ?? '');
  }

  secure(req: FastifyRequest): boolean {
    return req.protocol === 'https' || req.headers['x-forwarded-proto'] === 'https';
  }

  async handle(req: FastifyRequest, reply: FastifyReply, path: string): Promise<FastifyReply> {
    reply.header('cache-control', 'no-store');
    if (req.method === 'POST' && req.headers[CSRF_HEADER] !== '1') return fail(reply, 403, `POST needs the ${CSRF_HEADER} header`);
    if (path === '/_/api/login' && req.method === 'POST') return this.login(req, reply);
    const session = this.sessions.get(req);
    if (!session) return fail(reply, 401, 'sign in first');
    if (path === '/_/api/logout' && req.method === 'POST') {
      this.sessions.end(req);
      this.sessions.setCookie(reply, null, this.secure(req));
      return reply.send({ ok: true });
    }
    if (req.method !== 'GET') return fail(reply, 405, 'method not allowed');
    if (path === '/_/api/session') return reply.send({ accessKeyId: session.grant.accessKeyId, expires: new Date(session.expires).toISOString() });
    if (path === '/_/api/buckets') return this.buckets(reply, session);
    if (path === '/_/api/live') return this.live(reply);
    const m = /^\/_\/api\/buckets\/([^/]+)\/(deltaspaces|objects)$/.exec(path);
    if (m) {
      const bucket = decodeURIComponent(m[1]);
      if (!isBucketName(bucket) || !this.may(session, bucket) || !(await this.engine.backend.headBucket(bucket))) return fail(reply, 404, 'no such bucket');
      const query = new URLSearchParams(req.url.split('?')[1] ?? '');
      return m[2] === 'deltaspaces' ? this.deltaspaces(reply, bucket) : this.objects(reply, bucket, query);
    }
    return fail(reply, 404, 'no such API');
  }

  private may(s: Session, bucket: string): boolean {
    return !s.grant.buckets || s.grant.buckets.includes(bucket);
  }

  private async login(req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    if (!this.transportAllowed(req)) return fail(reply, 403, 'the console signs in over plain HTTP from loopback only (console.allow_http)');
    const client = req.socket.remoteAddress ?? '?';
    const turn = this.sessions.allowAttempt(client);
    if (!turn.ok) {
      req.log.info({ client }, 'console sign-in refused: too many attempts');
      return fail(reply.header('retry-after', String(turn.retryAfter)), 429, 'too many sign-in attempts; wait and try again');
    }
    const body = await readJson(req);
    const id = typeof body?.accessKeyId === 'string' ? body.accessKeyId : '';
    const secret = typeof body?.secretAccessKey === 'string' ? body.secretAccessKey : '';
    const s = this.sessions.signIn(id, secret);
    if (!s) {
      req.log.info({ accessKeyId: id.slice(0, 128), client }, 'console sign-in failed: unknown key or wrong secret');
      return fail(reply, 401, 'unknown access key id or wrong secret');
    }
    req.log.info({ accessKeyId: id, client }, 'console sign-in');
    this.sessions.setCookie(reply, s, this.secure(req));
    return reply.send({ accessKeyId: id, expires: new Date(s.expires).toISOString() });
  }

  private async buckets(reply: FastifyReply, session: Session): Promise<FastifyReply> {
    const usage = this.engine.usageFigures();
    const rows = (await this.engine.listBuckets())
      .filter((b) => this.may(session, b.name))
      .map((b) => {
        const u = usage.get(b.name) ?? { objects: 0, logical: 0, stored: 0 };
        return { bucket: b.name, created: b.created.toISOString(), objects: u.objects, logical_bytes: u.logical, stored_bytes: u.stored, saving: saving(u.logical, u.stored) };
      });
    return reply.send({ buckets: rows });
  }

  /** A bucket's deltaspaces: one scan of its sidecars, reused for SCAN_TTL_MS. */
  private async deltaspaces(reply: FastifyReply, bucket: string): Promise<FastifyReply> {
    let hit = this.scans.get(bucket);
    if (!hit || Date.now() - hit.at > SCAN_TTL_MS) {
      if (this.scans.size > 100) this.scans.clear();
      hit = { at: Date.now(), result: scanUsage(this.engine.backend, bucket, '') };
      this.scans.set(bucket, hit);
      hit.result.catch(() => this.scans.delete(bucket));
    }
    return reply.send(await hit.result);
  }

  private async objects(reply: FastifyReply, bucket: string, q: URLSearchParams): Promise<FastifyReply> {
    const prefix = q.get('prefix') ?? '';
    const r = await this.engine.listObjects({ bucket, prefix, delimiter: '/', after: q.get('after') ?? '', maxKeys: 200 });
    const objects = r.objects.map((m) => {
      // The same stored size as x-deltaglider-stored-size (docs/s3-compatibility.md).
      const stored = storedSize(m);
      const seeded = stored !== m.stored_size;
      return { key: m.key, size: m.size, stored_as: m.kind, stored_size: stored, ratio: m.size > 0 ? Math.round((stored / m.size) * 10000) / 10000 : 0, seeded_reference: seeded, last_modified: m.created };
    });
    return reply.send({ prefix, prefixes: r.commonPrefixes, objects, truncated: r.truncated, next: r.truncated ? r.last : undefined });
  }

  private live(reply: FastifyReply): FastifyReply {
    const codec = codecPoolStats(this.engine);
    const mem = process.memoryUsage();
    return reply.send({
      now: Date.now(),
      uptime_seconds: Math.round((Date.now() - this.started) / 1000),
      requests_total: this.metrics.requestsTotal,
      codec,
      reference_cache: this.engine.referenceCacheStats,
      rss_bytes: mem.rss,
    });
  }
}
