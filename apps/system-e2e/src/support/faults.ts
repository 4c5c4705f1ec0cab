/**
 * Fault injection on a local stack (tools/README.md): while $STACK_DIR/run/<name>.hold
 * exists, the launcher's supervisor keeps a dead process down; removing the file brings
 * it back (after the supervisor's backoff).
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Kafka } from 'kafkajs';
import { eventually, kafkaClient, redisClient, type StackHandle } from './stack';
import { sleep } from './http';

export function pidOf(stack: StackHandle, name: string): number | null {
  const file = join(stack.stackDir, 'run', `${name}.pid`);
  if (!existsSync(file)) return null;
  const pid = Number(readFileSync(file, 'utf8').trim());
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function holdFile(stack: StackHandle, name: string): string {
  return join(stack.stackDir, 'run', `${name}.hold`);
}

/**
 * Holds the process down and stops it: SIGTERM, then SIGKILL if it is still there after
 * `graceMs` (0: SIGKILL at once). Returns the pid it stopped.
 */
export async function stopHeld(stack: StackHandle, name: string, { graceMs = 5000 } = {}): Promise<number> {
  writeFileSync(holdFile(stack, name), `held by system-e2e at ${new Date().toISOString()}\n`);
  const pid = pidOf(stack, name);
  if (pid === null) throw new Error(`no pid file for ${name}`);
  if (!isAlive(pid)) return pid;
  process.kill(pid, graceMs === 0 ? 'SIGKILL' : 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(100);
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  const killDeadline = Date.now() + 30_000; // a killed process stays visible until the supervisor reaps it
  while (isAlive(pid) && Date.now() < killDeadline) await sleep(100);
  if (isAlive(pid)) throw new Error(`${name} (pid ${pid}) did not die`);
  return pid;
}

/** Removes the hold and waits until the supervisor started a new process (a new, live pid). */
export async function release(stack: StackHandle, name: string, oldPid: number | null, timeoutMs = 60_000): Promise<number> {
  rmSync(holdFile(stack, name), { force: true });
  return eventually(
    async () => {
      const pid = pidOf(stack, name);
      if (pid === null || pid === oldPid || !isAlive(pid)) throw new Error(`${name} not restarted yet (pid file: ${pid})`);
      return pid;
    },
    { timeoutMs, intervalMs: 250 },
  );
}

export function isHeld(stack: StackHandle, name: string): boolean {
  return existsSync(holdFile(stack, name));
}

export async function redisAnswers(stack: StackHandle, timeoutMs = 30_000): Promise<void> {
  await eventually(
    async () => {
      const redis = redisClient(stack);
      redis.on('error', () => undefined);
      try {
        return (await redis.ping()) === 'PONG';
      } finally {
        redis.disconnect();
      }
    },
    { timeoutMs, intervalMs: 300 },
  );
}

export async function kafkaAnswers(stack: StackHandle, timeoutMs = 60_000): Promise<void> {
  await eventually(
    async () => {
      const admin = kafkaClient(stack, `system-e2e-probe-${process.pid}`).admin();
      try {
        await admin.connect();
        const metadata = await admin.fetchTopicMetadata({ topics: ['url.events', 'url.clicks'] });
        return metadata.topics.every((topic) => topic.partitions.length > 0 && topic.partitions.every((partition) => partition.leader >= 0));
      } finally {
        await admin.disconnect().catch(() => undefined);
      }
    },
    { timeoutMs, intervalMs: 1000 },
  );
}

export async function httpReady(port: number, timeoutMs = 60_000): Promise<void> {
  await eventually(async () => (await fetch(`http://127.0.0.1:${port}/health/ready`, { signal: AbortSignal.timeout(2000) })).status === 200, {
    timeoutMs,
    intervalMs: 500,
  });
}

export interface TopicMessage {
  key: string | null;
  value: any;
  partition: number;
  offset: string;
}

/**
 * Reads `topic` from the beginning with a fresh consumer group and returns the messages
 * whose key is in `keys`, once `done` says enough of them arrived (or throws at the
 * timeout, naming what it saw).
 */
export async function readTopicUntil(
  stack: StackHandle,
  topic: string,
  keys: Iterable<string>,
  done: (messages: TopicMessage[]) => boolean,
  timeoutMs = 30_000,
  kafka: Kafka = kafkaClient(stack, `system-e2e-reader-${process.pid}`),
): Promise<TopicMessage[]> {
  const wanted = new Set(keys);
  const deadline = Date.now() + timeoutMs;
  let seen: TopicMessage[] = [];
  let lastError: unknown = null;
  // A broker that just came back may refuse the first connections: start over (a fresh
  // group, from the beginning) until the deadline.
  while (Date.now() < deadline) {
    seen = [];
    const consumer = kafka.consumer({ groupId: `system-e2e-${Date.now()}-${Math.random().toString(36).slice(2)}`, sessionTimeout: 10_000 });
    let finished!: () => void;
    let crashed!: (error: unknown) => void;
    const outcome = new Promise<'done' | 'crashed'>((resolve) => {
      finished = () => resolve('done');
      crashed = (error) => {
        lastError = error;
        resolve('crashed');
      };
    });
    consumer.on(consumer.events.CRASH, (event) => crashed(event.payload.error));
    try {
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ message, partition }) => {
          const key = message.key?.toString() ?? null;
          if (key === null || !wanted.has(key)) return;
          const raw = message.value?.toString() ?? '';
          let value: unknown = raw;
          try {
            value = JSON.parse(raw);
          } catch {
            /* kept as the raw string: the test says it is not JSON */
          }
          seen.push({ key, value, partition, offset: message.offset });
          if (done(seen)) finished();
        },
      });
      const result = await Promise.race([outcome, sleep(Math.max(0, deadline - Date.now())).then(() => 'timeout' as const)]);
      if (result === 'done' || done(seen)) return seen;
      if (result === 'timeout') break;
    } catch (error) {
      lastError = error;
    } finally {
      await consumer.disconnect().catch(() => undefined);
    }
    await sleep(1000);
  }
  throw new Error(
    `${topic}: condition not met in ${timeoutMs} ms; messages seen for ${[...wanted].join(',')}: ${JSON.stringify(seen)}` +
      (lastError ? `; last consumer error: ${(lastError as Error).message}` : ''),
  );
}
