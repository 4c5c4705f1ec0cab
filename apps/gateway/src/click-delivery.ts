import { RpcPatterns } from '@shortener/contracts';
import { ClickBatcher, type ClickSink } from '@shortener/events';
import { counter, gauge } from '@shortener/observability';
import type { RpcChannel } from './rpc-channel';

const awaiting = gauge('shortener_clicks_pending', 'Clicks recorded by this gateway and not yet delivered (to Kafka, or to the writer while Kafka is away)');
const dropped = counter('shortener_clicks_dropped_total', 'Clicks this gateway could not keep (more distinct codes pending than it may hold)');
const fallbacks = counter('shortener_click_fallback_batches_total', 'Click batches Kafka refused, handed to the writer, by outcome', ['outcome']);

/** What the gateway logs about clicks (a pino logger's shape). */
export interface ClickLog {
  warn(extra: object, message: string): void;
  error(extra: object, message: string): void;
}

/** Deadline of one fallback batch on the writer (it applies one transaction per shard). */
const FALLBACK_TIMEOUT_MS = 10_000;

/**
 * The gateway's click batcher: Kafka first; a batch Kafka refused goes to the writer
 * (`clicks.apply`, idempotent per batch id), so counts stay exact through a Kafka outage of
 * any length without holding more than one batch in memory. Waiting and dropped clicks are
 * metrics (`shortener_clicks_pending`, `shortener_clicks_dropped_total`), and a drop is logged.
 */
export function createClickBatcher(kafka: ClickSink, writer: Pick<RpcChannel, 'call'>, log: ClickLog, flushIntervalMs = 1000): ClickBatcher {
  return new ClickBatcher(kafka, {
    flushIntervalMs,
    maxDistinctCodes: 100_000,
    fallback: {
      apply: async (batchId, counts) => {
        try {
          await writer.call(RpcPatterns.applyClicks, { batchId, counts }, FALLBACK_TIMEOUT_MS);
          fallbacks.labels('applied').inc();
        } catch (error) {
          fallbacks.labels((error as { sent?: boolean }).sent === false ? 'not-sent' : 'unknown').inc();
          throw error;
        }
      },
    },
    onError: (error, where) =>
      log.warn(
        { err: error.message, where },
        where === 'kafka' ? 'click flush to kafka failed; handing the batch to the writer' : 'click batch to the writer failed; retrying',
      ),
    onReport: (report) => {
      awaiting.set(report.pending);
      if (report.dropped > 0) {
        dropped.inc(report.dropped);
        log.error({ dropped: report.dropped, pending: report.pending }, 'clicks dropped: more distinct codes pending than the gateway may hold');
      }
    },
  });
}
