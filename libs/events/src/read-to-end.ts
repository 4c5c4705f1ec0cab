import type { Kafka } from 'kafkajs';
import { withTimeout } from './event-producer';

/** A follower of one topic that reports every offset it has got past. */
export interface TopicFollower {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Runs a follower made by `follow` until it has read `topic` (one partition) to the end
 * it had when the read began, then stops it: what a monitor taking the lead needs of the
 * compacted topics its predecessor wrote. Those records are written in transactions, so
 * the last offset below the high watermark is usually a commit or abort marker, which no
 * message shows (the followers report batches' last offsets, which count them). Returns
 * false for an empty topic, without starting the follower.
 */
export async function readToEnd(
  kafka: Kafka,
  topic: string,
  follow: (onOffset: (offset: number) => void) => TopicFollower,
  timeoutMs = 8000,
): Promise<boolean> {
  const admin = kafka.admin();
  let lastOffset: number;
  await withTimeout(admin.connect(), timeoutMs, 'kafka admin connect');
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    lastOffset = Math.max(-1, ...offsets.map((offset) => Number(offset.high) - 1));
  } finally {
    await admin.disconnect();
  }
  if (lastOffset < 0) return false;
  let reached: () => void;
  const caughtUp = new Promise<void>((resolve) => (reached = resolve));
  const follower = follow((offset) => offset >= lastOffset - 1 && setTimeout(reached, 300));
  try {
    await withTimeout(
      follower.start().then(() => caughtUp),
      timeoutMs,
      `reading ${topic}`,
    );
    return true;
  } finally {
    await follower.stop();
  }
}
