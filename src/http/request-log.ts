import { Writable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config/config.js';
import { logSafeUrl } from './auth/redact.js';

// The one line logged per request, and the logger's output format.
//
// The line says what an operator needs to know why a request failed or what
// it cost: the S3 operation, the status and S3 error code (with the error
// message as the reason for 4xx), the access key id, bytes in and out, and
// for writes how the object was stored. It never holds the Authorization
// header or a query string's authentication parameters: presigned URLs carry
// signatures and credentials there (./auth/redact.ts drops them).

interface Note {
  operation?: string;
  accessKeyId?: string;
  /** How the request was authenticated (sigv4, sigv4-presigned, sigv2, anonymous...). */
  auth?: string;
  readAtStart: number;
  writtenAtStart: number;
}

const notes = new WeakMap<FastifyRequest, Note>();

/** onRequest: remembers the connection's byte counters. */
export function startRequest(req: FastifyRequest): void {
  const s = req.raw.socket;
  notes.set(req, { readAtStart: s?.bytesRead ?? 0, writtenAtStart: s?.bytesWritten ?? 0 });
}

/** What the S3 handler learnt: the operation and who signed. */
export function noteRequest(req: FastifyRequest, n: { operation?: string; accessKeyId?: string; auth?: string }): void {
  const note = notes.get(req);
  if (!note) return;
  if (n.operation) note.operation = n.operation;
  if (n.accessKeyId) note.accessKeyId = n.accessKeyId;
  if (n.auth) note.auth = n.auth;
}

export interface RequestFacts {
  operation: string;
  status: number;
  errorCode?: string;
  reason?: string;
  accessKeyId?: string;
  auth?: string;
  bytesIn: number;
  bytesOut: number;
  storedAs?: string;
  storedSize?: number;
  ms: number;
}

/** Everything known about a finished request (onResponse). */
export function requestFacts(req: FastifyRequest, reply: FastifyReply): RequestFacts {
  const note = notes.get(req);
  const s = req.raw.socket;
  const header = (n: string) => {
    const v = reply.getHeader(n);
    return v === undefined ? undefined : String(v);
  };
  const facts: RequestFacts = {
    operation: note?.operation ?? 'Unknown',
    status: reply.statusCode,
    accessKeyId: note?.accessKeyId,
    auth: note?.auth,
    // A body read to its end counts as announced (a small body arrives with
    // the headers, before onRequest); otherwise what the connection read
    // since the headers (one request at a time uses it).
    bytesIn: req.raw.complete && req.raw.headers['content-length'] ? Number(req.raw.headers['content-length']) || 0 : Math.max(0, (s?.bytesRead ?? 0) - (note?.readAtStart ?? 0)),
    bytesOut: Math.max(0, (s?.bytesWritten ?? 0) - (note?.writtenAtStart ?? 0)),
    ms: Math.round(reply.elapsedTime),
  };
  const code = header('x-amz-error-code');
  if (code) facts.errorCode = code;
  if (code && reply.statusCode >= 400 && reply.statusCode < 500) facts.reason = header('x-amz-error-message');
  const storedAs = header('x-deltaglider-stored-as');
  if (storedAs && req.method !== 'GET' && req.method !== 'HEAD') {
    facts.storedAs = storedAs;
    facts.storedSize = Number(header('x-deltaglider-stored-size'));
  }
  return facts;
}

/** The request line (onResponse, and the HEAD fast path: ./fast-head.ts). */
export function logRequest(req: Pick<FastifyRequest, 'method' | 'url' | 'log'>, f: RequestFacts, reqId?: string, safeUrl = logSafeUrl(req.url)): void {
  // One shape for every line (pino leaves out undefined fields): building
  // it from conditional spreads cost a HEAD 5 % of its CPU in V8's slow
  // paths for objects of changing shape.
  const fields = {
    // A request's own logger (fastify's child) carries reqId already.
    reqId,
    method: req.method,
    url: safeUrl,
    op: f.operation,
    status: f.status,
    code: f.errorCode || undefined,
    reason: f.reason || undefined,
    accessKeyId: f.accessKeyId || undefined,
    auth: f.auth || undefined,
    in: f.bytesIn,
    out: f.bytesOut,
    storedAs: f.storedAs || undefined,
    storedSize: f.storedAs ? f.storedSize : undefined,
    ms: f.ms,
  };
  req.log.info(fields, 'request');
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const HIDDEN = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'reqId', 'method', 'url', 'status', 'op', 'ms']);

/** One readable line from one of pino's JSON lines. */
export function prettyLine(json: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const time = new Date(typeof o.time === 'number' ? o.time : Date.now()).toISOString().slice(11, 23);
  const level = (LEVELS[o.level as number] ?? String(o.level)).padEnd(5);
  const head = o.msg === 'request' ? `${o.method} ${o.url} ${o.status} ${o.op} ${o.ms}ms` : String(o.msg ?? '');
  const rest = Object.entries(o)
    .filter(([k]) => !HIDDEN.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`);
  if (o.reqId) rest.push(`req=${o.reqId}`);
  return `${time} ${level} ${head}${rest.length ? ' ' + rest.join(' ') : ''}\n`;
}

/** A destination that turns pino's JSON lines into readable ones. */
export function prettyStream(out: NodeJS.WritableStream = process.stdout): Writable {
  let partial = '';
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) if (l) out.write(prettyLine(l));
      cb();
    },
  });
}

/** Fastify's logger options for the configuration (log_level, log_format). */
export function loggerOptions(config: Config, stdout: NodeJS.WriteStream = process.stdout): Record<string, unknown> {
  const pretty = config.logFormat === 'pretty' || (config.logFormat === 'auto' && stdout.isTTY === true);
  return {
    level: config.logLevel,
    redact: ['req.headers.authorization', 'req.headers["x-amz-security-token"]', 'req.url'],
    ...(pretty ? { stream: prettyStream(stdout) } : {}),
  };
}
