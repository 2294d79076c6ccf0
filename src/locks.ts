// In-process keyed readers-writer locks. They order the blob writes of one
// proxy instance (a key's data and sidecar; a deltaspace's reference and the
// deltas that need it), and the filesystem backend's commits to one path.
// Instances sharing a backend rely on the backend's conditional writes
// instead (docs/operations.md).

type Waiter = { write: boolean; resolve: () => void };

class RwState {
  readers = 0;
  writer = false;
  queue: Waiter[] = [];
}

export type Release = () => void;

export class KeyedRwLock {
  private readonly states = new Map<string, RwState>();

  read(key: string): Promise<Release> {
    return this.acquire(key, false);
  }

  write(key: string): Promise<Release> {
    return this.acquire(key, true);
  }

  private acquire(key: string, write: boolean): Promise<Release> {
    let st = this.states.get(key);
    if (!st) {
      st = new RwState();
      this.states.set(key, st);
    }
    const s = st;
    return new Promise<Release>((resolve) => {
      const grant = () => {
        if (write) s.writer = true;
        else s.readers++;
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          if (write) s.writer = false;
          else s.readers--;
          this.drain(key, s);
        });
      };
      // FIFO: a waiting writer blocks later readers, so writers never starve.
      if (s.queue.length === 0 && !s.writer && (!write || s.readers === 0)) grant();
      else s.queue.push({ write, resolve: grant });
    });
  }

  private drain(key: string, s: RwState): void {
    while (s.queue.length > 0) {
      const next = s.queue[0];
      if (s.writer || (next.write && s.readers > 0)) break;
      s.queue.shift();
      next.resolve();
      if (next.write) break;
    }
    if (!s.writer && s.readers === 0 && s.queue.length === 0) this.states.delete(key);
  }
}
