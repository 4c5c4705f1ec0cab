// Starts a reference server (bench/references/*.mjs) as a child process and returns its
// URL, pid and a stop().
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const DIR = join(import.meta.dirname, 'references');

export const REFERENCES = {
  redisFloor: 'redis-floor.mjs',
  pgSelect: 'pg-select.mjs',
  pgInsert: 'pg-insert.mjs',
};

export async function startReference(name, { stack, topology }) {
  const child = spawn(process.execPath, [join(DIR, REFERENCES[name])], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: {
      ...process.env,
      BENCH_REDIS_HOST: stack.redis.host,
      BENCH_REDIS_PORT: String(stack.redis.port),
      BENCH_PG_PASSWORD: stack.pgPassword,
      BENCH_TOPOLOGY: JSON.stringify(topology),
    },
  });
  const port = await new Promise((resolvePort, reject) => {
    const timer = setTimeout(() => reject(new Error(`reference ${name} did not start within 90 s`)), 90_000);
    child.once('exit', (code) => reject(new Error(`reference ${name} exited with ${code}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const match = /^listening (\d+)$/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolvePort(Number(match[1]));
      }
    });
  });
  const exited = new Promise((done) => child.on('exit', done));
  return {
    name,
    pid: child.pid,
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
