// The stack under test: started through the repository's own entry point
// (tools/start.mjs) in a temporary STACK_DIR on ports of its own, stopped with SIGTERM
// when the bench ends (also on failure and ctrl-c). BENCH_STACK_DIR attaches to a stack
// that is already running there instead (a development aid: nothing is started or stopped).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

export const REPO_ROOT = resolve(import.meta.dirname, '..');

// E2E_PORT_OFFSET (set by a shared machine's slot runner, like tools/test.mjs) moves every port,
// so that a bench and a test stack (or two benches) never share one.
const OFFSET = Number(process.env.E2E_PORT_OFFSET || 0);
const moved = (base) => String(base + OFFSET);

export const BENCH_PORTS = {
  PORT: moved(3500),
  PG_BASE_PORT: moved(18800),
  REDIS_PORT: moved(18779),
  KAFKA_PORT: moved(21492),
  SERVICES_BASE_PORT: moved(7600),
};

function readLine(file) {
  return readFileSync(file, 'utf8').trim();
}

/** What the bench needs to know about a running stack, from its STACK_DIR files. */
export function describeStack(stackDir) {
  const inventory = JSON.parse(readFileSync(join(stackDir, 'stack.json'), 'utf8'));
  return {
    stackDir,
    inventory,
    baseUrl: `http://127.0.0.1:${inventory.services.gateway.port}`,
    adminToken: readLine(join(stackDir, 'admin-token')),
    pgPassword: readLine(join(stackDir, 'pg-password')),
    redis: { host: inventory.redis.host, port: inventory.redis.port },
    replicationMode: inventory.replicationMode,
  };
}

/** pid of every process the stack's launcher wrote a pid file for (services, Redis, Kafka). */
export function stackPids(stackDir) {
  const run = join(stackDir, 'run');
  const pids = {};
  for (const file of readdirSync(run)) {
    if (!file.endsWith('.pid')) continue;
    const pid = Number(readLine(join(run, file)));
    if (pid > 0) pids[file.slice(0, -4)] = pid;
  }
  return pids;
}

/** The postmaster pid of a PostgreSQL node (first line of postmaster.pid), or null. */
export function postmasterPid(stackDir, node) {
  const file = join(stackDir, 'pg', node, 'postmaster.pid');
  if (!existsSync(file)) return null;
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
  return pid > 0 ? pid : null;
}

/**
 * Starts a stack and resolves once it printed `ready:`. The returned object's stop()
 * sends SIGTERM to the launcher and waits for it to exit.
 */
export async function startStack({ log, readyTimeoutMs = 15 * 60_000, extraEnv = {} } = {}) {
  const attach = process.env.BENCH_STACK_DIR;
  if (attach) {
    const stackDir = resolve(attach);
    log(`attaching to the running stack in ${stackDir} (BENCH_STACK_DIR; not started or stopped by the bench)`);
    return {
      ...describeStack(stackDir),
      startupSeconds: null,
      attached: true,
      stop: async () => undefined,
    };
  }
  const stackDir = mkdtempSync(join(tmpdir(), 'shortener-bench-'));
  const env = {
    ...process.env,
    ...BENCH_PORTS,
    PUBLIC_BASE_URL: `http://localhost:${BENCH_PORTS.PORT}`,
    STACK_DIR: stackDir,
    ADMIN_TOKEN: '',
    LOG_LEVEL: process.env.LOG_LEVEL || 'info',
    ...extraEnv,
  };
  log(`starting a stack in ${stackDir} (gateway :${env.PORT}, postgres :${env.PG_BASE_PORT}+, redis :${env.REDIS_PORT}, kafka :${env.KAFKA_PORT})`);
  const t0 = performance.now();
  const launcher = spawn(process.execPath, [join(REPO_ROOT, 'tools', 'start.mjs')], {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail = [];
  const remember = (line) => {
    tail.push(line);
    if (tail.length > 30) tail.shift();
  };
  const exited = new Promise((done) => launcher.on('exit', (code, signal) => done({ code, signal })));
  let stopping = null;
  const stop = async () => {
    if (stopping) return stopping;
    stopping = (async () => {
      if (launcher.exitCode === null && launcher.signalCode === null) {
        log('stopping the stack (SIGTERM to the launcher)');
        launcher.kill('SIGTERM');
      }
      const timer = setTimeout(() => launcher.kill('SIGKILL'), 180_000);
      await exited;
      clearTimeout(timer);
      if (!process.env.BENCH_KEEP_STACK_DIR) rmSync(stackDir, { recursive: true, force: true });
    })();
    return stopping;
  };
  const ready = new Promise((done) => {
    createInterface({ input: launcher.stdout }).on('line', (line) => {
      remember(line);
      if (line.startsWith('ready: ')) done(true);
    });
    createInterface({ input: launcher.stderr }).on('line', remember);
  });
  let timer;
  const outcome = await Promise.race([
    ready.then(() => 'ready'),
    exited.then(() => 'exited'),
    new Promise((done) => (timer = setTimeout(() => done('timeout'), readyTimeoutMs))),
  ]);
  clearTimeout(timer);
  if (outcome !== 'ready') {
    process.stderr.write(`${tail.join('\n')}\n`);
    process.env.BENCH_KEEP_STACK_DIR = '1'; // keep the logs for a look
    await stop();
    throw new Error(`the stack did not start (${outcome}); logs kept in ${stackDir}/logs`);
  }
  const startupSeconds = (performance.now() - t0) / 1000;
  log(`stack ready in ${startupSeconds.toFixed(1)} s`);
  return {
    ...describeStack(stackDir),
    startupSeconds,
    attached: false,
    stop,
    launcherPid: launcher.pid,
  };
}
