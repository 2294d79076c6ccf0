// What it takes to turn decompressed bytes back into the exact gzip file they came
// from: per member, the header and trailer bytes as found, and the deflate parameters
// that make the pinned deflate implementation emit that member's compressed stream
// byte for byte. docs/storage-format.md ("gzip") describes the same steps for tools.
import { createRequire } from 'node:module';
import { Deflate, type Z_Strategy } from 'pako';

/** The deflate implementation every recipe is rebuilt with (pinned exactly in package.json). */
export const GZIP_IMPL_NAME = 'pako';
export const GZIP_IMPL_VERSION = '3.0.3';
export const GZIP_RECIPE_FORMAT = 'gzip/1';

/** zlib strategies (RFC 1950 implementations share these numbers). */
export const Z_DEFAULT_STRATEGY = 0;
export const Z_FILTERED = 1;
export const Z_HUFFMAN_ONLY = 2;
export const Z_RLE = 3;
export const Z_FIXED = 4;

/**
 * deflateInit2() arguments. `legacyHash` picks the hash that finds match candidates:
 * true is canonical zlib's (Python, Java, pre-2020 Node), false the one in the zlib
 * fork Node has bundled since (Chromium's); the two emit different streams.
 */
export interface DeflateParams {
  level: number;
  memLevel: number;
  strategy: number;
  windowBits: number;
  legacyHash: boolean;
}

export interface GzipMemberRecipe {
  /** The member's header (RFC 1952 §2.3: ID1..OS plus FEXTRA/FNAME/FCOMMENT/FHCRC), base64. */
  header: string;
  /** Decompressed bytes this member holds. */
  rawSize: number;
  /** Length of the member's deflate stream (between header and trailer). */
  deflateSize: number;
  params: DeflateParams;
  /** CRC32 and ISIZE as found (8 bytes), hex. */
  trailer: string;
}

/** JSON-serialisable; everything needed besides the decompressed bytes. */
export interface GzipRecipe {
  format: typeof GZIP_RECIPE_FORMAT;
  impl: { name: string; version: string };
  members: GzipMemberRecipe[];
  /** Bytes after the last member (zero padding some writers leave), base64. */
  tail: string;
  /** Size and SHA-256 (hex) of the gzip file the recipe rebuilds. */
  size: number;
  sha256: string;
}

/** The version of pako actually installed, to catch a drifted lockfile at start-up. */
export function installedImplVersion(): string {
  const require = createRequire(import.meta.url);
  return (require('pako/package.json') as { version: string }).version;
}

/** Rejects recipes this build cannot rebuild; returns why, or null when it can. */
export function recipeProblem(recipe: GzipRecipe): string | null {
  if (recipe?.format !== GZIP_RECIPE_FORMAT) return `unknown gzip recipe format ${String(recipe?.format)}`;
  if (recipe.impl?.name !== GZIP_IMPL_NAME) return `unknown deflate implementation ${String(recipe.impl?.name)}`;
  if (!Array.isArray(recipe.members) || recipe.members.length === 0) return 'gzip recipe has no members';
  for (const m of recipe.members) {
    const p = m.params;
    const ok =
      Number.isSafeInteger(m.rawSize) && m.rawSize >= 0 &&
      Number.isSafeInteger(m.deflateSize) && m.deflateSize > 0 &&
      p && Number.isInteger(p.level) && p.level >= 1 && p.level <= 9 &&
      Number.isInteger(p.memLevel) && p.memLevel >= 1 && p.memLevel <= 9 &&
      Number.isInteger(p.strategy) && p.strategy >= 0 && p.strategy <= 4 &&
      Number.isInteger(p.windowBits) && p.windowBits >= 9 && p.windowBits <= 15 &&
      typeof p.legacyHash === 'boolean' && /^[0-9a-f]{16}$/.test(m.trailer) && typeof m.header === 'string';
    if (!ok) return 'malformed gzip recipe member';
  }
  return null;
}

/**
 * The parameter sets to try, likeliest first. Measured on npm tarballs: current npm
 * (Node's zlib) writes level 9, memLevel 8, Node's hash; Python's gzip module writes
 * level 9 with zlib's hash; older npm level 6 (XFL 0) with zlib's hash. XFL (RFC 1952
 * §2.3.1: 2 = slowest, 4 = fastest) is only a hint: it orders, it never excludes.
 */
export function candidateParams(xfl: number, previous?: DeflateParams): DeflateParams[] {
  const out: DeflateParams[] = [];
  const seen = new Set<string>();
  const add = (level: number, memLevel: number, strategy = Z_DEFAULT_STRATEGY, windowBits = 15) => {
    for (const legacyHash of [false, true]) {
      // Huffman-only and RLE never hash, so the hash choice cannot change their output.
      if (legacyHash && (strategy === Z_HUFFMAN_ONLY || strategy === Z_RLE)) continue;
      const p = { level, memLevel, strategy, windowBits, legacyHash };
      const k = JSON.stringify(p);
      if (!seen.has(k)) { seen.add(k); out.push(p); }
    }
  };
  if (previous) {
    out.push(previous);
    seen.add(JSON.stringify(previous));
  }
  const hinted = xfl === 2 ? [9] : xfl === 4 ? [1] : [6];
  const levels = [...hinted, ...[9, 6, 1, 5, 4, 3, 2, 7, 8].filter((l) => !hinted.includes(l))];
  for (const l of levels) add(l, 8);
  for (const l of levels) add(l, 9);
  for (const m of [7, 6, 5, 4, 3, 2, 1]) for (const l of levels) add(l, m);
  for (const w of [14, 13, 12, 11, 10, 9]) for (const m of [8, 9]) for (const l of levels) add(l, m, Z_DEFAULT_STRATEGY, w);
  for (const m of [8, 9]) {
    // Z_FILTERED only changes the lazy matcher (levels 4-9).
    for (const l of levels.filter((x) => x >= 4)) add(l, m, Z_FILTERED);
    for (const l of levels) add(l, m, Z_FIXED);
    add(1, m, Z_HUFFMAN_ONLY);
    add(1, m, Z_RLE);
  }
  return out;
}

/** pako's options for a raw-deflate (no zlib/gzip wrapper) stream with these parameters (also sent to ./deflate-worker.ts). */
export function rawDeflateOptions(p: DeflateParams, chunkSize: number) {
  return { level: p.level, memLevel: p.memLevel, strategy: p.strategy as Z_Strategy, windowBits: p.windowBits, legacyHash: p.legacyHash, raw: true, chunkSize };
}

/** A raw-deflate pako stream with these parameters. */
export function newRawDeflate(p: DeflateParams, chunkSize: number): Deflate {
  return new Deflate(rawDeflateOptions(p, chunkSize));
}
