import { DomainError, type RpcResult } from '@shortener/contracts';
import { RpcClient } from '@shortener/rpc';

/** The request never reached a service that answered (down, frozen, refused). */
export class TransportError extends Error {}

/** One persistent TCP connection to a writer or reader, with a deadline on every call. */
export class RpcChannel {
  private readonly client: RpcClient;

  constructor(readonly address: { host: string; port: number }) {
    this.client = new RpcClient(address);
  }

  async call<T>(pattern: string, payload: unknown, timeoutMs: number): Promise<T> {
    let result: RpcResult<T>;
    try {
      result = await this.client.call<RpcResult<T>>(pattern, payload, timeoutMs);
    } catch (error) {
      throw new TransportError(`${this.address.host}:${this.address.port} ${pattern}: ${(error as Error).message ?? error}`);
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
    let lastError: Error | null = null;
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
        if (error instanceof TransportError) this.downUntil[index] = Date.now() + this.penaltyMs;
        lastError = error as Error;
      }
    }
    throw new DomainError('dependency-unavailable', `no reader answered: ${lastError?.message ?? 'none configured'}`, {
      retryAfterSeconds: 1,
    });
  }

  get healthyCount(): number {
    const now = Date.now();
    return this.downUntil.filter((until) => until <= now).length;
  }

  async close(): Promise<void> {
    await Promise.all(this.channels.map((channel) => channel.close()));
  }
}
