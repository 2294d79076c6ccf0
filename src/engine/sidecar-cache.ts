import { LRUCache } from 'lru-cache';
import type { Backend } from '../storage/backend.js';
import { parseObjectMeta, type ObjectMeta } from './meta.js';

// Parsed sidecars by (bucket, blob, etag). A listing returns each sidecar's
// etag with its name, so a page whose sidecars are cached costs no request
// beyond the listing itself; a changed sidecar has a new etag and misses.

export class SidecarCache {
  private readonly lru = new LRUCache<string, ObjectMeta>({ max: 20_000 });

  constructor(private readonly backend: Backend) {}

  /** The format 2 sidecar `name` at version `etag`, or null if it is gone. */
  async read(bucket: string, name: string, etag: string): Promise<ObjectMeta | null> {
    const id = `${bucket}\0${name}\0${etag}`;
    const hit = this.lru.get(id);
    if (hit) return hit;
    const blob = await this.backend.readSmall(bucket, name);
    if (!blob) return null;
    // Format 2 sidecars only (format 1 ones go through the engine); an
    // unreadable one throws, for the caller to decide.
    const meta = parseObjectMeta(blob.body);
    this.lru.set(`${bucket}\0${name}\0${blob.etag}`, meta);
    return meta;
  }
}
