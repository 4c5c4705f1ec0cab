import { connect, type Socket } from 'node:net';
import { CorkedWriter, LineReader, type ReplyFrame } from './frames';

/** The call never got an answer: the peer is down, refused, closed the connection or ran out of time. */
export class RpcTransportError extends Error {}

interface Waiting {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * One persistent TCP connection to a service, multiplexing calls by id. It connects on
 * first use and again after the connection is lost; every call has its own deadline,
 * so a frozen peer costs a caller no more than that.
 */
export class RpcClient {
  private socket: Socket | null = null;
  private writer: CorkedWriter | null = null;
  private connecting: Promise<void> | null = null;
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private closed = false;

  constructor(readonly address: { host: string; port: number }) {}

  async call<T>(pattern: string, data: unknown, timeoutMs: number): Promise<T> {
    if (this.closed) throw new RpcTransportError(`${this.describe()}: the client is closed`);
    const deadline = Date.now() + timeoutMs;
    if (!this.socket) await this.connected(timeoutMs);
    const writer = this.writer;
    // The connection can close again between connecting and here.
    if (!writer) throw new RpcTransportError(`${this.describe()} ${pattern}: connection closed`);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.waiting.delete(id);
          reject(new RpcTransportError(`${this.describe()} ${pattern}: no answer within ${timeoutMs} ms`));
        },
        Math.max(1, deadline - Date.now()),
      );
      this.waiting.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
      writer.send({ id, pattern, data });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.socket?.destroy();
    this.failAll(new RpcTransportError(`${this.describe()}: the client is closed`));
  }

  private connected(timeoutMs: number): Promise<void> {
    this.connecting ??= new Promise<void>((resolve, reject) => {
      const socket = connect({ host: this.address.host, port: this.address.port, noDelay: true });
      const timer = setTimeout(() => socket.destroy(new Error(`connect timed out after ${timeoutMs} ms`)), timeoutMs);
      const reader = new LineReader();
      socket.setEncoding('utf8');
      socket.once('connect', () => {
        clearTimeout(timer);
        this.socket = socket;
        this.writer = new CorkedWriter((text) => socket.write(text));
        resolve();
      });
      socket.on('data', (chunk: string) => {
        try {
          for (const line of reader.push(chunk)) if (line) this.settle(JSON.parse(line) as ReplyFrame);
        } catch (error) {
          // A peer that speaks something else: drop the connection, its calls fail.
          socket.destroy(error as Error);
        }
      });
      // 'close' follows 'error' too: whatever was waiting on this connection fails now.
      socket.on('error', (error) => {
        clearTimeout(timer);
        reject(new RpcTransportError(`${this.describe()}: ${error.message}`));
      });
      socket.on('close', () => {
        clearTimeout(timer);
        if (this.socket === socket) {
          this.socket = null;
          this.writer?.discard();
          this.writer = null;
        }
        this.failAll(new RpcTransportError(`${this.describe()}: connection closed`));
      });
    }).finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private settle(frame: ReplyFrame): void {
    const waiting = this.waiting.get(frame.id);
    if (!waiting) return; // answered after its deadline
    this.waiting.delete(frame.id);
    clearTimeout(waiting.timer);
    if ('err' in frame) waiting.reject(new RpcTransportError(`${this.describe()}: ${frame.err}`));
    else waiting.resolve(frame.response);
  }

  private failAll(error: Error): void {
    for (const [id, waiting] of this.waiting) {
      clearTimeout(waiting.timer);
      this.waiting.delete(id);
      waiting.reject(error);
    }
  }

  private describe(): string {
    return `${this.address.host}:${this.address.port}`;
  }
}
