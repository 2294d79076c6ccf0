import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyRequest } from 'fastify';

// Two things Node and fastify do to a request before any S3 code runs, and
// which an S3 server must not.

/**
 * HTTP/1.1 pipelining (RFC 9112, section 9.3.2): a client may send requests
 * on one connection without waiting for each response. Node hands them
 * over as fast as it parses them and only keeps the responses in order;
 * but a server may process pipelined requests in parallel only when all of
 * them are safe methods, and a GET sent right behind a PUT of the same key
 * must see that PUT. So a request waits here until the response before it
 * on its connection has finished. (Pipelined responses wait for that in
 * Node anyway, so running requests in turn costs no client anything.)
 */
const lastResponse = new WeakMap<Socket, ServerResponse>();

export function inTurn(req: IncomingMessage, res: ServerResponse): Promise<void> | undefined {
  const socket = req.socket;
  const prev = lastResponse.get(socket);
  lastResponse.set(socket, res);
  if (!prev || prev.writableFinished || prev.destroyed) return undefined;
  return new Promise((resolve) => {
    const done = () => {
      prev.off('finish', done);
      prev.off('close', done);
      resolve();
    };
    prev.once('finish', done);
    prev.once('close', done);
  });
}

/**
 * Whether a request may be answered at once: no response before it on its
 * connection is still under way (the HEAD fast path, ./fast-head.ts, which
 * answers synchronously and so needs no turn of its own).
 */
export function turnIsFree(req: IncomingMessage): boolean {
  const prev = lastResponse.get(req.socket);
  return !prev || prev.writableFinished || prev.destroyed;
}

/** A finished response is not kept for the connection's next request (onResponse). */
export function leaveTurn(req: IncomingMessage, res: ServerResponse): void {
  if (lastResponse.get(req.socket) === res) lastResponse.delete(req.socket);
}

const BODYLESS = new Set(['GET', 'HEAD', 'TRACE']);
const NEUTRAL = { 'content-type': 'application/octet-stream' };

/**
 * S3 keeps any Content-Type as it was sent ('x', '', 'text/' included: it
 * is a header value to store, not to parse), while fastify answers 415 to
 * a request with a body whose Content-Type it cannot parse, before any
 * handler runs. Bodies are never parsed by fastify here (operations stream
 * them), so fastify's own view of the header (request.headers) is given a
 * neutral value; the proxy reads headers from the raw request, which keeps
 * what was sent (./context.ts).
 */
export function neutralMediaType(req: FastifyRequest): void {
  if (req.raw.headers['content-type'] !== undefined && !BODYLESS.has(req.method)) req.headers = NEUTRAL;
}
