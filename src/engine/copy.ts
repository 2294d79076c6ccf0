import type { ObjectMeta } from './meta.js';
import type { ObjectAttributes, ObjectStore } from './types.js';

export interface CopyInput {
  srcBucket: string;
  srcKey: string;
  dstBucket: string;
  dstKey: string;
  /** New attributes (metadata directive REPLACE); the source's when absent. */
  replace?: Omit<ObjectAttributes, 'checksums'>;
  /** Checks the source (x-amz-copy-source-if-*); throw to refuse. */
  precondition?: (source: ObjectMeta) => void;
}

/**
 * Copies through the engine: the source is read back verified and stored again
 * under the destination key, so the copy is a delta in its own deltaspace when
 * that pays, whatever the source was.
 */
export async function copyObject(store: ObjectStore, input: CopyInput): Promise<{ source: ObjectMeta; result: ObjectMeta }> {
  const source = await store.headObject(input.srcBucket, input.srcKey);
  input.precondition?.(source);
  await store.headBucket(input.dstBucket);
  const stream = await store.openObject(input.srcBucket, source);
  const body = await store.spool(stream);
  try {
    const attrs = input.replace ?? {
      contentType: source.content_type,
      headers: source.headers,
      userMetadata: source.user_metadata,
    };
    const result = await store.putObject({
      bucket: input.dstBucket,
      key: input.dstKey,
      body,
      ...attrs,
      // Same bytes, so the client-supplied checksums still hold.
      checksums: source.checksums,
    });
    return { source, result };
  } finally {
    await body.dispose();
  }
}
