/**
 * The wire format between the gateway and the writer and readers: one JSON object per
 * line (JSON.stringify never writes a raw newline). A request carries an id the reply
 * repeats, so one connection carries many calls at once.
 */
export interface RequestFrame {
  id: number;
  pattern: string;
  data: unknown;
}

export type ReplyFrame = { id: number; response: unknown } | { id: number; err: string };

/** Splits a byte stream into lines; a partial line waits for the rest. */
export class LineReader {
  private partial = '';

  constructor(private readonly maxLineLength = 16 * 1024 * 1024) {}

  push(chunk: string): string[] {
    const text = this.partial + chunk;
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    if (this.partial.length > this.maxLineLength) {
      this.partial = '';
      throw new RangeError(`an RPC frame is longer than ${this.maxLineLength} characters`);
    }
    return lines;
  }
}

/**
 * Frames written in one turn of the event loop leave in one write: one system call
 * (and one wake-up of the peer) for a burst of calls or replies instead of one each.
 */
export class CorkedWriter {
  private pending: string[] = [];
  private scheduled = false;

  constructor(private readonly write: (text: string) => void) {}

  send(frame: object): void {
    this.pending.push(JSON.stringify(frame) + '\n');
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const text = this.pending.join('');
      this.pending = [];
      if (text) this.write(text);
    });
  }

  discard(): void {
    this.pending = [];
  }
}
