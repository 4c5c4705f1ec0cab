/**
 * HTTP helpers for the API and resilience specs: every call goes through the gateway
 * with Node's global fetch and `redirect: 'manual'`, so a 30x is seen as it is.
 */
import { randomBytes } from 'node:crypto';
import { str as crc32 } from 'crc-32';
import type { StackHandle } from './stack';

export interface HttpAnswer<T = any> {
  status: number;
  headers: Headers;
  /** The body parsed as JSON when it is JSON, otherwise null. */
  json: T;
  text: string;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  /** An object is sent as JSON (content-type application/json); a string is sent as is. */
  body?: unknown;
  token?: string;
  timeoutMs?: number;
}

export async function request<T = any>(baseUrl: string, path: string, options: RequestOptions = {}): Promise<HttpAnswer<T>> {
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  let body: string | undefined;
  if (options.body !== undefined) {
    if (typeof options.body === 'string') {
      body = options.body;
    } else {
      body = JSON.stringify(options.body);
      if (!Object.keys(headers).some((name) => name.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
    }
  }
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  const response = await fetch(`${baseUrl}${path}`, {
    method: options.method ?? (body === undefined ? 'GET' : 'POST'),
    headers,
    body,
    redirect: 'manual',
    signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
  });
  const text = await response.text();
  let json: any = null;
  if (text.length > 0 && /json/i.test(response.headers.get('content-type') ?? '')) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  return { status: response.status, headers: response.headers, json, text };
}

/** A bound client for one stack's gateway. */
export function gateway(stack: StackHandle) {
  const call = <T = any>(path: string, options: RequestOptions = {}) => request<T>(stack.baseUrl, path, options);
  return {
    call,
    get: <T = any>(path: string, options: Omit<RequestOptions, 'method'> = {}) => call<T>(path, { ...options, method: 'GET' }),
    head: (path: string) => call(path, { method: 'HEAD' }),
    create: (body: unknown, headers: Record<string, string> = {}) => call<CreatedLink>('/api/urls', { method: 'POST', body, headers }),
    patch: (code: string, body: unknown, token?: string) => call<LinkDetails>(`/api/urls/${code}`, { method: 'PATCH', body, token }),
    remove: (code: string, token?: string) => call(`/api/urls/${code}`, { method: 'DELETE', token }),
    details: (code: string) => call<LinkDetails>(`/api/urls/${code}`),
    redirect: (code: string) => call(`/${code}`),
    cluster: (token = stack.adminToken) => call<ClusterDocument>('/api/cluster', { token }),
  };
}

export type Gateway = ReturnType<typeof gateway>;

export interface CreatedLink {
  code: string;
  shortUrl: string;
  url: string;
  createdAt: string;
  expiresAt: string | null;
  redirectType: number;
  manageToken: string;
}

export interface LinkDetails {
  code: string;
  url: string;
  createdAt: string;
  updatedAt: string;
  expiresAt: string | null;
  redirectType: number;
  clicks: number;
}

export interface ClusterNode {
  name: string;
  host: string;
  port: number;
  role: 'primary' | 'replica';
  healthy: boolean;
  lagBytes: number | null;
  lagSeconds: number | null;
}

export interface ClusterDocument {
  epoch: number;
  replicationMode: 'quorum' | 'async';
  ring: { algorithm: string; slots: number[] };
  shards: { id: number; primary: ClusterNode; replicas: ClusterNode[] }[];
  failovers: { shard: number; at: string; from: string; to: string; reason: string; durationMs: number }[];
  redis: { host: string; port: number };
  kafka: { brokers: string[] };
}

/** A target URL nobody else uses, so a test can recognise its own link. */
export function uniqueTarget(label = 'e2e'): string {
  return `https://example.com/${label}/${randomBytes(6).toString('hex')}`;
}

/** A fresh alias of the allowed shape (3 to 32 of [A-Za-z0-9_-]). */
export function uniqueAlias(prefix = 'e2e'): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/** docs/reference.md section 3: position = crc32(code) >>> 0, slot = position >>> 22. */
export function slotOfCode(code: string): number {
  return (crc32(code) >>> 0) >>> 22;
}

/** Checks an answer is a problem+json document of RFC 9457 with the given status. */
export function expectProblem(answer: HttpAnswer, status: number): void {
  const context = { status: answer.status, contentType: answer.headers.get('content-type'), body: answer.text.slice(0, 500) };
  expect({ ...context, status: answer.status }).toEqual({ ...context, status });
  expect(answer.headers.get('content-type') ?? '').toMatch(/^application\/problem\+json/);
  expect(answer.json).toEqual(expect.objectContaining({ type: expect.any(String), title: expect.any(String), status, detail: expect.any(String) }));
  if (answer.json.errors !== undefined) {
    expect(Array.isArray(answer.json.errors)).toBe(true);
    for (const error of answer.json.errors) expect(error).toEqual({ field: expect.any(String), message: expect.any(String) });
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
