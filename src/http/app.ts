import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY, type Config, type KeyGrant } from '../config/config.js';
import type { Engine } from '../engine/engine.js';
import type { Logger } from '../log.js';
import { S3Error } from '../errors.js';
import type { Ctx } from './context.js';
import { sendError, toS3Error } from './errors.js';
import { authenticate, authorize, KeyStore } from './auth/authenticate.js';
import { ROUTES } from './routes.js';
import { watchSend } from './timeouts.js';
import { Router, type Level } from './router.js';
import { ADMIN, isSigned, registerAdmin } from './admin/index.js';
import { Metrics } from './admin/metrics.js';
import { inTurn, leaveTurn, neutralMediaType } from './connection-order.js';
import { fastHead } from './fast-head.js';
import { logRequest, loggerOptions, noteRequest, requestFacts, startRequest } from './request-log.js';

declare module 'fastify' {
  interface FastifyInstance {
    engine: Engine;
    config: Config;
  }
}

// x-amz-request-id: 16 random hex digits (random, not a counter, which would
// tell clients how busy the proxy is). Drawn from a pool filled 512 at a
// time: one randomBytes call per request was 5 % of the CPU of a 4 KiB GET.
let idPool = Buffer.alloc(0);
let idAt = 0;
const newRequestId = () => {
  if (idAt + 8 > idPool.length) {
    idPool = randomBytes(4096);
    idAt = 0;
  }
  idAt += 8;
  return idPool.toString('hex', idAt - 8, idAt).toUpperCase();
};

/**
 * The request's abort signal, aborted when the client goes away before the
 * response is complete; made when first asked for (Ctx.signal is a getter):
 * an AbortSignal is an EventTarget, and making one for every request was 3 %
 * of a HEAD's CPU in the profile.
 */
function lazyAbortSignal(reply: FastifyReply): () => AbortSignal {
  let made: AbortSignal | undefined;
  return () => {
    if (made) return made;
    const res = reply.raw;
    const ac = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) ac.abort();
    };
    if (res.closed) onClose();
    else res.once('close', onClose);
    return (made = ac.signal);
  };
}

/** A request's bucket and key; its query and resource made when first asked for (a HEAD on the fast path needs neither). */
export class Target {
  private parsed?: URLSearchParams;

  constructor(
    readonly bucket: string,
    readonly key: string | undefined,
    private readonly rawPath: string,
    private readonly rawQuery: string,
    /** Virtual-hosted style: the bucket came from the Host header. */
    readonly virtual = false,
  ) {}

  get query(): URLSearchParams {
    return (this.parsed ??= new URLSearchParams(this.rawQuery));
  }

  /** The resource named in error documents. */
  get resource(): string {
    return this.virtual ? `/${this.bucket}${this.key === undefined ? '' : `/${this.key}`}` : decode(this.rawPath);
  }
}

/** A path segment to text: a key that is not valid UTF-8 is InvalidURI, as AWS answers. */
function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new S3Error('InvalidURI');
  }
}

/**
 * Path-style (`/bucket/key`) or virtual-hosted style (`bucket.<domain>/key`,
 * for the configured domains) request targets. The raw URL is used so that
 * '//' runs, trailing '/', '+' and percent-escapes in keys survive exactly.
 */
