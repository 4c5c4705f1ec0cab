import type { FastifyInstance, onResponseHookHandler } from 'fastify';
import type { Counter, Histogram } from 'prom-client';
import { counter, histogram } from './metrics';

/** docs/reference.md section 9: request counts and latencies of the API routes, by route template. */
export const HTTP_REQUESTS_TOTAL = 'shortener_http_requests_total';
export const HTTP_REQUEST_DURATION_SECONDS = 'shortener_http_request_duration_seconds';

export function httpRequestMetrics(): { requests: Counter<string>; duration: Histogram<string> } {
  return {
    requests: counter(HTTP_REQUESTS_TOTAL, 'Answered API requests by route template, method and status', ['route', 'method', 'status']),
    duration: histogram(HTTP_REQUEST_DURATION_SECONDS, 'Time to answer an API request, by route template and method', ['route', 'method']),
  };
}

/**
 * Counts every answered request of the routes whose path starts with one of the prefixes,
 * from an onResponse callback hook attached to those routes as they are declared (like the
 * access log): a request on any other path (the redirect above all) runs no hook and pays
 * nothing. Labels are the route template Fastify matched (`/api/urls/:code`, never the raw
 * path), the method and the status code: bounded sets. The duration is Fastify's own
 * `reply.elapsedTime`, so no clock is read and no promise is made per request; the
 * labelled children are looked up once per route, method and status and then reused.
 */
export function installRequestMetrics(fastify: FastifyInstance, prefixes: string[]): void {
  const { requests, duration } = httpRequestMetrics();
  fastify.addHook('onRoute', (route) => {
    if (!prefixes.some((prefix) => route.url.startsWith(prefix))) return;
    const template = route.url;
    const counters = new Map<string, Counter.Internal>();
    const timers = new Map<string, Histogram.Internal<string>>();
    const count: onResponseHookHandler = (request, reply, done) => {
      const method = request.method;
      const status = reply.statusCode;
      const key = `${method} ${status}`;
      let counted = counters.get(key);
      if (!counted) counters.set(key, (counted = requests.labels(template, method, String(status))));
      counted.inc();
      let timed = timers.get(method);
      if (!timed) timers.set(method, (timed = duration.labels(template, method)));
      timed.observe(reply.elapsedTime / 1000);
      done();
    };
    const existing = route.onResponse ? [route.onResponse].flat() : [];
    route.onResponse = [...existing, count];
  });
}
