import { randomBytes } from 'node:crypto';
import { Topics, type ClickEvent } from '@shortener/contracts';
import type { KeyedEvent } from './event-producer';

/** Where clicks go first: Kafka. `send` settles only once the producer knows the outcome. */
export interface ClickSink {
  send(events: KeyedEvent[]): Promise<void>;
}

/**
 * Where clicks go when Kafka cannot take them: the writer, which adds them straight to the
 * owning primaries, claiming `batchId` in the same transaction (a retry of the same batch
 * adds nothing twice). A rejection with `sent === false` says the batch certainly never
 * reached the writer; any other rejection leaves the outcome unknown.
 */
export interface ClickFallback {
  apply(batchId: string, counts: [string, number][]): Promise<void>;
}

export interface ClickBatcherReport {
  /** Clicks recorded and not yet delivered (to Kafka or to the writer). */
  pending: number;
  /** Clicks dropped since the last report (more distinct codes than the batcher may hold). */
  dropped: number;
}

export interface ClickBatcherOptions {
  flushIntervalMs?: number;
  /** Distinct codes held at most (memory bound); a click of a further code is dropped and reported. */
  maxDistinctCodes?: number;
  fallback?: ClickFallback;
  onError?: (error: Error, where: 'kafka' | 'fallback') => void;
  /** After every flush: what waits, what was dropped (for the metrics and the log). */
  onReport?: (report: ClickBatcherReport) => void;
  newBatchId?: () => string;
}

/**
 * Counts redirects in memory and sends one event per code per flush, so the redirect path
 * only increments a map entry. Counts stay exact through a Kafka outage:
 * - a flush waits for the producer's own outcome (no timeout of ours, after which the
 *   producer could still deliver the events and a second delivery would count them twice);
 * - a batch Kafka refused goes to the fallback (the writer) under a batch id, and a batch
 *   whose fallback outcome is unknown is retried with the same id, before anything newer;
 * - a batch that certainly reached nobody merges back into the pending counts.
 * Memory is bounded by `maxDistinctCodes` (pending and the batch in hand each); a click that
 * does not fit is never dropped silently: it is counted in the next report.
 */
export class ClickBatcher {
  private pending = new Map<string, number>();
  /** The batch being sent right now (counted as pending). */
  private inHand: Map<string, number> | null = null;
  /** A batch handed to the fallback whose outcome is unknown: retried with the same id. */
  private sealed: { id: string; counts: Map<string, number>; maybeApplied: boolean } | null = null;
  private droppedSinceReport = 0;
  private droppedTotal = 0;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private readonly flushIntervalMs: number;
  private readonly maxDistinctCodes: number;
  private readonly newBatchId: () => string;

  constructor(
    private readonly sink: ClickSink,
    private readonly options: ClickBatcherOptions = {},
  ) {
    this.flushIntervalMs = options.flushIntervalMs ?? 500;
    this.maxDistinctCodes = options.maxDistinctCodes ?? 100_000;
    this.newBatchId = options.newBatchId ?? (() => randomBytes(12).toString('base64url'));
  }

  record(code: string): void {
    const count = this.pending.get(code);
    if (count !== undefined) this.pending.set(code, count + 1);
    else if (this.pending.size < this.maxDistinctCodes) this.pending.set(code, 1);
    else this.drop(1);
  }

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.flushIntervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }

  get pendingCodes(): number {
    return this.pending.size;
  }

  /** Clicks recorded and not yet delivered anywhere (the `awaiting delivery` metric). */
  get pendingClicks(): number {
    return sum(this.pending) + sum(this.inHand) + sum(this.sealed?.counts ?? null);
  }

  /** Clicks dropped since the start (never more than reported). */
  get droppedClicks(): number {
    return this.droppedTotal;
  }

  flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    if (this.pending.size === 0 && !this.sealed) {
      this.report();
      return Promise.resolve();
    }
    this.flushing = this.deliver().finally(() => {
      this.flushing = null;
      this.report();
    });
    return this.flushing;
  }

  private async deliver(): Promise<void> {
    // An unknown outcome first: until the writer answers for it, it may not go to Kafka too.
    if (this.sealed && this.options.fallback && !(await this.applySealed(this.sealed, this.options.fallback))) return;
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    this.inHand = batch;
    const at = new Date().toISOString();
    const events = [...batch].map(([code, count]) => ({
      topic: Topics.urlClicks,
      key: code,
      value: JSON.stringify({ type: 'url.clicked', version: 1, code, count, at } satisfies ClickEvent),
    }));
    try {
      await this.sink.send(events);
      this.inHand = null;
      return;
    } catch (error) {
      this.options.onError?.(error as Error, 'kafka');
    }
    this.inHand = null;
    const fallback = this.options.fallback;
    if (!fallback) {
      this.mergeBack(batch);
      return;
    }
    this.sealed = { id: this.newBatchId(), counts: batch, maybeApplied: false };
    await this.applySealed(this.sealed, fallback);
  }

  /**
   * True when the sealed batch is settled: applied, or certainly never applied (every
   * attempt failed before reaching the writer) and merged back. One attempt with an
   * unknown outcome keeps it sealed until the writer confirms it under its id.
   */
  private async applySealed(sealed: { id: string; counts: Map<string, number>; maybeApplied: boolean }, fallback: ClickFallback): Promise<boolean> {
    try {
      await fallback.apply(sealed.id, [...sealed.counts]);
      this.sealed = null;
      return true;
    } catch (error) {
      this.options.onError?.(error as Error, 'fallback');
      if ((error as { sent?: boolean }).sent !== false) sealed.maybeApplied = true;
      else if (!sealed.maybeApplied) {
        this.sealed = null;
        this.mergeBack(sealed.counts);
      }
      return false;
    }
  }

  private mergeBack(batch: Map<string, number>): void {
    for (const [code, count] of batch) {
      const current = this.pending.get(code);
      if (current !== undefined) this.pending.set(code, current + count);
      else if (this.pending.size < this.maxDistinctCodes) this.pending.set(code, count);
      else this.drop(count);
    }
  }

  private drop(clicks: number): void {
    this.droppedSinceReport += clicks;
    this.droppedTotal += clicks;
  }

  private report(): void {
    const dropped = this.droppedSinceReport;
    this.droppedSinceReport = 0;
    this.options.onReport?.({ pending: this.pendingClicks, dropped });
  }
}

function sum(counts: Map<string, number> | null): number {
  let total = 0;
  if (counts) for (const count of counts.values()) total += count;
  return total;
}
