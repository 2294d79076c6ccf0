import { randomBytes, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { KeyGrant } from '../../config/config.js';

// Console sign-in: an access key id and its secret, checked here against the
// configured key pairs; the session is an opaque random id in an HttpOnly,
// SameSite=Strict cookie scoped to /_/, held in this process's memory (so
// behind a load balancer, a session belongs to one instance: sticky
// sessions, or sign in again). docs/security.md, "The web console".

export const COOKIE = 'dgp_console';
/** Sign-in attempts per client address: a burst of ATTEMPTS, then one per REFILL_MS. */
const ATTEMPTS = 5;
const REFILL_MS = 12_000;

export interface Session {
  id: string;
  grant: KeyGrant;
  expires: number;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  // Compare at equal length so that the time does not tell the length.
  const n = Math.max(x.length, y.length, 1);
  const px = Buffer.alloc(n);
  const py = Buffer.alloc(n);
  x.copy(px);
  y.copy(py);
  return timingSafeEqual(px, py) && x.length === y.length;
}

export class Sessions {
  private readonly sessions = new LRUCache<string, Session>({ max: 10_000 });
  private readonly attempts = new LRUCache<string, { tokens: number; at: number }>({ max: 50_000 });
  private readonly keys: Map<string, KeyGrant>;

  constructor(
    keys: KeyGrant[],
    private readonly lifetimeMs: number,
  ) {
    this.keys = new Map(keys.map((k) => [k.accessKeyId, k]));
  }

  /** Takes one sign-in attempt for a client; false when it must wait. */
  allowAttempt(client: string, now = Date.now()): { ok: boolean; retryAfter: number } {
    const a = this.attempts.get(client) ?? { tokens: ATTEMPTS, at: now };
    const refilled = Math.min(ATTEMPTS, a.tokens + Math.floor((now - a.at) / REFILL_MS));
    const at = refilled === a.tokens ? a.at : now;
    if (refilled < 1) {
      this.attempts.set(client, { tokens: refilled, at });
      return { ok: false, retryAfter: Math.ceil((REFILL_MS - (now - at)) / 1000) };
    }
    this.attempts.set(client, { tokens: refilled - 1, at });
    return { ok: true, retryAfter: 0 };
  }

  /** Checks a key pair; a new session, or null. */
  signIn(accessKeyId: string, secret: string): Session | null {
    const grant = this.keys.get(accessKeyId);
    // Compare against something even for unknown ids (same work either way).
    const ok = sameSecret(secret, grant?.secretAccessKey ?? randomBytes(24).toString('base64'));
    if (!grant || !ok) return null;
    const s: Session = { id: randomBytes(32).toString('base64url'), grant, expires: Date.now() + this.lifetimeMs };
    this.sessions.set(s.id, s);
    return s;
  }

  /** The request's live session, or null. */
  get(req: FastifyRequest): Session | null {
    const id = cookie(req, COOKIE);
    if (!id) return null;
    const s = this.sessions.get(id);
    if (!s) return null;
    if (s.expires <= Date.now()) {
      this.sessions.delete(id);
      return null;
    }
    return s;
  }

  end(req: FastifyRequest): void {
    const id = cookie(req, COOKIE);
    if (id) this.sessions.delete(id);
  }

  setCookie(reply: FastifyReply, s: Session | null, secure: boolean): void {
    const attrs = ['Path=/_/', 'HttpOnly', 'SameSite=Strict', ...(secure ? ['Secure'] : [])];
    if (!s) reply.header('set-cookie', [`${COOKIE}=`, ...attrs, 'Max-Age=0'].join('; '));
    else reply.header('set-cookie', [`${COOKIE}=${s.id}`, ...attrs, `Max-Age=${Math.floor(this.lifetimeMs / 1000)}`].join('; '));
  }
}

export function cookie(req: FastifyRequest, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
