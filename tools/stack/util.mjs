// Small helpers shared by the stack scripts. Node built-ins only.
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createConnection } from 'node:net';
import { basename } from 'node:path';

let logFile;
let quiet = false;

export function setLogFile(file) {
  logFile = file;
}

/** Progress lines go to the launcher log only; `quiet` keeps stdout for the important ones. */
export function setQuiet(value) {
  quiet = value;
}

/** One JSON line to stdout (unless quiet and not important) and to launcher.log. */
export function log(level, msg, fields = {}, { important = false } = {}) {
  const line = JSON.stringify({ time: new Date().toISOString(), level, service: 'launcher', msg, ...fields });
  if (!quiet || important || level === 'error' || level === 'warn') process.stdout.write(`${line}\n`);
  if (logFile) {
    try {
      appendFileSync(logFile, `${line}\n`);
    } catch {
      /* the log directory may be gone during cleanup */
    }
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs a command to completion. Resolves {code, stdout, stderr}; rejects (with the output
 * in the message) on a non-zero exit unless `allowFail`.
 */
export function run(command, args, options = {}) {
  const { allowFail = false, input, timeoutMs, ...spawnOptions } = options;
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], ...spawnOptions });
    let stdout = '';
    let stderr = '';
    let timer;
    if (timeoutMs) {
      timer = setTimeout(() => {
        stderr += `\n(timed out after ${timeoutMs} ms)`;
        child.kill('SIGKILL');
      }, timeoutMs);
    }
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result = { code: code ?? (signal ? 128 : 1), stdout, stderr };
      if (result.code !== 0 && !allowFail) {
        reject(new Error(`${command} ${args.join(' ')} exited with ${code ?? signal}:\n${(stderr || stdout).trim()}`));
      } else {
        resolvePromise(result);
      }
    });
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
  });
}

/** Resolves true once something accepts TCP connections on host:port. */
export function canConnect(host, port, timeoutMs = 1000) {
  return new Promise((resolvePromise) => {
    const socket = createConnection({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolvePromise(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export async function waitFor(what, check, { timeoutMs = 60_000, intervalMs = 250 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${lastError.message}` : ''}`);
}

const STACK_PROGRAMS = new Set(['postgres', 'pg_ctl', 'pg_rewind', 'pg_basebackup', 'initdb', 'java', 'redis-server', 'redis-check-rdb', 'node']);

/** This process and its ancestors (a wrapper such as `timeout` or `npm` shares our env). */
export function ancestors(pid = process.pid) {
  const chain = [];
  let current = pid;
  while (current > 1 && chain.length < 64) {
    chain.push(current);
    try {
      const stat = readFileSync(`/proc/${current}/stat`, 'utf8');
      current = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      break;
    }
  }
  return chain;
}

export function isAlive(pid) {
  if (!pid || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

/**
 * Every live process that belongs to the stack in `stackDir`: started by the launcher
 * (SHORTENER_STACK_DIR in its environment), with the directory in its command line
 * (pg_ctl, pg_rewind, ... run by anybody), or working in it (every postgres process).
 */
export function processesOfStack(stackDir, { exclude = ancestors() } = {}) {
  const found = [];
  if (!existsSync('/proc')) return found;
  // not STACK_DIR=: a CLI or a test runner pointed at the stack has that too
  const markers = [`SHORTENER_STACK_DIR=${stackDir}`];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (exclude.includes(pid)) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      if (cmdline.length === 0) continue; // a zombie or a kernel thread
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      if (/^State:\s+Z/m.test(status)) continue;
      let environ = [];
      try {
        environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      } catch {
        /* not ours to read */
      }
      let exe = '';
      try {
        exe = basename(readlinkSync(`/proc/${pid}/exe`));
      } catch {
        /* not ours to read */
      }
      const inEnv = environ.some((item) => markers.includes(item));
      // only programs the stack runs: a developer's `tail -f .stack/logs/...` or a shell
      // sitting in the directory is not part of it
      const inCmd = STACK_PROGRAMS.has(exe) && cmdline.some((arg) => arg === stackDir || arg.startsWith(`${stackDir}/`));
      // postgres rewrites its process title (over its command line and environment), but
      // every postgres process works in its data directory.
      let cwd = '';
      try {
        cwd = readlinkSync(`/proc/${pid}/cwd`);
      } catch {
        /* not ours to read */
      }
      const inCwd = exe === 'postgres' && (cwd === stackDir || cwd.startsWith(`${stackDir}/`));
      if (inEnv || inCmd || inCwd) found.push({ pid, cmdline: cmdline.join(' ') });
    } catch {
      /* the process ended while we looked */
    }
  }
  return found;
}
