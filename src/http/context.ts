import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config/config.js';
import type { Engine } from '../engine/engine.js';
import type { Principal } from './auth/authenticate.js';

/** What every operation handler receives: the parsed S3 request target. */
export interface Ctx {
  req: FastifyRequest;
  reply: FastifyReply;
  engine: Engine;
  config: Config;
  /** Empty for service-level requests. */
  bucket: string;
  /** Undefined for bucket-level requests. */
  key?: string;
  query: URLSearchParams;
  requestId: string;
  /** Aborted when the client goes away. */
  signal: AbortSignal;
  /** The resource named in error documents. */
  resource: string;
  /** Who signed the request, and what the body must satisfy. */
  principal: Principal;
}

export type Handler = (ctx: Ctx) => Promise<void>;

/** A request header as sent (the raw request's: fastify's view may differ, ./connection-order.ts). */
export function header(ctx: Ctx, name: string): string | undefined {
  const v = ctx.req.raw.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}
