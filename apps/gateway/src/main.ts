import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { gatewayEnvironmentSchema, validateEnvironment } from '@shortener/config';
import { exitOnStartFailure, startService } from '@shortener/observability';
import type { FastifyError, FastifyInstance } from 'fastify';
import { CLICK_BATCHER, LINK_CACHE, READER_POOL } from './gateway.constants';
import { GatewayModule } from './gateway.module';
import { clientErrorHandler, frameworkErrors, installJsonBodyParser } from './front-door';
import { targetPolicy } from './link-validators';
import { targetPolicyOf } from '@shortener/links';
import { problemOfStatus, sendProblem } from '@shortener/observability';
import { registerRedirectRoute } from './redirect.route';
import { registerAdminPage } from './admin-page';

export const MAX_BODY_BYTES = 16 * 1024;

/** Errors raised by Fastify itself (body too large, bad JSON, wrong media type) as problem+json. */
export function installFastifyErrorHandling(fastify: FastifyInstance): void {
  fastify.setErrorHandler((error: FastifyError, _request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    const detail =
      status === 413
        ? `the body is larger than ${MAX_BODY_BYTES} bytes`
        : status === 415
          ? 'the body must be application/json'
          : status === 500
            ? 'internal error'
            : error.message;
    return sendProblem(reply, problemOfStatus(status, detail));
  });
  // Writes take JSON only: answer 415 before anything else looks at the request.
  fastify.addHook('preValidation', async (request, reply) => {
    if (request.method !== 'POST' && request.method !== 'PATCH' && request.method !== 'PUT') return;
    if (!request.url.startsWith('/api/urls')) return;
    const type = request.headers['content-type'];
    if (!type || !/^application\/json\s*(;|$)/i.test(type)) {
      return sendProblem(reply, problemOfStatus(415, 'the body must be application/json'));
    }
  });
}

async function main(): Promise<void> {
  const env = validateEnvironment(gatewayEnvironmentSchema, process.env);
  const publicBaseUrl = (env.PUBLIC_BASE_URL ?? `http://localhost:${env.PORT}`).replace(/\/+$/, '');
  targetPolicy.value = targetPolicyOf({ publicBaseUrl, allowPrivate: env.ALLOW_PRIVATE_TARGETS, blockedHosts: env.BLOCKED_HOSTS });
  const adapter = new FastifyAdapter({
    bodyLimit: MAX_BODY_BYTES,
    maxParamLength: 200,
    return503OnClosing: true,
    trustProxy: env.TRUST_PROXY,
    frameworkErrors,
    clientErrorHandler,
  });
  await startService({
    name: 'gateway',
    module: GatewayModule.forRoot({ ...env, publicBaseUrl }),
    adapter,
    http: { host: env.HTTP_HOST, port: env.PORT },
    accessLogPrefixes: ['/api/'],
    requestMetricsPrefixes: ['/api/'],
    // installJsonBodyParser below is the JSON parser; Nest's own would refuse to register beside it.
    bodyParser: false,
    configure: (app: NestFastifyApplication) => {
      const fastify = app.getHttpAdapter().getInstance() as unknown as FastifyInstance;
      installFastifyErrorHandling(fastify);
      installJsonBodyParser(fastify);
      registerAdminPage(fastify);
      registerRedirectRoute(fastify, {
        cache: app.get(LINK_CACHE),
        readers: app.get(READER_POOL),
        clicks: app.get(CLICK_BATCHER),
        permanentCacheSeconds: env.REDIRECT_CACHE_SECONDS,
      });
      const document = SwaggerModule.createDocument(
        app,
        new DocumentBuilder()
          .setTitle('URL shortener')
          .setDescription(
            'Sharded, replicated URL shortener. Redirects: GET /{code} answers 301/302/307/308 with Location, ' +
              '404 for an unknown code, 410 for an expired or deleted one. Errors are application/problem+json.',
          )
          .setVersion('1.0')
          .addBearerAuth()
          .build(),
      );
      document.paths['/{code}'] = {
        get: {
          tags: ['redirect'],
          summary: 'Follow a short link',
          parameters: [{ name: 'code', in: 'path', required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9_-]{3,32}$' } }],
          responses: {
            '301': { description: 'Moved permanently; Location: the target' },
            '302': { description: 'Found (the default); Location: the target' },
            '307': { description: 'Temporary redirect; Location: the target' },
            '308': { description: 'Permanent redirect; Location: the target' },
            '404': { description: 'Unknown code' },
            '410': { description: 'Expired or deleted' },
          },
        },
      };
      SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs/json' });
    },
  });
}

main().catch(exitOnStartFailure('gateway'));
