import type { Ctx } from '../context.js';
import { checkVersionId } from '../object-headers.js';

/** DeleteObject: DELETE /bucket/key; 204 whether or not the key existed. */
export async function deleteObject(ctx: Ctx): Promise<void> {
  checkVersionId(ctx);
  await ctx.engine.deleteObject(ctx.bucket, ctx.key!);
  ctx.reply.code(204).send();
}
