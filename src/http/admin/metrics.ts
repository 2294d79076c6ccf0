import { timingSafeEqual } from 'node:crypto';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../../config/config.js';
import type { Engine } from '../../engine/engine.js';
import type { RequestFacts } from '../request-log.js';

// Prometheus metrics (/_/metrics, text exposition format). One registry per
// app, so that several apps in one process (tests) do not share figures.
// docs/operations.md lists every metric.

/**
 * HOOK for the codec pool's read-only statistics (`codec.stats`, from the
 * resource-limits work). Until a codec has it, the codec figures read 0.
 */
export interface CodecPoolStats {
  running: number;
  queued: number;
  memoryBytes?: number;
  runs: number;
  totalMs: number;
  refused?: number;
  stoppedEarly?: number;
}

export function codecPoolStats(engine: Engine): CodecPoolStats | null {
  const s = (engine.codec as unknown as { stats?: Partial<CodecPoolStats> }).stats;
  if (!s || typeof s.running !== 'number' || typeof s.queued !== 'number') return null;
  return { running: s.running, queued: s.queued, memoryBytes: s.memoryBytes, runs: s.runs ?? 0, totalMs: s.totalMs ?? 0, refused: s.refused, stoppedEarly: s.stoppedEarly };
}

/** A counter whose value is read from elsewhere at scrape time. */
function mirroredCounter(registry: Registry, name: string, help: string, read: () => number | undefined): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const v = read();
      this.reset();
      if (v !== undefined && v > 0) this.inc(v);
    },
  });
}

export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'operation' | 'status'>;
  private readonly duration: Histogram<'operation'>;
  private readonly bytesIn: Counter<'operation'>;
  private readonly bytesOut: Counter<'operation'>;
  /** Requests served since start, for the console's live rate. */
  requestsTotal = 0;

  constructor(engine: Engine) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({ name: 'deltaglider_requests_total', help: 'S3 requests by operation and HTTP status', labelNames: ['operation', 'status'], registers });
    this.duration = new Histogram({
      name: 'deltaglider_request_duration_seconds',
      help: 'S3 request latency by operation, from the request headers to the last response byte',
      labelNames: ['operation'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.bytesIn = new Counter({ name: 'deltaglider_received_bytes_total', help: 'Bytes received from clients (request bodies) by operation', labelNames: ['operation'], registers });
    this.bytesOut = new Counter({ name: 'deltaglider_sent_bytes_total', help: 'Bytes sent to clients (responses, headers included) by operation', labelNames: ['operation'], registers });

    const codec = () => codecPoolStats(engine);
    mirroredCounter(this.registry, 'deltaglider_codec_runs_total', 'xdelta3 runs (encodes and decodes) finished', () => codec()?.runs);
    mirroredCounter(this.registry, 'deltaglider_codec_seconds_total', 'Wall time of finished xdelta3 runs, seconds', () => (codec() ? codec()!.totalMs / 1000 : undefined));
    mirroredCounter(this.registry, 'deltaglider_codec_encodes_stopped_total', 'Delta encodes stopped once the delta reached max_delta_ratio of the object, which is then stored direct', () => codec()?.stoppedEarly);
    mirroredCounter(this.registry, 'deltaglider_codec_refused_total', 'Codec jobs refused because the queue was full (503 SlowDown)', () => codec()?.refused);
    const gauge = (name: string, help: string, read: () => number | undefined) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const v = read();
          if (v !== undefined) this.set(v);
        },
      });
    gauge('deltaglider_codec_running', 'xdelta3 processes running', () => codec()?.running);
    gauge('deltaglider_codec_queue_length', 'Codec jobs waiting for a slot', () => codec()?.queued);
    gauge('deltaglider_codec_memory_bytes', 'Memory charged to running xdelta3 processes (source windows)', () => codec()?.memoryBytes);
    gauge('deltaglider_compaction_backlog', 'Objects stored direct that wait for background compaction (compaction = "background")', () => engine.compactor.stats.backlog);
    mirroredCounter(this.registry, 'deltaglider_compactions_total', 'Objects compacted to a delta in the background', () => engine.compactor.stats.compacted);
    mirroredCounter(this.registry, 'deltaglider_compaction_failures_total', 'Background compactions that failed (retried at the next scan)', () => engine.compactor.stats.failed);
    mirroredCounter(this.registry, 'deltaglider_reference_cache_hits_total', 'Reference uses served from the local cache', () => engine.referenceCacheStats.hits);
    mirroredCounter(this.registry, 'deltaglider_reference_cache_misses_total', 'Reference uses that fetched the reference', () => engine.referenceCacheStats.misses);

    const perBucket = (name: string, help: string, field: 'logical' | 'stored' | 'objects') =>
      new Gauge({
        name,
        help,
        labelNames: ['bucket'],
        registers,
        collect() {
          this.reset();
          for (const [bucket, u] of engine.usageFigures()) this.set({ bucket }, u[field]);
        },
      });
    perBucket('deltaglider_logical_bytes', 'Bytes of the objects as uploaded, per bucket', 'logical');
    perBucket('deltaglider_stored_bytes', 'Bytes the bucket uses in the backend: data, deltas, references, sidecars (replaced blobs awaiting removal aside)', 'stored');
    perBucket('deltaglider_objects', 'Objects per bucket', 'objects');
  }

  observe(f: RequestFacts): void {
    this.requestsTotal++;
    this.requests.inc({ operation: f.operation, status: String(f.status) });
    this.duration.observe({ operation: f.operation }, f.ms / 1000);
    if (f.bytesIn > 0) this.bytesIn.inc({ operation: f.operation }, f.bytesIn);
    if (f.bytesOut > 0) this.bytesOut.inc({ operation: f.operation }, f.bytesOut);
  }
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Access to /_/metrics and /_/ready: they name buckets and backend errors,
 * which are not for anonymous eyes. A bearer token (metrics.token) unless
 * metrics.public; returns the refusal sent, or null when allowed.
 */
export function refuseMetrics(req: FastifyRequest, reply: FastifyReply, config: Config): FastifyReply | null {
  if (config.metricsPublic) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  if (config.metricsToken && m && sameSecret(m[1], config.metricsToken)) return null;
  reply.header('www-authenticate', 'Bearer realm="deltaglider-proxy"').header('cache-control', 'no-store');
  return reply
    .code(401)
    .type('text/plain')
    .send(config.metricsToken ? 'this endpoint needs Authorization: Bearer <metrics.token>\n' : 'this endpoint is closed: set metrics.token or metrics.public (docs/operations.md)\n');
}

/** GET /_/metrics (Prometheus text format). */
export async function serveMetrics(req: FastifyRequest, reply: FastifyReply, metrics: Metrics, config: Config): Promise<FastifyReply> {
  const refused = refuseMetrics(req, reply, config);
  if (refused) return refused;
  return reply.header('cache-control', 'no-store').type(metrics.registry.contentType).send(await metrics.registry.metrics());
}
