import { S3Error } from '../errors.js';
import { header, type Ctx, type Handler } from './context.js';

// Dispatch on method + level (service, bucket, object) + query markers
// (`?uploads`, `?delete`, `?list-type=2`...), built once at start-up.

export type Level = 'service' | 'bucket' | 'object';

export interface RouteSpec {
  method: string;
  level: Level;
  /** Query parameter that selects this operation. */
  marker?: string;
  /** Marker value, when the parameter's presence is not enough (list-type=2). */
  markerValue?: string;
  /** Header that selects this operation (x-amz-copy-source). */
  headerMarker?: string;
  name: string;
  handler: Handler;
}

// Sub-resources of the S3 API that select an operation. A request naming one
// that no route handles gets NotImplemented instead of falling through to the
// plain operation (a PUT ?acl must not overwrite the object).
const SUBRESOURCES = new Set([
  'accelerate', 'acl', 'analytics', 'attributes', 'cors', 'delete', 'encryption', 'intelligent-tiering',
  'inventory', 'legal-hold', 'lifecycle', 'location', 'logging', 'metadata-table', 'metrics', 'notification',
  'object-lock', 'ownershipControls', 'policy', 'policyStatus', 'publicAccessBlock', 'replication',
  'requestPayment', 'restore', 'retention', 'select', 'session', 'tagging', 'torrent', 'uploadId', 'uploads',
  'versioning', 'versions', 'website', 'renameObject', 'partNumber',
]);

export class Router {
  private readonly table = new Map<string, RouteSpec[]>();

  constructor(specs: RouteSpec[]) {
    for (const s of specs) {
      const k = `${s.method} ${s.level}`;
      const list = this.table.get(k) ?? [];
      list.push(s);
      this.table.set(k, list);
    }
    // Most specific first: marker with value, marker with header, marker,
    // header, plain.
    const rank = (s: RouteSpec) => (s.markerValue ? 0 : s.marker && s.headerMarker ? 1 : s.marker ? 2 : s.headerMarker ? 3 : 4);
    for (const list of this.table.values()) list.sort((a, b) => rank(a) - rank(b));
  }

  resolve(ctx: Ctx, level: Level): RouteSpec {
    const method = ctx.req.method;
    const specs = this.table.get(`${method} ${level}`) ?? [];
    for (const s of specs) {
      if (s.marker) {
        if (!ctx.query.has(s.marker)) continue;
        if (s.markerValue !== undefined && ctx.query.get(s.marker) !== s.markerValue) continue;
        if (s.headerMarker && header(ctx, s.headerMarker) === undefined) continue;
        return s;
      }
      const named = [...ctx.query.keys()].find((k) => SUBRESOURCES.has(k));
      if (named) throw notImplemented(`${method} ?${named}`);
      if (s.headerMarker && header(ctx, s.headerMarker) === undefined) continue;
      return s;
    }
    const named = [...ctx.query.keys()].find((k) => SUBRESOURCES.has(k));
    if (named) throw notImplemented(`${method} ?${named}`);
    if (['GET', 'PUT', 'POST', 'DELETE', 'HEAD'].includes(method)) throw notImplemented(`${method} on a ${level}`);
    throw new S3Error('MethodNotAllowed', undefined, { fields: { Method: method, ResourceType: level.toUpperCase() } });
  }
}

function notImplemented(what: string): S3Error {
  return new S3Error('NotImplemented', `${what} is not implemented by DeltaGlider Proxy (see docs/s3-compatibility.md).`);
}
