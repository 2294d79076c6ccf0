import { PassThrough, type Readable } from 'node:stream';
import type { FastifyReply } from 'fastify';
import { S3Error } from '../errors.js';
import type { Ctx } from './context.js';

// Every wait on a client has a timeout (S3 has the same two):
// - a request body that sends nothing for body_idle_timeout_secs ends with
//   400 RequestTimeout ("Your socket connection to the server was not read
//   from or written to within the timeout period.") and a closed connection;
// - a response the client does not read for send_idle_timeout_secs is cut
//   off. Destroying the response destroys the request's streams, which
//   kills its xdelta3 process and removes its temp files.
// Only the client's idleness counts: time the proxy spends not reading (a
// slow disk, an encoder behind) or not writing (a queued decode) does not.

/**
 * The request body through an idle guard. On timeout the guard errors with
 * RequestTimeout while the socket stays open for the error response; the
 * response then closes the connection (`Connection: close`), since the
 * rest of the body will never be read.
 */
export function guardedBody(ctx: Ctx): Readable {
  const src = ctx.req.raw;
  const ms = ctx.config.bodyIdleTimeoutSecs * 1000;
  const guard = new PassThrough({ highWaterMark: 1 << 16 });
  const timer = setTimeout(function fire() {
    // Backpressure from our side: the client is not the one waiting.
    if (guard.writableNeedDrain) return timer.refresh();
    src.unpipe(guard);
    src.pause();
    ctx.reply.header('connection', 'close');
    guard.destroy(new S3Error('RequestTimeout'));
  }, ms);
  timer.unref();
  const onData = () => timer.refresh();
  src.on('data', onData);
  src.on('error', (err) => guard.destroy(err));
  const stop = () => {
    clearTimeout(timer);
    src.off('data', onData);
  };
  src.once('end', stop);
  guard.once('close', stop);
  src.pipe(guard);
  return guard;
}

/** Cuts off a response whose client has not accepted a byte for `ms`. */
export function watchSend(reply: FastifyReply, ms: number): void {
  const res = reply.raw;
  let stalledSince = 0;
  const timer = setInterval(
    () => {
      if (!res.writableNeedDrain) {
        stalledSince = 0;
        return;
      }
      const now = Date.now();
      if (stalledSince === 0) stalledSince = now;
      else if (now - stalledSince >= ms) {
        clearInterval(timer);
        reply.log.info({ idleMs: now - stalledSince }, 'response not read: connection closed');
        res.destroy();
      }
    },
    Math.max(100, Math.min(5000, ms / 5)),
  );
  timer.unref();
  res.once('close', () => clearInterval(timer));
}
