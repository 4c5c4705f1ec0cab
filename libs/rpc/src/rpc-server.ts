import { randomBytes } from 'node:crypto';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { BaseRpcContext, Server, type CustomTransportStrategy, type MessageHandler } from '@nestjs/microservices';
import { isObservable, lastValueFrom } from 'rxjs';
import { CorkedWriter, isValidProof, LineReader, type RequestFrame } from './frames';

export interface LineRpcServerOptions {
  host: string;
  port: number;
  /** Shared secret every caller must prove it holds (RPC_SECRET). */
  secret: string;
  /** Calls of one connection handled at once; more wait, and past that the socket is no longer read (TCP backpressure). */
  maxInFlightPerConnection?: number;
  /** A connection that has not authenticated by then is closed. */
  authTimeoutMs?: number;
  /** On shutdown, calls in flight get this long to finish before their connections are closed. */
  drainTimeoutMs?: number;
  keepAliveMs?: number;
}

/** What a handler can learn about the call besides its payload (`@Ctx()`). */
export class LineRpcContext extends BaseRpcContext<[string, number]> {
  get pattern(): string {
    return this.args[0];
  }

  /** Epoch ms after which the caller no longer waits (Infinity when it sent none). */
  get deadline(): number {
    return this.args[1];
  }
}

interface Connection {
  socket: Socket;
  writer: CorkedWriter;
  authenticated: boolean;
  queue: RequestFrame[];
  inFlight: number;
  writeBlocked: boolean;
}

/**
 * The server side of RpcClient as a Nest transport: @MessagePattern handlers answer
 * newline-delimited JSON frames over TCP. Replies written in one turn of the event loop
 * leave in one write. Callers authenticate first; each connection runs a bounded number
 * of handlers and stops reading while it is at the bound or its replies are not being
 * read; on close, calls in flight finish before the connections go.
 */
export class LineRpcServer extends Server implements CustomTransportStrategy {
  private server: NetServer | null = null;
  private readonly connections = new Set<Connection>();
  // Handlers by the exact pattern string a client sends: Nest's own lookup normalises
  // (and tries to JSON-parse) the pattern on every message.
  private readonly handlers = new Map<string, MessageHandler>();
  private draining = false;
  private drained: (() => void) | null = null;
  private readonly limits: Required<Omit<LineRpcServerOptions, 'host' | 'port' | 'secret'>>;
  /** Connections refused for a missing or wrong proof. */
  refusedConnections = 0;

  constructor(private readonly options: LineRpcServerOptions) {
    super();
    if (!options.secret) throw new Error('LineRpcServer needs a secret');
    this.limits = { maxInFlightPerConnection: 256, authTimeoutMs: 5000, drainTimeoutMs: 10_000, keepAliveMs: 10_000, ...stripUndefined(options) };
  }

  listen(callback: (error?: unknown) => void): void {
    const server = createServer((socket) => this.accept(socket));
    server.once('error', (error) => callback(error));
    server.listen(this.options.port, this.options.host, () => callback());
    this.server = server;
  }

