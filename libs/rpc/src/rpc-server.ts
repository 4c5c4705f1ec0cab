import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { BaseRpcContext, Server, type CustomTransportStrategy, type MessageHandler } from '@nestjs/microservices';
import { isObservable, lastValueFrom } from 'rxjs';
import { CorkedWriter, LineReader, type RequestFrame } from './frames';

/**
 * The server side of RpcClient as a Nest transport: @MessagePattern handlers answer
 * newline-delimited JSON frames over TCP. Replies written in one turn of the event loop
 * leave in one write.
 */
export class LineRpcServer extends Server implements CustomTransportStrategy {
  private server: NetServer | null = null;
  private readonly sockets = new Set<Socket>();
  // Handlers by the exact pattern string a client sends: Nest's own lookup normalises
  // (and tries to JSON-parse) the pattern on every message.
  private readonly handlers = new Map<string, MessageHandler>();

  constructor(private readonly address: { host: string; port: number }) {
    super();
  }

  listen(callback: (error?: unknown) => void): void {
    const server = createServer((socket) => this.accept(socket));
    server.once('error', (error) => callback(error));
    server.listen(this.address.port, this.address.host, () => callback());
    this.server = server;
  }

  close(): void {
    for (const socket of this.sockets) socket.destroy();
    this.server?.close();
    this.server = null;
  }

  on(): void {
    throw new Error('LineRpcServer has no events to subscribe to');
  }

  unwrap<T>(): T {
    return this.server as T;
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.setEncoding('utf8');
    const reader = new LineReader();
    const writer = new CorkedWriter((text) => {
      if (!socket.destroyed) socket.write(text);
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
        if (!line) continue;
        let frame: RequestFrame;
        try {
          frame = JSON.parse(line) as RequestFrame;
        } catch {
          this.logger.error('closing an RPC connection that sent a frame that is not JSON');
          socket.destroy();
          return;
        }
        void this.answer(frame, writer);
      }
    });
    socket.on('error', () => undefined); // 'close' follows; the client sees its calls fail
    socket.on('close', () => {
      writer.discard();
      this.sockets.delete(socket);
    });
  }

  private async answer(frame: RequestFrame, writer: CorkedWriter): Promise<void> {
    let handler = this.handlers.get(frame.pattern) ?? null;
    if (!handler) {
      handler = this.getHandlerByPattern(frame.pattern);
      if (handler) this.handlers.set(frame.pattern, handler);
    }
    if (!handler) {
      writer.send({ id: frame.id, err: `no handler for ${frame.pattern}` });
      return;
    }
    try {
      let response: unknown = await handler(frame.data, new BaseRpcContext([frame.pattern]));
      if (isObservable(response)) response = await lastValueFrom(response);
      writer.send({ id: frame.id, response: response ?? null });
    } catch (error) {
      writer.send({ id: frame.id, err: error instanceof Error ? error.message : String(error) });
    }
  }
}
