import type { FastifyInstance } from 'fastify';
import { PinoLogger } from 'nestjs-pino';

/**
 * One JSON line per answered request whose path starts with one of the prefixes, from a
 * Fastify hook. Not nestjs-pino's request middleware: that binds a child logger to each
 * request through AsyncLocalStorage, and once its promise hooks are on they cost every
 * request of the process, redirects included (the gateway did a third more work per
 * redirect and per create with them; bench/README.md).
 */
export function installAccessLog(fastify: FastifyInstance, prefixes: string[]): void {
  fastify.addHook('onResponse', (request, reply, done) => {
    const url = request.url;
    if (prefixes.some((prefix) => url.startsWith(prefix))) {
      const status = reply.statusCode;
      // Flat fields: the root logger's req/res serializers expect Node's request objects.
      const line = { reqId: request.id, method: request.method, url, statusCode: status, responseTime: Math.round(reply.elapsedTime) };
      if (status >= 500) PinoLogger.root.error(line, 'request failed');
      else PinoLogger.root.info(line, 'request completed');
    }
    done();
  });
}
