// Gzip recompression: store a .tgz/.gz as its decompressed bytes plus a recipe that
// rebuilds the original byte for byte (issue 13; docs/storage-format.md, "gzip").
export { analyzeGzip, type AnalyzeOptions, type AnalyzeResult } from './analyze.js';
export { rebuildGzip } from './rebuild.js';
export { gzipSelfTest } from './selftest.js';
export { recipeProblem, type DeflateParams, type GzipRecipe, type GzipMemberRecipe } from './recipe.js';

const GZIP_NAME = /\.(t?gz|tar\.gz|svgz|gzip)$/i;

/**
 * Worth analysing as gzip? The magic bytes decide (RFC 1952 §2.3.1: ID1 ID2 CM=8);
 * the name only when no bytes were seen yet.
 */
export function isGzipCandidate(key: string, firstBytes: Buffer): boolean {
  if (firstBytes.length >= 3) return firstBytes[0] === 0x1f && firstBytes[1] === 0x8b && firstBytes[2] === 8;
  return firstBytes.length === 0 && GZIP_NAME.test(key);
}
