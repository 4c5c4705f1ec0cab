import { connect, type Socket } from 'node:net';
import { authProof, CorkedWriter, LineReader, type ReplyFrame } from './frames';

/**
 * The call never got an answer: the peer is down, refused, closed the connection or ran
 * out of time. `sent` says whether the request may have reached a handler: false means
 * it certainly did not (no connection, refused by an overloaded or stopping service), so
 * nothing it asked for was done.
 */
export class RpcTransportError extends Error {
  constructor(
    message: string,
    readonly sent: boolean,
  ) {
    super(message);
    this.name = 'RpcTransportError';
  }
}

export interface RpcClientOptions {
  /** Shared secret of the service (RPC_SECRET). */
  secret: string;
  /** Consecutive calls without an answer in time after which the connection is dropped (a frozen or wedged peer). */
  maxConsecutiveTimeouts?: number;
  /** Bytes the socket may hold unsent before new calls are refused rather than queued (write backpressure). */
  maxBufferedBytes?: number;
  keepAliveMs?: number;
}

interface Waiting {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
  socket: Socket;
}

interface Link {
  socket: Socket;
  writer: CorkedWriter;
}

/**
 * One persistent TCP connection to a service, multiplexing calls by id. It connects (and
 * authenticates) on first use and again after the connection is lost or the service said
 * it is going away; every call has its own deadline, which travels with it, so a frozen
 * peer costs a caller no more than that.
 */
export class RpcClient {
  private link: Link | null = null;
  private connecting: Promise<Link> | null = null;
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private closed = false;
  private consecutiveTimeouts = 0;
  private readonly limits: Required<Omit<RpcClientOptions, 'secret'>>;

  constructor(
    readonly address: { host: string; port: number },
    private readonly options: RpcClientOptions,
  ) {
    if (!options.secret) throw new Error('RpcClient needs a secret');
    this.limits = {
      maxConsecutiveTimeouts: options.maxConsecutiveTimeouts ?? 3,
      maxBufferedBytes: options.maxBufferedBytes ?? 8 * 1024 * 1024,
      keepAliveMs: options.keepAliveMs ?? 10_000,
    };
  }

  async call<T>(pattern: string, data: unknown, timeoutMs: number): Promise<T> {
    if (this.closed) throw new RpcTransportError(`${this.describe()}: the client is closed`, false);
    const deadline = Date.now() + timeoutMs;
    const link = this.link && !this.link.socket.destroyed ? this.link : await this.connected(timeoutMs);
    if (link.socket.destroyed) throw new RpcTransportError(`${this.describe()} ${pattern}: connection closed`, false);
    if (link.socket.writableLength > this.limits.maxBufferedBytes) {
      throw new RpcTransportError(`${this.describe()} ${pattern}: the connection is congested`, false);
    }
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const left = Math.max(1, deadline - Date.now());
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new RpcTransportError(`${this.describe()} ${pattern}: no answer within ${timeoutMs} ms`, true));
        // A peer that stopped answering altogether: drop it rather than pile calls on it.
        if (++this.consecutiveTimeouts >= this.limits.maxConsecutiveTimeouts) {
          this.consecutiveTimeouts = 0;
          if (this.link === link) this.link = null;
          link.socket.destroy();
        }
      }, left);
      this.waiting.set(id, { resolve: resolve as (value: unknown) => void, reject, timer, socket: link.socket });
      link.writer.send({ id, pattern, data, deadline: left });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.link?.socket.destroy();
    this.failWaiting(null, (socket) => new RpcTransportError(`${this.describe()}: the client is closed`, socket !== null));
  }

  private connected(timeoutMs: number): Promise<Link> {
    this.connecting ??= new Promise<Link>((resolve, reject) => {
      const socket = connect({
        host: this.address.host,
        port: this.address.port,
        noDelay: true,
        keepAlive: true,
        keepAliveInitialDelay: this.limits.keepAliveMs,
      });
      const fail = (why: string) => {
        clearTimeout(timer);
        reject(new RpcTransportError(`${this.describe()}: ${why}`, false));
      };
      const timer = setTimeout(() => {
        fail(`connect timed out after ${timeoutMs} ms`);
        socket.destroy();
      }, timeoutMs);
      const reader = new LineReader();
      let ready = false;
      let refused = false;
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => {
        try {
          for (const line of reader.push(chunk)) {
            if (!line) continue;
            const frame = JSON.parse(line) as ReplyFrame & { challenge?: string; goaway?: true };
            if (!ready) {
              if (typeof frame.challenge !== 'string') throw new Error('the service did not start with a challenge');
              const writer = new CorkedWriter((text) => socket.write(text));
              // The proof goes first on the wire; calls written in this turn follow it.
              socket.write(JSON.stringify({ auth: authProof(this.options.secret, frame.challenge) }) + '\n');
              ready = true;
              clearTimeout(timer);
              this.link = { socket, writer };
              resolve(this.link);
            } else if (frame.id === 0 && 'err' in frame) {
              // The service refused this connection (a wrong secret): none of its calls ran.
              refused = true;
            } else if (frame.goaway) {
              // The service is draining: new calls open a new connection; this one still delivers its answers.
              if (this.link?.socket === socket) this.link = null;
            } else this.settle(frame);
          }
        } catch (error) {
          // A peer that speaks something else: drop the connection, its calls fail.
          socket.destroy(error as Error);
        }
      });
      // 'close' follows 'error' too: whatever was waiting on this connection fails now.
      socket.on('error', (error) => fail(error.message));
      socket.on('close', () => {
        fail('connection closed before it was ready');
        if (this.link?.socket === socket) {
          this.link.writer.discard();
          this.link = null;
        }
        this.failWaiting(socket, () => new RpcTransportError(`${this.describe()}: ${refused ? 'refused: unauthenticated' : 'connection closed'}`, !refused));
      });
    }).finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private settle(frame: ReplyFrame): void {
    const waiting = this.waiting.get(frame.id);
    if (!waiting) return; // answered after its deadline, or the refusal of an unauthenticated connection (id 0)
    this.consecutiveTimeouts = 0;
    this.waiting.delete(frame.id);
    clearTimeout(waiting.timer);
    if ('err' in frame) waiting.reject(new RpcTransportError(`${this.describe()}: ${frame.err}`, !frame.notHandled));
    else waiting.resolve(frame.response);
  }

  /** Fails the calls waiting on one socket (or on every socket). */
  private failWaiting(socket: Socket | null, error: (socket: Socket | null) => Error): void {
    for (const [id, waiting] of this.waiting) {
      if (socket && waiting.socket !== socket) continue;
      clearTimeout(waiting.timer);
      this.waiting.delete(id);
      waiting.reject(error(waiting.socket));
    }
  }

  private describe(): string {
    return `${this.address.host}:${this.address.port}`;
  }
}
