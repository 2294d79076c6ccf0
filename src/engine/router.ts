// Which keys go through the delta path. Archives and dumps of successive
// versions share most of their bytes; media and already-unique files do not,
// so they are stored as they are.

export const DEFAULT_DELTA_EXTENSIONS = [
  '.zip', '.tar', '.tgz', '.tar.gz', '.tar.bz2', '.tar.xz', '.tar.zst', '.jar', '.war', '.ear',
  '.rar', '.7z', '.dmg', '.iso', '.img', '.deb', '.rpm', '.apk', '.whl', '.nupkg',
  '.sql', '.dump', '.bak', '.backup', '.bin', '.vmdk', '.qcow2',
];

export class FileRouter {
  private readonly exts: string[];

  constructor(extensions: string[]) {
    this.exts = extensions.map((e) => e.toLowerCase());
  }

  isDeltaEligible(key: string): boolean {
    const name = key.slice(key.lastIndexOf('/') + 1).toLowerCase();
    return this.exts.some((e) => name.endsWith(e) && name.length > e.length);
  }
}
