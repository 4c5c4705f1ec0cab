import type { FastifyInstance, onResponseHookHandler } from 'fastify';
import { PinoLogger } from 'nestjs-pino';

/**
 * One JSON line per answered request whose path starts with one of the prefixes, from a
 * Fastify hook. Not nestjs-pino's request middleware: that binds a child logger to each
 * request through AsyncLocalStorage, and once its promise hooks are on they cost every
 * request of the process, redirects included (the gateway did a third more work per
 * redirect and per create with them; bench/README.md).
 */
export function installAccessLog(fastify: FastifyInstance, prefixes: string[]): void {
  // Attached to the matching routes as they are declared (so before Nest's routes and the
  // raw redirect route): a request on any other path runs no hook at all.
  fastify.addHook('onRoute', (route) => {
    if (!prefixes.some((prefix) => route.url.startsWith(prefix))) return;
    const existing = route.onResponse ? [route.onResponse].flat() : [];
    route.onResponse = [...existing, logResponse];
  });
}

const logResponse: onResponseHookHandler = (request, reply, done) => {
  const status = reply.statusCode;
  // Flat fields: the root logger's req/res serializers expect Node's request objects.
  const line = { reqId: request.id, method: request.method, url: request.url, statusCode: status, responseTime: Math.round(reply.elapsedTime) };
  if (status >= 500) PinoLogger.root.error(line, 'request failed');
  else PinoLogger.root.info(line, 'request completed');
  done();
};
