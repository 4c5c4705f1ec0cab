import { DomainError, OutcomeUnknown, type RpcResult } from '@shortener/contracts';
import { RpcClient, RpcTransportError } from '@shortener/rpc';

/**
 * The request never got an answer from a service (down, frozen, refused, shutting down).
 * `sent` is false when it certainly never reached a handler: then nothing it asked for was
 * done. The message names the peer's address: for logs only, never for a client.
 */
export class TransportError extends Error {
  constructor(
    message: string,
    readonly sent = true,
  ) {
    super(message);
    this.name = 'TransportError';
  }
}

/** One persistent, authenticated TCP connection to a writer or reader, with a deadline on every call. */
export class RpcChannel {
  private readonly client: RpcClient;

  constructor(
    readonly address: { host: string; port: number },
    secret: string,
  ) {
    this.client = new RpcClient(address, { secret });
  }

  async call<T>(pattern: string, payload: unknown, timeoutMs: number): Promise<T> {
    let result: RpcResult<T>;
    try {
      result = await this.client.call<RpcResult<T>>(pattern, payload, timeoutMs);
    } catch (error) {
      const sent = error instanceof RpcTransportError ? error.sent : true;
      throw new TransportError(`${this.address.host}:${this.address.port} ${pattern}: ${(error as Error).message ?? error}`, sent);
    }
    if (!result.ok) throw DomainError.fromPayload(result.error);
    return result.value;
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

/**
 * Client-side balancing over the reader instances: round robin, and a reader that fails
 * to answer is skipped for a moment while the request moves on to the next one.
 */
export class ReaderPool {
  private next = 0;
  private readonly downUntil: number[];

  constructor(
    readonly channels: RpcChannel[],
    private readonly penaltyMs = 2000,
  ) {
    this.downUntil = channels.map(() => 0);
  }

  async call<T>(pattern: string, payload: unknown, timeoutMs: number): Promise<T> {
    const count = this.channels.length;
    const start = this.next++ % count;
    const now = Date.now();
    const order: number[] = [];
    for (let i = 0; i < count; i++) order.push((start + i) % count);
    // Healthy readers first, then the penalised ones as a last resort.
    order.sort((a, b) => Number(this.downUntil[a] > now) - Number(this.downUntil[b] > now));
    let transportFailures = 0;
    for (const index of order) {
      try {
        const value = await this.channels[index].call<T>(pattern, payload, timeoutMs);
        this.downUntil[index] = 0;
        return value;
      } catch (error) {
        // A reader that answers "cannot read right now" (just started, its replicas away)
        // is passed over like one that does not answer; every other answer is final.
        const unavailable = error instanceof DomainError && error.kind === 'dependency-unavailable';
        if (!(error instanceof TransportError) && !unavailable) throw error;
        if (error instanceof TransportError) {
          transportFailures++;
          this.downUntil[index] = Date.now() + this.penaltyMs;
        }
      }
    }
    // Said without the readers' addresses: this message reaches clients.
    throw new DomainError(
      'dependency-unavailable',
      transportFailures > 0 ? 'no reader answered; try again shortly' : 'the links cannot be read right now; try again shortly',
      { retryAfterSeconds: 1 },
    );
  }

  get healthyCount(): number {
    const now = Date.now();
    return this.downUntil.filter((until) => until <= now).length;
  }

  async close(): Promise<void> {
    await Promise.all(this.channels.map((channel) => channel.close()));
  }
}

/**
 * A write through the writer: a call that never reached it is a 503 (nothing was
 * written), one that reached it and got no answer a 504 (the outcome is unknown).
 */
export async function writeThrough<T>(writer: RpcChannel, pattern: string, payload: unknown, timeoutMs: number): Promise<T> {
  try {
    return await writer.call<T>(pattern, payload, timeoutMs);
  } catch (error) {
    if (error instanceof TransportError) {
      if (!error.sent) throw new DomainError('dependency-unavailable', 'the writer is not answering', { retryAfterSeconds: 2 });
      throw OutcomeUnknown();
    }
    throw error;
  }
}
