import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The wire format between the gateway and the writer and readers: one JSON object per
 * line (JSON.stringify never writes a raw newline). A request carries an id the reply
 * repeats, so one connection carries many calls at once.
 *
 * A connection starts with a challenge from the server and the client's proof that it
 * holds the shared secret (an HMAC of the challenge, so the secret never crosses the
 * wire and a recorded proof is worth nothing on another connection); the server reads no
 * request before that.
 */
export interface RequestFrame {
  id: number;
  pattern: string;
  data: unknown;
  /** Milliseconds the caller still waits, counted from when the frame was written. */
  deadline?: number;
}

export type ReplyFrame = { id: number; response: unknown } | { id: number; err: string; notHandled?: true };

/** First line of the server. */
export interface ChallengeFrame {
  challenge: string;
}

/** First line of the client. */
export interface AuthFrame {
  auth: string;
}

/** The server is shutting down: no new call on this connection; those in flight are still answered. */
export interface GoAwayFrame {
  goaway: true;
}

export function authProof(secret: string, challenge: string): string {
  return createHmac('sha256', secret).update(`shortener-rpc/1:${challenge}`).digest('base64url');
}

/** Constant-time check of a client's proof, whatever its length or content. */
export function isValidProof(secret: string, challenge: string, presented: unknown): boolean {
  if (typeof presented !== 'string') return false;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(authProof(secret, challenge)), digest(presented));
}

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
 * `write` answers false when the socket's buffer is full (Node's backpressure signal).
 */
export class CorkedWriter {
  private pending: string[] = [];
  private scheduled = false;

  constructor(private readonly write: (text: string) => boolean | void) {}

  send(frame: object): void {
    this.pending.push(JSON.stringify(frame) + '\n');
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Writes what is pending now (also used before a connection is closed on purpose). */
  flush(): void {
    this.scheduled = false;
    const text = this.pending.join('');
    this.pending = [];
    if (text) this.write(text);
  }

  discard(): void {
    this.pending = [];
  }
}
