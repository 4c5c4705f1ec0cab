import { randomUUID } from 'node:crypto';
import { ArgumentsHost, Catch, HttpException, type ExceptionFilter } from '@nestjs/common';
import { DomainError } from '@shortener/contracts';
import type { FastifyReply } from 'fastify';
import { PinoLogger } from 'nestjs-pino';
import { problemOfDomainError, problemOfStatus, sendProblem } from './problem';

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
