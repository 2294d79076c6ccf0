import type { Engine, ObjectAttributes } from './engine.js';
import type { ObjectMeta } from './meta.js';

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
export async function copyObject(engine: Engine, input: CopyInput): Promise<{ source: ObjectMeta; result: ObjectMeta }> {
  const source = await engine.headObject(input.srcBucket, input.srcKey);
  input.precondition?.(source);
  await engine.headBucket(input.dstBucket);
  const stream = await engine.openObject(input.srcBucket, source);
  const body = await engine.spool(stream);
  try {
    const attrs = input.replace ?? {
      contentType: source.content_type,
      headers: source.headers,
      userMetadata: source.user_metadata,
    };
    const result = await engine.putObject({
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
