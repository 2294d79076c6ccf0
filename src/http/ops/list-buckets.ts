import { S3Error } from '../../errors.js';
import type { Ctx } from '../context.js';
import { isoDate, xmlDocument } from '../xml.js';

export const OWNER = { ID: 'deltaglider', DisplayName: 'deltaglider' };

const MAX_BUCKETS = 10000;

// The continuation token is opaque to clients: the last bucket name returned.
const encodeToken = (last: string) => Buffer.from(`b:${last}`).toString('base64url');

function decodeToken(token: string): string {
  const s = Buffer.from(token, 'base64url').toString('utf8');
  if (!s.startsWith('b:') || Buffer.from(s).toString('base64url') !== token) {
    throw new S3Error('InvalidArgument', 'The continuation token provided is incorrect', { fields: { ArgumentName: 'continuation-token' } });
  }
  return s.slice(2);
}

/**
 * ListBuckets: GET / with the optional pagination of the ListBuckets
 * reference: max-buckets (1 to 10000), continuation-token (opaque; empty is
 * none, its minimum length being 0), prefix and bucket-region. A plain
 * ListBuckets lists every bucket, as before pagination existed.
 */
export async function listBuckets(ctx: Ctx): Promise<void> {
  const q = ctx.query;
  const rawMax = q.get('max-buckets');
  if (rawMax !== null && (!/^\d{1,5}$/.test(rawMax) || Number(rawMax) < 1 || Number(rawMax) > MAX_BUCKETS)) {
    throw new S3Error('InvalidArgument', `max-buckets must be an integer from 1 to ${MAX_BUCKETS}`, { fields: { ArgumentName: 'max-buckets', ArgumentValue: rawMax } });
  }
  const token = q.get('continuation-token') ?? '';
  const after = token === '' ? undefined : decodeToken(token);
  const prefix = q.get('prefix') ?? '';
  const region = q.get('bucket-region');
  const grant = ctx.principal.buckets;
  const regionOf = (b: { location?: string }) => b.location || ctx.config.region;
  const all = (await ctx.engine.listBuckets()).filter(
    (b) => (!grant || grant.includes(b.name)) && b.name.startsWith(prefix) && (after === undefined || b.name > after) && (region === null || regionOf(b) === region),
  );
  // With bucket-region, prefix or continuation-token but no max-buckets, S3
  // pages at 10000 (ListBuckets reference, continuation-token).
  const paged = rawMax !== null || q.has('prefix') || q.has('continuation-token') || region !== null;
  const max = rawMax !== null ? Number(rawMax) : paged ? MAX_BUCKETS : all.length;
  const page = all.slice(0, max);
  const more = page.length < all.length;
  ctx.reply.header('content-type', 'application/xml');
  ctx.reply.send(
    xmlDocument('ListAllMyBucketsResult', {
      Owner: OWNER,
      Buckets: { Bucket: page.map((b) => ({ Name: b.name, CreationDate: isoDate(b.created), BucketRegion: regionOf(b) })) },
      ContinuationToken: more ? encodeToken(page[page.length - 1].name) : undefined,
      Prefix: q.has('prefix') ? prefix : undefined,
    }),
  );
}
