import { Kafka, logLevel, type KafkaConfig, type LogEntry } from 'kafkajs';

export type EventLog = (level: 'error' | 'warn' | 'info' | 'debug', message: string, extra: object) => void;

const LEVELS: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [logLevel.ERROR]: 'error',
  [logLevel.WARN]: 'warn',
  [logLevel.INFO]: 'info',
  [logLevel.DEBUG]: 'debug',
};

/** A Kafka client whose own logs go to the service's structured log. */
export function createKafka(brokers: { host: string; port: number }[], clientId: string, log: EventLog, overrides: Partial<KafkaConfig> = {}): Kafka {
  return new Kafka({
    clientId,
    brokers: brokers.map(({ host, port }) => `${host}:${port}`),
    connectionTimeout: 2000,
    requestTimeout: 5000,
    retry: { initialRetryTime: 200, maxRetryTime: 2000, retries: 3 },
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ level, label, log: entry }: LogEntry) => {
        const { message, ...extra } = entry;
        log(LEVELS[level] ?? 'info', `kafka ${label}: ${message}`, extra);
      },
    ...overrides,
  });
}
