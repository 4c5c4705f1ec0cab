import 'reflect-metadata';
import type { DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { CustomTransportStrategy, MicroserviceOptions } from '@nestjs/microservices';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyInstance } from 'fastify';
import { Logger } from 'nestjs-pino';
import { installAccessLog } from './access-log';
import { installRequestMetrics } from './request-metrics';

export interface ServiceStart {
  name: string;
  module: DynamicModule;
  http: { host: string; port: number };
  /**
   * The RPC endpoint of the writer and the readers (a LineRpcServer of @shortener/rpc), built by
   * the app: this util library may not depend on a data-access one (module boundaries).
   */
  rpc?: CustomTransportStrategy;
  adapter?: FastifyAdapter;
  /** Paths whose requests get an access log line (the redirect path has none). */
  accessLogPrefixes?: string[];
  /** Paths whose requests are counted and timed in shortener_http_request* (route templates; the redirect path is not). */
  requestMetricsPrefixes?: string[];
  /** false: the app installs its own body parsers in `configure` (Nest's would then clash with them). */
  bodyParser?: boolean;
  /** Extra wiring on the application before it listens (routes, filters, OpenAPI). */
  configure?: (app: NestFastifyApplication) => void | Promise<void>;
}

/** One way to start every service: JSON logger, shutdown hooks, HTTP and optional RPC. */
export async function startService(start: ServiceStart): Promise<NestFastifyApplication> {
  const app = await NestFactory.create<NestFastifyApplication>(start.module, start.adapter ?? new FastifyAdapter(), {
    bufferLogs: true,
    bodyParser: start.bodyParser ?? true,
  });
  app.useLogger(app.get(Logger));
  app.enableShutdownHooks();
  if (start.rpc) {
    app.connectMicroservice<MicroserviceOptions>({ strategy: start.rpc }, { inheritAppConfig: true });
    await app.startAllMicroservices();
  }
  // Nest's platform-fastify carries its own copy of fastify's types, hence the cast.
  const fastify = app.getHttpAdapter().getInstance() as unknown as FastifyInstance;
  if (start.accessLogPrefixes?.length) installAccessLog(fastify, start.accessLogPrefixes);
  if (start.requestMetricsPrefixes?.length) installRequestMetrics(fastify, start.requestMetricsPrefixes);
  await start.configure?.(app);
  await app.listen(start.http.port, start.http.host);
  return app;
}

/** Start-up failures (bad configuration above all) end the process with one JSON line. */
export function exitOnStartFailure(service: string) {
  return (error: Error) => {
    process.stderr.write(`${JSON.stringify({ level: 'fatal', time: new Date().toISOString(), service, msg: error.message })}\n`);
    process.exit(1);
  };
}
