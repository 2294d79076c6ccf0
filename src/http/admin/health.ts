import type { FastifyReply } from 'fastify';
import type { Config } from '../../config/config.js';
import { Codec } from '../../engine/codec.js';
import type { Engine } from '../../engine/engine.js';

// /_/health: the process answers (open, for liveness probes).
// /_/ready: the backend answers a listing and xdelta3 runs, so requests can
// succeed (readiness probes, load balancers). Checks are cached for a
// second so that a probe storm costs one backend request and one process.

const CHECK_TIMEOUT_MS = 5000;
const CACHE_MS = 1000;

interface Readiness {
  ready: boolean;
  backend: string;
  xdelta3: string;
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export class HealthChecks {
  private last?: { at: number; result: Promise<Readiness> };

  constructor(
    private readonly engine: Engine,
    private readonly config: Config,
  ) {}

  readiness(): Promise<Readiness> {
    if (this.last && Date.now() - this.last.at < CACHE_MS) return this.last.result;
    const result = this.check();
    this.last = { at: Date.now(), result };
    return result;
  }

  private async check(): Promise<Readiness> {
    const [backend, xdelta3] = await Promise.all([
      withTimeout(this.engine.backend.listBuckets(), 'backend').then(
        () => 'ok',
        (err: Error) => `unavailable: ${err.message}`,
      ),
      withTimeout(Codec.probe(this.config.xdelta3Path), 'xdelta3').then(
        () => 'ok',
        (err: Error) => `unavailable: ${err.message}`,
      ),
    ]);
    return { ready: backend === 'ok' && xdelta3 === 'ok', backend, xdelta3 };
  }

  health(reply: FastifyReply): FastifyReply {
    return reply.header('cache-control', 'no-store').send({ status: 'ok' });
  }

  async ready(reply: FastifyReply): Promise<FastifyReply> {
    const r = await this.readiness();
    return reply
      .code(r.ready ? 200 : 503)
      .header('cache-control', 'no-store')
      .send({ status: r.ready ? 'ready' : 'not ready', backend: r.backend, xdelta3: r.xdelta3 });
  }
}