  /** Stops accepting, tells every caller to go away, lets the calls in flight finish, then closes. */
  async close(): Promise<void> {
    this.draining = true;
    this.server?.close();
    this.server = null;
    for (const connection of this.connections) {
      connection.writer.send({ goaway: true });
      // Calls that were still waiting for a slot are answered "not handled": the caller may send them elsewhere.
      for (const frame of connection.queue.splice(0)) connection.writer.send({ id: frame.id, err: 'the service is shutting down', notHandled: true });
    }
    if (this.busy()) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.limits.drainTimeoutMs);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    for (const connection of this.connections) {
      connection.writer.flush();
      connection.socket.end();
      connection.socket.destroySoon();
    }
  }

  on(): void {
    throw new Error('LineRpcServer has no events to subscribe to');
  }

  unwrap<T>(): T {
    return this.server as T;
  }

  private busy(): boolean {
    for (const connection of this.connections) if (connection.inFlight > 0) return true;
    return false;
  }

  private accept(socket: Socket): void {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, this.limits.keepAliveMs);
    socket.setEncoding('utf8');
    if (this.draining) {
      socket.destroy();
      return;
    }
    const connection: Connection = {
      socket,
      writer: new CorkedWriter((text) => {
        if (socket.destroyed) return;
        if (!socket.write(text)) {
          connection.writeBlocked = true;
          this.updateReading(connection);
        }
      }),
      authenticated: false,
      queue: [],
      inFlight: 0,
      writeBlocked: false,
    };
    this.connections.add(connection);
    const challenge = randomBytes(24).toString('base64url');
    socket.write(JSON.stringify({ challenge }) + '\n');
    const authTimer = setTimeout(() => this.refuse(connection, 'no authentication in time'), this.limits.authTimeoutMs);
    const reader = new LineReader();
    socket.on('drain', () => {
      connection.writeBlocked = false;
      this.updateReading(connection);
    });
    socket.on('data', (chunk: string) => {
      let lines: string[];
      try {
        lines = reader.push(chunk);
      } catch (error) {
        this.logger.error(`closing an RPC connection: ${(error as Error).message}`);
        socket.destroy();
        return;
      }
      for (const line of lines) {
        if (!line || socket.destroyed) continue;
        let frame: RequestFrame & { auth?: unknown };
        try {
          frame = JSON.parse(line);
        } catch {
          this.logger.error('closing an RPC connection that sent a frame that is not JSON');
          socket.destroy();
          return;
        }
        if (!connection.authenticated) {
          if (!isValidProof(this.options.secret, challenge, frame?.auth)) {
            this.refuse(connection, 'a wrong or missing secret');
            return;
          }
          clearTimeout(authTimer);
          connection.authenticated = true;
          continue;
        }
        if (typeof frame?.id !== 'number' || typeof frame.pattern !== 'string') {
          this.logger.error('closing an RPC connection that sent a frame without id or pattern');
          socket.destroy();
          return;
        }
        if (this.draining) connection.writer.send({ id: frame.id, err: 'the service is shutting down', notHandled: true });
        else connection.queue.push(frame);
      }
      this.pump(connection);
    });
    socket.on('error', () => undefined); // 'close' follows; the client sees its calls fail
    socket.on('close', () => {
      clearTimeout(authTimer);
      connection.writer.discard();
      connection.queue = [];
      this.connections.delete(connection);
      this.settleDrain();
    });
  }

  private refuse(connection: Connection, why: string): void {
    if (connection.socket.destroyed) return;
    this.refusedConnections++;
    this.logger.warn(`refused an RPC connection from ${connection.socket.remoteAddress ?? 'an unknown address'}: ${why}`);
    connection.socket.end(JSON.stringify({ id: 0, err: 'unauthenticated' }) + '\n');
    connection.socket.destroySoon();
  }

  private pump(connection: Connection): void {
    while (connection.queue.length && connection.inFlight < this.limits.maxInFlightPerConnection) {
      const frame = connection.queue.shift()!;
      connection.inFlight++;
      void this.answer(frame, connection).finally(() => {
        connection.inFlight--;
        this.pump(connection);
        this.settleDrain();
      });
    }
    this.updateReading(connection);
  }

  /** Reads the socket only while this connection has room for more calls and its replies are leaving. */
  private updateReading(connection: Connection): void {
    const full = connection.queue.length > 0 || connection.writeBlocked;
    if (full && !connection.socket.isPaused()) connection.socket.pause();
    else if (!full && connection.socket.isPaused()) connection.socket.resume();
  }

  private settleDrain(): void {
    if (this.draining && this.drained && !this.busy()) {
      const done = this.drained;
      this.drained = null;
      done();
    }
  }

  private async answer(frame: RequestFrame, connection: Connection): Promise<void> {
    let handler = this.handlers.get(frame.pattern) ?? null;
    if (!handler) {
      handler = this.getHandlerByPattern(frame.pattern);
      if (handler) this.handlers.set(frame.pattern, handler);
    }
    if (!handler) {
      connection.writer.send({ id: frame.id, err: `no handler for ${frame.pattern}`, notHandled: true });
      return;
    }
    const deadline = typeof frame.deadline === 'number' && frame.deadline > 0 ? Date.now() + frame.deadline : Infinity;
    try {
      let response: unknown = await handler(frame.data, new LineRpcContext([frame.pattern, deadline]));
      if (isObservable(response)) response = await lastValueFrom(response);
      connection.writer.send({ id: frame.id, response: response ?? null });
    } catch (error) {
      connection.writer.send({ id: frame.id, err: error instanceof Error ? error.message : String(error) });
    }
  }
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
