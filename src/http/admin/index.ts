import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config, KeyGrant } from '../../config/config.js';
import type { Engine } from '../../engine/engine.js';
import { ConsoleApi } from './console-api.js';
import { HealthChecks } from './health.js';
import { refuseMetrics, serveMetrics, type Metrics } from './metrics.js';
import { Sessions } from './sessions.js';
import { noteRequest } from '../request-log.js';

/** The operation name of the proxy's own endpoints in logs (kept out of the S3 metrics). */
export const ADMIN = 'Admin';

// The proxy's own endpoints, under /_/ (no bucket can be named '_'):
//   /_/health   open: the process is alive
//   /_/ready    backend reachable and xdelta3 runs (metrics token)
//   /_/metrics  Prometheus (metrics token, or open with metrics.public)
//   /_/         the web console (static files) and /_/api/* (session)
// A virtual-hosted-style request (Host: <bucket>.<domain>) names a key
// '_/...' in that bucket, so it goes to the S3 API instead.

export interface AdminDeps {
  config: Config;
  engine: Engine;
  keys: KeyGrant[];
  metrics: Metrics;
  /** Whether the request's Host names a bucket (virtual-hosted style). */
  virtualHosted(req: FastifyRequest): boolean;
  /** The S3 API handler. */
  s3(req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

// The console's files ship in the package (static/console), found from this
// module both in src/ (tests) and in dist/src/ (the built package).
function consoleDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = path.join(dir, 'static', 'console');
    if (existsSync(path.join(candidate, 'index.html'))) return candidate;
    dir = path.dirname(dir);
  }
  throw new Error('static/console not found beside the package');
}

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

export function registerAdmin(app: FastifyInstance, deps: AdminDeps): void {
  const { config, engine, metrics } = deps;
  const health = new HealthChecks(engine, config);
  const sessions = new Sessions(deps.keys, config.consoleSessionMinutes * 60_000);
  const api = new ConsoleApi(engine, config, sessions, metrics);
  const files = config.consoleEnabled ? consoleDir() : '';
  const cache = new Map<string, Buffer>();

  const serveFile = async (reply: FastifyReply, name: string): Promise<FastifyReply> => {
    let body = cache.get(name);
    if (!body) {
      body = await readFile(path.join(files, name));
      cache.set(name, body);
    }
    return reply.headers(SECURITY_HEADERS).header('cache-control', 'no-cache').type(TYPES[path.extname(name)] ?? 'application/octet-stream').send(body);
  };

  const handler = async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    if (deps.virtualHosted(req)) return deps.s3(req, reply);
    noteRequest(req, { operation: ADMIN });
    const p = (req.raw.url ?? '/').split('?')[0];
    const get = req.method === 'GET' || req.method === 'HEAD';
    if (p === '/_/health' && get) return health.health(reply);
    if (p === '/_/metrics' && get) return serveMetrics(req, reply, metrics, config);
    if (p === '/_/ready' && get) {
      return refuseMetrics(req, reply, config) ?? health.ready(reply);
    }
    if (!config.consoleEnabled) return reply.code(404).send({ error: 'the console is disabled (console.enabled)' });
    if (!api.transportAllowed(req)) {
      return reply.code(403).type('text/plain').send('The console is served over plain HTTP to loopback clients only: put it behind TLS or set console.allow_http (docs/security.md).\n');
    }
    if (p.startsWith('/_/api/')) return api.handle(req, reply, p);
    if (!get) return reply.code(405).send({ error: 'method not allowed' });
    if (p === '/_/' || p === '/_/index.html') return serveFile(reply, 'index.html');
    const m = /^\/_\/static\/([a-z0-9-]+\.(?:js|css|svg))$/.exec(p);
    if (m && existsSync(path.join(files, m[1]))) return serveFile(reply, m[1]);
    return reply.code(404).send({ error: 'not found' });
  };
  const methods = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'] as const;
  app.route({ method: [...methods], url: '/_/*', handler, exposeHeadRoute: false });
  app.route({
    method: [...methods],
    url: '/_',
    exposeHeadRoute: false,
    handler: (req, reply) => {
      if (deps.virtualHosted(req)) return deps.s3(req, reply);
      noteRequest(req, { operation: ADMIN });
      return reply.redirect('/_/');
    },
  });
}

/** Whether a request carries SigV4/SigV2 credentials (header or query). */
export function isSigned(req: FastifyRequest): boolean {
  if (req.headers.authorization) return true;
  const q = (req.raw.url ?? '').split('?')[1];
  if (!q) return false;
  const params = new URLSearchParams(q);
  return params.has('X-Amz-Credential') || params.has('X-Amz-Signature') || params.has('AWSAccessKeyId') || params.has('Signature');
}
