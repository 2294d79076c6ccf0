import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { Crc32c } from '@aws-crypto/crc32c';
import { Crc64Nvme } from '@aws-sdk/crc64-nvme';
import type { Digest } from '../engine/spool.js';

// Additional checksums of the S3 API (x-amz-checksum-ALGORITHM), as base64 of
// the big-endian digest: "Checking object integrity" in the S3 user guide.

export const CHECKSUM_ALGORITHMS = ['crc32', 'crc32c', 'crc64nvme', 'sha1', 'sha256'] as const;
export type ChecksumAlgorithm = (typeof CHECKSUM_ALGORITHMS)[number];

export function isChecksumAlgorithm(s: string): s is ChecksumAlgorithm {
  return (CHECKSUM_ALGORITHMS as readonly string[]).includes(s);
}

function u32(n: number): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b.toString('base64');
}

export function newChecksum(alg: ChecksumAlgorithm): Digest {
  switch (alg) {
    case 'crc32': {
      let v = 0;
      return { update: (c) => void (v = crc32(c, v)), digest: () => u32(v) };
    }
    case 'crc32c': {
      const h = new Crc32c();
      return { update: (c) => void h.update(c), digest: () => u32(h.digest()) };
    }
    case 'crc64nvme': {
      const h = new Crc64Nvme();
      return { update: (c) => h.update(c), digest: async () => Buffer.from(await h.digest()).toString('base64') };
    }
    case 'sha1':
    case 'sha256': {
      const h = createHash(alg);
      return { update: (c) => void h.update(c), digest: () => h.digest('base64') };
    }
  }
}
