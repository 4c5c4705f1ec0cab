import { BatchQueueFull, DeadlineExceeded } from './statement-batcher';

/**
 * What a failed write did to the database, as far as the client can tell:
 * - `refused`: the statement was turned down for a value or a rule (SQLSTATE classes 22
 *   and 23, a type mismatch): nothing of it was applied, and sending it again fails again;
 * - `not-applied`: nothing was written (the node refused the connection or is read-only,
 *   the statement was cancelled by its server-side timeout, it never left the queue);
 * - `unknown`: the statement (or its COMMIT) was sent and no answer came: it may have
 *   committed. Only this one may not be answered with "nothing was written".
 */
export type WriteOutcome = 'refused' | 'not-applied' | 'unknown';

const NOT_APPLIED_SQLSTATES = new Set([
  '25006', // read_only_sql_transaction: a standby or a fenced primary
  '57014', // query_canceled: the server-side statement_timeout (a COMMIT's wait for its replica is never cancelled by it)
  '57P03', // cannot_connect_now
  '53300', // too_many_connections
  '40001', // serialization_failure: rolled back
  '40P01', // deadlock_detected: rolled back
  '28P01', // invalid_password
  '28000', // invalid_authorization_specification
  '3D000', // invalid_catalog_name
  'SR001', // the slot guard (migration 6): the row's slot is fenced for a switch to another shard
  'SR002', // the slot guard: the row's slot has moved to another shard
]);

// Failures to open a connection: no statement was sent on it.
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
const CONNECT_TIMEOUT = /timeout exceeded when trying to connect|Connection terminated due to connection timeout/;

/** Errors the StatementBatcher may isolate: the statement failed for one of its values. */
export function isRefusedValue(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23') || code === '42804');
}

export function writeOutcomeOf(error: unknown): WriteOutcome {
  if (error instanceof DeadlineExceeded || error instanceof BatchQueueFull) return 'not-applied';
  if ((error as { transactionNotCommitted?: boolean })?.transactionNotCommitted) return 'not-applied';
  if (isRefusedValue(error)) return 'refused';
  const { code, message } = (error ?? {}) as { code?: string; message?: string };
  if (code && (NOT_APPLIED_SQLSTATES.has(code) || CONNECT_ERRORS.has(code))) return 'not-applied';
  if (message && CONNECT_TIMEOUT.test(message)) return 'not-applied';
  return 'unknown';
}
