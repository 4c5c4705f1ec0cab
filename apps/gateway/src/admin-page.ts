import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { FastifyInstance } from 'fastify';

const ASSETS = [
  { path: '/admin', file: 'index.html', type: 'text/html; charset=utf-8' },
  { path: '/admin/admin.css', file: 'admin.css', type: 'text/css; charset=utf-8' },
  { path: '/admin/admin.js', file: 'admin.js', type: 'text/javascript; charset=utf-8' },
];

/** Everything the page loads comes from the gateway itself; nothing may frame it. */
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

/**
 * apps/gateway/admin, found from the running code: from dist/apps/gateway/... of a checkout
 * (either build) or /app/dist/... of the image, whose Dockerfile copies the folder to /app.
 */
export function adminAssetsDir(from = __dirname): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'apps', 'gateway', 'admin');
    if (existsSync(join(candidate, 'index.html'))) return candidate;
    if (dirname(dir) === dir) throw new Error(`the /admin page (apps/gateway/admin/index.html) is not in any folder above ${from}`);
  }
}

/**
 * GET /admin: plain HTML, CSS and a script, read once at start-up. The page holds no
 * data; everything it shows comes from the admin API with the token the user types.
 */
export function registerAdminPage(fastify: FastifyInstance, dir = adminAssetsDir()): void {
  for (const asset of ASSETS) {
    const body = readFileSync(join(dir, asset.file));
    fastify.get(asset.path, (_request, reply) => {
      void reply.headers({ ...SECURITY_HEADERS, 'content-type': asset.type }).send(body);
    });
  }
}
