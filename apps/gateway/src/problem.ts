import type { FastifyReply } from 'fastify';
import { problemFor, problemForStatus, type DomainError, type Problem } from '@shortener/contracts';

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
