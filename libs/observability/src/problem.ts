import { randomUUID } from 'node:crypto';
import { ArgumentsHost, Catch, HttpException, type ExceptionFilter } from '@nestjs/common';
import { DomainError, problemFor, problemForStatus, type Problem } from '@shortener/contracts';
import type { FastifyReply } from 'fastify';
import { PinoLogger } from 'nestjs-pino';

/**
 * The one writer of problem+json (RFC 9457) for every service: the ProblemFilter below is
 * installed in each service's HTTP application by ObservabilityModule, and the gateway's own
 * Fastify-level handlers (redirects, parser errors) use the same functions.
 */
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export function sendProblem(reply: FastifyReply, problem: Problem, headers: Record<string, string> = {}): FastifyReply {
  return reply.code(problem.status).headers(headers).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem));
}

export function problemOfDomainError(error: DomainError): { problem: Problem; headers: Record<string, string> } {
  const headers: Record<string, string> = {};
  if (error.details.retryAfterSeconds !== undefined) headers['retry-after'] = String(error.details.retryAfterSeconds);
  if (error.kind === 'unauthorized') headers['www-authenticate'] = 'Bearer';
  return { problem: problemFor(error.kind, error.message, error.details.errors), headers };
}

const STATUS_TITLES: Record<number, string> = {
  400: 'Invalid request',
  401: 'Authentication required',
  403: 'Forbidden',
  404: 'Not found',
  405: 'Method not allowed',
  410: 'Gone',
  413: 'Payload too large',
  415: 'Unsupported media type',
  429: 'Too many requests',
  500: 'Internal error',
  503: 'Service unavailable',
  504: 'Outcome unknown',
};

export function problemOfStatus(status: number, detail: string): Problem {
  return problemForStatus(status, STATUS_TITLES[status] ?? 'Error', detail);
}

/**
 * The one place errors become HTTP answers: domain errors by kind, framework errors by
 * status, anything unexpected as a 500 whose id is also in the log.
 */
@Catch()
export class ProblemFilter implements ExceptionFilter {
  constructor(private readonly logger: PinoLogger) {}

  catch(error: unknown, host: ArgumentsHost): void {
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    if (error instanceof DomainError) {
      const { problem, headers } = problemOfDomainError(error);
      sendProblem(reply, problem, headers);
      return;
    }
    if (error instanceof HttpException) {
      const status = error.getStatus();
      const response = error.getResponse();
      const detail = typeof response === 'object' && response && 'message' in response ? [response.message].flat().join('; ') : error.message;
      sendProblem(reply, problemOfStatus(status, String(detail)));
      return;
    }
    const status = (error as { statusCode?: number })?.statusCode;
    if (status && status >= 400 && status < 500) {
      sendProblem(reply, problemOfStatus(status, (error as Error).message));
      return;
    }
    const errorId = randomUUID();
    this.logger.error({ err: error, errorId }, 'unhandled error');
    sendProblem(reply, problemOfStatus(500, `internal error ${errorId}`));
  }
}
