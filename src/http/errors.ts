import type { FastifyReply, FastifyRequest } from 'fastify';
import { BusyError, NotFoundError, S3Error } from '../errors.js';
import { UnsupportedFormatError } from '../engine/meta.js';
import { xmlDocument } from './xml.js';

/** Maps anything thrown by a handler to the S3Error the client gets. */
export function toS3Error(err: unknown, req: FastifyRequest): S3Error {
  if (err instanceof S3Error) return err;
  if (err instanceof BusyError) {
    // S3 asks clients to back off with 503 SlowDown; every SDK retries it.
    return new S3Error('SlowDown', undefined, { headers: { 'retry-after': String(err.retryAfterSeconds) }, cause: err });
  }
  const e = err as { code?: string; name?: string; statusCode?: number };
  if (e?.name === 'AbortError' || e?.code === 'ABORT_ERR' || e?.code === 'ERR_STREAM_PREMATURE_CLOSE') {
    return new S3Error('IncompleteBody', undefined, { cause: err });
  }
  if (err instanceof UnsupportedFormatError) {
    // Written by a newer release: refused, never guessed at (docs/operations.md, upgrades).
    req.log.warn({ err }, 'object in a storage format this release cannot read');
    return new S3Error('NotImplemented', `The object is stored as ${err.what}; upgrade the proxy to read it.`, { cause: err });
  }
  if (err instanceof NotFoundError) {
    // A blob removed under a reader that could not resolve again (GET vs DELETE).
    return new S3Error('NoSuchKey', undefined, { cause: err });
  }
  // Unknown failures: a generic message to the client, the cause to the log.
  req.log.error({ err }, 'internal error');
  return new S3Error('InternalError', undefined, { cause: err });
}

const KEPT_ON_ERROR = new Set(['x-amz-request-id', 'x-amz-id-2', 'server', 'connection']);

/**
 * Sends an S3 error document (Code, Message, Resource, RequestId). HEAD has no
 * body, so the code also travels in x-amz-error-code / x-amz-error-message.
 */
export function sendError(reply: FastifyReply, err: S3Error, resource: string, requestId: string): FastifyReply {
  // Headers an operation set for the object it meant to send (length,
  // encoding, ETag...) do not describe an error document.
  for (const name of Object.keys(reply.getHeaders())) if (!KEPT_ON_ERROR.has(name)) reply.removeHeader(name);
  reply.code(err.status);
  for (const [k, v] of Object.entries(err.headers)) reply.header(k, v);
  reply.header('x-amz-error-code', err.code);
  reply.header('x-amz-error-message', err.message.replace(/[^\x20-\x7e]/g, '?'));
  if (err.status === 304 || reply.request.method === 'HEAD') return reply.send();
  reply.header('content-type', 'application/xml');
  return reply.send(
    xmlDocument('Error', { Code: err.code, Message: err.message, ...err.fields, Resource: resource, RequestId: requestId }, false),
  );
}