export function parseTarget(rawUrl: string, host: string | undefined, domains: string[]): Target {
  let url = rawUrl;
  if (url[0] !== '/' && /^https?:\/\//i.test(url)) url = url.replace(/^https?:\/\/[^/]*/i, '') || '/';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const rawQuery = q < 0 ? '' : url.slice(q + 1);
  const hostname = domains.length > 0 && host ? host.replace(/:\d+$/, '').toLowerCase() : '';
  const domain = hostname && domains.find((d) => hostname.endsWith(`.${d.toLowerCase()}`));
  if (domain) {
    const bucket = hostname.slice(0, -(domain.length + 1));
    // `.localhost`: a virtual-hosted Host with nothing before the domain
    // names no bucket; not a request for the service (ListBuckets).
    if (bucket === '') throw new S3Error('InvalidBucketName', `The specified bucket is not valid: the Host names no bucket before .${domain}.`, { fields: { BucketName: '' } });
    const key = path.length > 1 ? decode(path.slice(1)) : undefined;
    return new Target(bucket, key, path, rawQuery, true);
  }
  const rest = path.slice(1);
  const slash = rest.indexOf('/');
  const bucket = decode(slash < 0 ? rest : rest.slice(0, slash));
  const keyPart = slash < 0 ? '' : rest.slice(slash + 1);
  const key = keyPart === '' ? undefined : decode(keyPart);
  return new Target(bucket, key, path, rawQuery);
}

/**
 * The key pairs clients may sign with: [[auth.keys]], the pair from
 * access_key_id / secret_access_key, or else the development pair.
 */
export function effectiveKeys(config: Config): { keys: KeyGrant[]; development: boolean } {
  const keys = [...config.authKeys];
  if (config.accessKeyId) keys.push({ accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey, readOnly: false });
  if (keys.length > 0) return { keys, development: false };
  return { keys: [{ accessKeyId: DEV_ACCESS_KEY_ID, secretAccessKey: DEV_SECRET_ACCESS_KEY, readOnly: false }], development: true };
}

/** PEM certificate and key: the app serves HTTPS. */
export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

/** The HTTP app; `makeEngine` receives the app's logger. */
export function buildHttp(config: Config, makeEngine: (log: Logger) => Engine, tls?: TlsFiles): FastifyInstance {
  // Requests the HEAD fast path answers never reach fastify (./fast-head.ts).
  let fast: (req: IncomingMessage, res: ServerResponse) => boolean = () => false;
  const app = Fastify({
    ...(tls ? { https: { cert: tls.cert, key: tls.key } } : {}),
    serverFactory: (handler) => {
      const listener = (req: IncomingMessage, res: ServerResponse) => {
        if (!fast(req, res)) handler(req, res);
      };
      const server = tls ? https.createServer({ cert: tls.cert, key: tls.key }, listener) : http.createServer(listener);
      // What fastify sets on a server it makes itself (its defaults: keep-alive
      // 72 s, no request or connection timeout; ours are in ./timeouts.ts).
      server.keepAliveTimeout = 72_000;
      server.requestTimeout = 0;
      server.setTimeout(0);
      return server;
    },
    logger: loggerOptions(config),
    // Fastify's two lines per request are replaced by one (onResponse below).
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => newRequestId(),
    requestIdHeader: false,
    routerOptions: { maxParamLength: 4096, ignoreTrailingSlash: false, ignoreDuplicateSlashes: false },
    requestTimeout: 0,
    // Requests arriving during a graceful stop get an S3 503 (onRequest below).
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Malformed percent-encoding in the path is S3's InvalidURI.
    frameworkErrors: (err, req, reply) => {
      const e = err.code === 'FST_ERR_BAD_URL' ? new S3Error('InvalidURI') : toS3Error(err, req);
      void sendError(reply, e, req.url, req.id);
    },
  });
  const engine = makeEngine(app.log);
  app.decorate('engine', engine);
  app.decorate('config', config);

  // Bodies are never parsed by Fastify: operations stream req.raw themselves.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));

  const router = new Router(ROUTES);
  const { keys, development } = effectiveKeys(config);
  const keyStore = new KeyStore(keys, config.anonymous, config.authSigv2);
  if (development) app.log.warn(`no key pair configured: clients sign with the public development pair (access key ${DEV_ACCESS_KEY_ID}, docs/configuration.md); do not expose this port`);
  if (config.anonymous !== 'none') app.log.warn(`anonymous access is enabled (${config.anonymous})`);

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  // The HEAD fast path (./fast-head.ts) does these two hooks' work itself
  // (ids, server header, turn, shutdown, log line, metrics): keep it in step.
  app.addHook('onRequest', async (req, reply) => {
    const turn = inTurn(req.raw, reply.raw);
    if (turn) await turn;
    neutralMediaType(req);
    reply.header('x-amz-request-id', req.id);
    reply.header('x-amz-id-2', req.id);
    reply.header('server', 'DeltaGliderProxy');
    startRequest(req);
    watchSend(reply, config.sendIdleTimeoutSecs * 1000);
    if (closing) {
      // Shutting down: every SDK retries a 503 (on another instance, behind a balancer).
      reply.header('connection', 'close');
      return sendError(reply, new S3Error('ServiceUnavailable', 'The server is shutting down. Please retry.'), req.url, req.id);
    }
  });
  const metrics = new Metrics(engine);
  fast = fastHead({ engine, config, keys: keyStore, metrics, log: app.log, closing: () => closing, requestId: newRequestId, parseTarget });
  app.addHook('onResponse', async (req, reply) => {
    leaveTurn(req.raw, reply.raw);
    const facts = requestFacts(req, reply);
    // The proxy's own endpoints (probes, scrapes, console polls) stay out of the S3 figures.
    if (facts.operation === ADMIN) return void req.log.debug?.({ method: req.method, url: req.url.split('?')[0], status: reply.statusCode }, 'admin request');
    metrics.observe(facts);
    logRequest(req, facts);
  });

  const handle = async (req: FastifyRequest, reply: FastifyReply) => {
    let resource = req.url;
    try {
      const rawUrl = req.raw.url ?? '/';
      const t = parseTarget(rawUrl, req.raw.headers.host, config.virtualHostDomains);
      resource = t.resource;
      const principal = authenticate(req.raw, rawUrl.replace(/^https?:\/\/[^/]*/i, ''), keyStore, Date.now(), { virtualBucket: t.virtual ? t.bucket : undefined }, t.query);
      noteRequest(req, { accessKeyId: principal.accessKeyId, auth: principal.auth });
      const signal = lazyAbortSignal(reply);
      const ctx: Ctx = {
        req,
        reply,
        engine,
        config,
        bucket: t.bucket,
        key: t.key,
        query: t.query,
        requestId: req.id,
        resource,
        principal,
        get signal() {
          return signal();
        },
      };
      const level: Level = t.bucket === '' ? 'service' : t.key === undefined ? 'bucket' : 'object';
      const route = router.resolve(ctx, level);
      noteRequest(req, { operation: route.name });
      authorize(principal, t.bucket, req.method !== 'GET' && req.method !== 'HEAD');
      await route.handler(ctx);
      return reply;
    } catch (err) {
      if (reply.sent) {
        reply.raw.destroy(err as Error);
        return reply;
      }
      return sendError(reply, toS3Error(err, req), resource, req.id);
    }
  };
  app.route({ method: ['GET', 'PUT', 'POST', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH'], url: '*', handler: handle, exposeHeadRoute: false });
  const virtualHosted = (req: FastifyRequest) => parseTarget('/', req.raw.headers.host, config.virtualHostDomains).bucket !== '';
  // Kept for unsigned probes; a signed request (or a virtual-hosted one)
  // for /health is S3 for the bucket 'health'.
  app.route({ method: ['GET', 'HEAD'], url: '/health', exposeHeadRoute: false, handler: (req, reply) => {
    if (isSigned(req) || virtualHosted(req)) return handle(req, reply);
    noteRequest(req, { operation: ADMIN });
    return reply.send({ status: 'ok' });
  } });
  registerAdmin(app, { config, engine, keys, metrics, virtualHosted, s3: handle });

  app.setErrorHandler((err, req, reply) => sendError(reply, toS3Error(err, req), req.url, req.id));
  app.setNotFoundHandler((req, reply) => sendError(reply, new S3Error('NotImplemented'), req.url, req.id));
  app.addHook('onClose', async () => engine.close());
  return app;
}
