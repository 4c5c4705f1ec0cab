import { DomainError, RpcPatterns, type ApiKeyCredential } from '@shortener/contracts';
import { apiKeySecretMatches, API_KEY_PREFIX, parseApiKey } from '@shortener/links';
import { counter } from '@shortener/observability';
import type { FastifyRequest } from 'fastify';
import { bearerToken } from './auth';

const keyChecks = counter('shortener_api_key_checks_total', 'API keys presented to the gateway, by outcome', ['outcome']);

/** A key whose secret matched a live row. */
export interface VerifiedKey {
  id: string;
  rateLimitPerMinute: number | null;
}

/** Where a key's row is read: the readers' keys.get. */
export interface KeyLookup {
  call<T>(pattern: string, payload: unknown, timeoutMs: number): Promise<T>;
}

/**
 * How long a gateway trusts what it read about a key. docs/reference.md section 8 says a
 * revoked key is refused by every gateway within 5 s: 2 s of cache, plus replication lag
 * (milliseconds) and the read itself, keeps well inside that.
 */
export const KEY_CACHE_MS = 2000;
const KEY_CACHE_ENTRIES = 10_000;
const KEY_LOOKUP_TIMEOUT_MS = 1500;

type Cached = { credential: ApiKeyCredential | null; until: number };

/** The key a request presents: X-Api-Key, or a bearer token that looks like one. Null when it presents none. */
export function presentedApiKey(request: FastifyRequest): string | null {
  const header = request.headers['x-api-key'];
  if (header !== undefined) return Array.isArray(header) ? header.join(',') : header;
  const bearer = bearerToken(request);
  return bearer && bearer.startsWith(API_KEY_PREFIX) ? bearer : null;
}

/**
 * Checks presented API keys against their rows (read through the readers), keeping what
 * it read for KEY_CACHE_MS, misses included, so that a key costs one lookup per gateway
 * every two seconds however busy it is. Concurrent first uses of a key share one lookup.
 */
export class ApiKeyVerifier {
  private readonly cache = new Map<string, Cached>();
  private readonly inFlight = new Map<string, Promise<ApiKeyCredential | null>>();

  constructor(
    private readonly lookup: KeyLookup,
    private readonly now: () => number = Date.now,
  ) {}

  /** The key of the request, verified; null when none is presented; 401 for a key that is not a live one. */
  async verify(request: FastifyRequest): Promise<VerifiedKey | null> {
    const presented = presentedApiKey(request);
    if (presented === null) return null;
    const parsed = parseApiKey(presented.trim());
    if (!parsed) return this.refuse('malformed', 'the API key is not one this shortener issues');
    const credential = await this.credentialOf(parsed.id);
    if (!credential) return this.refuse('unknown', 'the API key is not valid');
    if (!apiKeySecretMatches(parsed.secret, Buffer.from(credential.secretHash, 'base64'))) return this.refuse('wrong-secret', 'the API key is not valid');
    if (credential.revoked) return this.refuse('revoked', 'the API key was revoked');
    keyChecks.inc({ outcome: 'ok' });
    return { id: credential.id, rateLimitPerMinute: credential.rateLimitPerMinute };
  }

  /** Forgets a key at once on this gateway (it revoked it); the others follow within KEY_CACHE_MS. */
  forget(id: string): void {
    this.cache.delete(id);
  }

  private refuse(outcome: string, message: string): never {
    keyChecks.inc({ outcome });
    throw new DomainError('unauthorized', message);
  }

  private async credentialOf(id: string): Promise<ApiKeyCredential | null> {
    const cached = this.cache.get(id);
    if (cached && cached.until > this.now()) return cached.credential;
    const pending = this.inFlight.get(id);
    if (pending) return pending;
    const read = this.read(id).finally(() => this.inFlight.delete(id));
    this.inFlight.set(id, read);
    return read;
  }

  private async read(id: string): Promise<ApiKeyCredential | null> {
    let credential: ApiKeyCredential | null;
    try {
      credential = await this.lookup.call<ApiKeyCredential>(RpcPatterns.getKey, { id }, KEY_LOOKUP_TIMEOUT_MS);
    } catch (error) {
      if (!(error instanceof DomainError && error.kind === 'not-found')) throw error; // 503 from the readers: not cached
      credential = null;
    }
    if (this.cache.size >= KEY_CACHE_ENTRIES) {
      const oldest = this.cache.keys().next();
      if (!oldest.done) this.cache.delete(oldest.value);
    }
    this.cache.set(id, { credential, until: this.now() + KEY_CACHE_MS });
    return credential;
  }
}
