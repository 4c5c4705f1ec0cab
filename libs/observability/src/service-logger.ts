import pino, { type DestinationStream, type Logger } from 'pino';

/** Fields that carry credentials: never written, wherever they appear in a log line's first two levels. */
const SECRET_FIELDS = ['password', 'manageToken', 'token', 'adminToken', 'apiKey', 'secret', 'rpcSecret', 'secretHash', 'connectionString'];

export const REDACTED_LOG_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'authorization',
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((field) => `*.${field}`),
];

export interface ServiceLoggerOptions {
  service: string;
  level: string;
  /** Extra fields on every line (the monitor's id). */
  base?: Record<string, unknown>;
  /** Where lines go; stdout when absent. */
  destination?: DestinationStream;
}

/**
 * The one logger of a service: JSON lines with the service, pid and an ISO time, and
 * credentials replaced by "[redacted]". Nest's logger and the Kafka client's log through it.
 */
export function createServiceLogger(options: ServiceLoggerOptions): Logger {
  const settings = {
    level: options.level,
    base: { service: options.service, pid: process.pid, ...options.base },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACTED_LOG_PATHS, censor: '[redacted]' },
  };
  return options.destination ? pino(settings, options.destination) : pino(settings);
}
