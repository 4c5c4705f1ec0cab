/**
 * Domain errors: thrown anywhere, carried across RPC as { kind, message, ... },
 * mapped to problem+json at the gateway by kind alone.
 */
export type DomainErrorKind =
  | 'validation'
  | 'unauthorized'
  | 'forbidden'
  | 'not-found'
  | 'gone'
  | 'conflict'
  | 'idempotency-mismatch'
  | 'rate-limited'
  | 'shard-unavailable'
  | 'dependency-unavailable'
  | 'outcome-unknown';

export interface FieldError {
  field: string;
  message: string;
}

export interface DomainErrorPayload {
  kind: DomainErrorKind;
  message: string;
  errors?: FieldError[];
  retryAfterSeconds?: number;
}

export class DomainError extends Error {
  constructor(
    readonly kind: DomainErrorKind,
    message: string,
    readonly details: { errors?: FieldError[]; retryAfterSeconds?: number } = {},
  ) {
    super(message);
    this.name = 'DomainError';
  }

  toPayload(): DomainErrorPayload {
    return { kind: this.kind, message: this.message, ...this.details };
  }

  static fromPayload(payload: DomainErrorPayload): DomainError {
    const { kind, message, ...details } = payload;
    return new DomainError(kind, message, details);
  }

  static isPayload(value: unknown): value is DomainErrorPayload {
    return (
      typeof value === 'object' &&
      value !== null &&
      typeof (value as DomainErrorPayload).kind === 'string' &&
      typeof (value as DomainErrorPayload).message === 'string'
    );
  }
}

/**
 * The write was sent but its answer never came (a deadline passed, the connection to the
 * database broke mid-statement): it may or may not have been applied.
 */
export const OutcomeUnknown = (what = 'the write') =>
  new DomainError('outcome-unknown', `${what} did not finish in time and may or may not have been applied; a retry with the same Idempotency-Key is safe`);

export const ShardUnavailable = (shard: number, retryAfterSeconds = 2) =>
  new DomainError('shard-unavailable', `shard ${shard} has no writable primary right now`, {
    retryAfterSeconds,
  });

const problemTypes: Record<DomainErrorKind, { status: number; title: string }> = {
  validation: { status: 400, title: 'Invalid request' },
  unauthorized: { status: 401, title: 'Authentication required' },
  forbidden: { status: 403, title: 'Forbidden' },
  'not-found': { status: 404, title: 'Not found' },
  gone: { status: 410, title: 'Gone' },
  conflict: { status: 409, title: 'Conflict' },
  'idempotency-mismatch': { status: 422, title: 'Idempotency key reused with a different request' },
  'rate-limited': { status: 429, title: 'Too many requests' },
  'shard-unavailable': { status: 503, title: 'Shard unavailable' },
  'dependency-unavailable': { status: 503, title: 'Service unavailable' },
  // 503 promises that nothing was written; when that cannot be promised, this is the answer.
  'outcome-unknown': { status: 504, title: 'Outcome unknown' },
};

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  errors?: FieldError[];
}

export function problemFor(kind: DomainErrorKind, detail: string, errors?: FieldError[]): Problem {
  const { status, title } = problemTypes[kind];
  return { type: `https://shortener.dev/problems/${kind}`, title, status, detail, ...(errors ? { errors } : {}) };
}

export function problemForStatus(status: number, title: string, detail: string, type = 'about:blank'): Problem {
  return { type, title, status, detail };
}
