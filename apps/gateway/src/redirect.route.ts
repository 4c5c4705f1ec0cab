import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { LinkCache } from '@shortener/cache';
import { DomainError, RpcPatterns, type Resolution } from '@shortener/contracts';
import type { ClickBatcher } from '@shortener/events';
import { couldBeCode, decodeCacheEntry } from '@shortener/links';
import { counter, problemOfDomainError, PROBLEM_CONTENT_TYPE, sendProblem } from '@shortener/observability';
import { REQUEST_TIMEOUTS } from './gateway.constants';
import type { ReaderPool } from './rpc-channel';

const redirects = counter('shortener_redirects_total', 'Redirect requests by answer and source', ['status', 'source']);
const cacheErrors = counter('shortener_cache_read_errors_total', 'Redirect cache reads that failed');

// Bodies built once: the redirect path allocates as little as it can.
const NOT_FOUND = JSON.stringify({ type: 'https://shortener.dev/problems/not-found', title: 'Not found', status: 404, detail: 'no link with this code' });
const GONE = JSON.stringify({ type: 'https://shortener.dev/problems/gone', title: 'Gone', status: 410, detail: 'this link has expired or was deleted' });

export interface RedirectDependencies {
  cache: LinkCache;
  readers: ReaderPool;
  clicks: ClickBatcher;
  /** REDIRECT_CACHE_SECONDS: how long browsers may keep a 301 or 308. */
  permanentCacheSeconds: number;
}

/**
 * Cache-Control by redirect type, as constant strings chosen once: a permanent redirect
 * is kept a bounded time (so an edit or a delete reaches browsers), a temporary one is
 * revalidated every time. Indexed by status, so the hit path does one array load.
 */
export function cacheControlByStatus(permanentCacheSeconds: number): string[] {
  const table: string[] = [];
  table[301] = table[308] = `max-age=${permanentCacheSeconds}`;
  table[302] = table[307] = 'private, no-cache';
  return table;
}

/**
 * GET and HEAD /{code}, registered straight on Fastify rather than through Nest's
 * pipeline: a cache hit is one Redis GET and a 30x; a miss asks a reader.
 */
export function registerRedirectRoute(fastify: FastifyInstance, deps: RedirectDependencies): void {
  const cacheControl = cacheControlByStatus(deps.permanentCacheSeconds);
  const counted = {
    hitRedirect: redirects.labels('redirect', 'cache'),
    hitNotFound: redirects.labels('404', 'cache'),
    hitGone: redirects.labels('410', 'cache'),
    missRedirect: redirects.labels('redirect', 'reader'),
    missNotFound: redirects.labels('404', 'reader'),
    missGone: redirects.labels('410', 'reader'),
    invalid: redirects.labels('404', 'shape'),
  };

  const handler = async (request: FastifyRequest<{ Params: { code: string } }>, reply: FastifyReply) => {
    const code = request.params.code;
    if (!couldBeCode(code)) {
      counted.invalid.inc();
      return reply.code(404).type(PROBLEM_CONTENT_TYPE).send(NOT_FOUND);
    }

    let raw: string | null = null;
    try {
      raw = await deps.cache.getRaw(code);
    } catch {
      cacheErrors.inc(); // Redis down: the readers answer from the replicas.
    }
    const entry = raw === null ? null : decodeCacheEntry(raw);
    if (entry) {
      if (entry.kind === 'link') {
        if (entry.expiresAt === null || entry.expiresAt > Date.now()) {
          counted.hitRedirect.inc();
          deps.clicks.record(code);
          return reply.code(entry.redirectType).header('location', entry.url).header('cache-control', cacheControl[entry.redirectType]).send();
        }
        counted.hitGone.inc();
        return reply.code(410).type(PROBLEM_CONTENT_TYPE).send(GONE);
      }
      if (entry.kind === 'gone') {
        counted.hitGone.inc();
        return reply.code(410).type(PROBLEM_CONTENT_TYPE).send(GONE);
      }
      counted.hitNotFound.inc();
      return reply.code(404).type(PROBLEM_CONTENT_TYPE).send(NOT_FOUND);
    }

    let resolution: Resolution;
    try {
      resolution = await deps.readers.call<Resolution>(RpcPatterns.resolveLink, { code }, REQUEST_TIMEOUTS.resolveMs);
    } catch (error) {
      const domain = error instanceof DomainError ? error : new DomainError('dependency-unavailable', 'no reader answered');
      const { problem, headers } = problemOfDomainError(domain);
      return sendProblem(reply, problem, headers);
    }
    switch (resolution.status) {
      case 'found':
        counted.missRedirect.inc();
        deps.clicks.record(code);
        return reply.code(resolution.redirectType).header('location', resolution.url).header('cache-control', cacheControl[resolution.redirectType]).send();
      case 'gone':
        counted.missGone.inc();
        return reply.code(410).type(PROBLEM_CONTENT_TYPE).send(GONE);
      default:
        counted.missNotFound.inc();
        return reply.code(404).type(PROBLEM_CONTENT_TYPE).send(NOT_FOUND);
    }
  };

  fastify.route({ method: ['GET', 'HEAD'], url: '/:code', handler, exposeHeadRoute: false });
}
