import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { problemForStatus } from '@shortener/contracts';
import { PROBLEM_CONTENT_TYPE } from '@shortener/observability';

/**
 * What a hostile client meets before any controller runs: requests the HTTP parser
 * refuses, URLs the router cannot decode, and JSON bodies shaped to hurt the validators.
 * Every answer that can still be sent is problem+json.
 */

/** Deeper than any request body of the API needs; class-transformer recurses once per level. */
export const MAX_JSON_DEPTH = 16;

const PROBLEM = PROBLEM_CONTENT_TYPE;

function problemBody(status: number, title: string, detail: string): string {
  return JSON.stringify(problemForStatus(status, title, detail));
}

const NOT_A_CODE = problemBody(404, 'Not found', 'no link or route at this path');

/**
 * Fastify's frameworkErrors: a path whose percent-encoding is malformed (`/%ZZ`) or a
 * parameter over the router's length limit cannot be a code or a route: 404, as for any
 * other path that cannot be a code.
 */
export function frameworkErrors(_error: Error, _request: unknown, reply: unknown): void {
  void (reply as ReplyLike).code(404).type(PROBLEM).send(NOT_A_CODE);
}

// The Fastify types of @nestjs/platform-fastify's own copy and of the root one differ;
// this handler needs only these three calls.
interface ReplyLike {
  code(status: number): ReplyLike;
  type(contentType: string): ReplyLike;
  send(body: string): unknown;
}

const CLIENT_ERRORS: Record<string, { status: number; title: string; detail: string }> = {
  HPE_HEADER_OVERFLOW: { status: 431, title: 'Request header fields too large', detail: 'the request headers are too large' },
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, title: 'Request timeout', detail: 'the request did not arrive in time' },
  HPE_UNEXPECTED_CONTENT_LENGTH: { status: 400, title: 'Bad request', detail: 'conflicting Content-Length and Transfer-Encoding' },
};

/**
 * Fastify's clientErrorHandler: the HTTP parser refused the request (bad request line,
 * oversized headers, conflicting lengths) before any route could see it. Answer once in
 * problem+json if the socket can still take it, and close.
 */
export function clientErrorHandler(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const known = (error.code && CLIENT_ERRORS[error.code]) || { status: 400, title: 'Bad request', detail: 'the request could not be parsed' };
  const body = problemBody(known.status, known.title, known.detail);
  socket.end(
    `HTTP/1.1 ${known.status} ${known.title}\r\nContent-Type: ${PROBLEM}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

class BadBody extends Error {
  readonly statusCode = 400;
}

/** How deep a JSON text nests, without parsing it; stops counting past `limit`. */
export function jsonDepth(text: string, limit = MAX_JSON_DEPTH): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92)
        i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > deepest) deepest = depth;
      if (deepest > limit) return deepest;
    } else if (c === 125 || c === 93) depth--;
  }
  return deepest;
}

// No request body of the API has a field named like a member of Object.prototype; the
// validators would take `constructor` or `toString` for a known property and let it by.
// `prototype` too: class-transformer skips it when it builds the DTO, so it never reaches the whitelist.
const PROTOTYPE_NAMES = new Set([...Object.getOwnPropertyNames(Object.prototype), 'prototype']);

function prototypeNamedKey(value: unknown, path: string): string | null {
  if (typeof value !== 'object' || value === null) return null;
  for (const key of Object.keys(value)) {
    if (PROTOTYPE_NAMES.has(key)) return path ? `${path}.${key}` : key;
    const nested = prototypeNamedKey((value as Record<string, unknown>)[key], path ? `${path}.${key}` : key);
    if (nested) return nested;
  }
  return null;
}

/**
 * Replaces Fastify's JSON parser with one that refuses, as a 400, bodies nested deeper
 * than MAX_JSON_DEPTH (checked before parsing, so nothing downstream can overflow its
 * stack) and fields named like Object.prototype members; `__proto__` is refused by
 * Fastify's own secure parser, which still does the parsing.
 */
export function installJsonBodyParser(fastify: FastifyInstance): void {
  const parse = fastify.getDefaultJsonParser('error', 'error');
  fastify.removeContentTypeParser('application/json');
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string;
    if (jsonDepth(text) > MAX_JSON_DEPTH) {
      done(new BadBody(`the JSON body nests deeper than ${MAX_JSON_DEPTH} levels`), undefined);
      return;
    }
    parse(request, text, (error, value) => {
      if (error) return done(error, undefined);
      const key = prototypeNamedKey(value, '');
      if (key) return done(new BadBody(`unknown field "${key}"`), undefined);
      done(null, value);
    });
  });
}
