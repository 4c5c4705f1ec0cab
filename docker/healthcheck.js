// Container health check: exits 0 when the service's liveness endpoint answers 2xx.
//   node healthcheck.js [url]
// Without a url: http://127.0.0.1:<port>/health/live, where <port> is the value of the
// variable named by HEALTH_PORT_VARIABLE (PORT for the gateway, HTTP_PORT for the others).
// Node's own fetch: the slim images have no curl or wget.
'use strict';

const url = process.argv[2] || `http://127.0.0.1:${process.env[process.env.HEALTH_PORT_VARIABLE || 'HTTP_PORT'] || process.env.PORT || 3000}/health/live`;

fetch(url, {
  signal: AbortSignal.timeout(Number(process.env.HEALTHCHECK_TIMEOUT_MS || 2500)),
}).then(
  (response) => process.exit(response.ok ? 0 : 1),
  () => process.exit(1),
);
