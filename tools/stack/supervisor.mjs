// Child processes of the launcher (services, Redis, Kafka): output to
// $STACK_DIR/logs/<name>.log, pid in $STACK_DIR/run/<name>.pid, restarted with backoff
// when they exit unexpectedly. A file $STACK_DIR/run/<name>.hold keeps a process that
// died (or was killed by a fault test) down until the file is removed.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isAlive, log, sleep } from './util.mjs';

export class Supervised {
  /**
   * @param {object} o
   * @param {string} o.name process name (log and pid file)
   * @param {string} o.command
   * @param {string[]} o.args
   * @param {object} o.env full environment
   * @param {string} o.cwd
   * @param {string} o.stackDir
   * @param {number} [o.stopTimeoutMs]
   */
  constructor(o) {
    Object.assign(this, { stopTimeoutMs: 15_000, restart: true, ...o });
    this.logFile = join(o.stackDir, 'logs', `${o.name}.log`);
    this.pidFile = join(o.stackDir, 'run', `${o.name}.pid`);
    this.holdFile = join(o.stackDir, 'run', `${o.name}.hold`);
    this.child = undefined;
    this.stopping = false;
    this.restarts = 0;
    this.exited = Promise.resolve();
  }

  start() {
    const fd = openSync(this.logFile, 'a');
    const child = spawn(this.command, this.args, {
      cwd: this.cwd,
      env: { ...this.env, SHORTENER_STACK_DIR: this.stackDir },
      stdio: ['ignore', fd, fd],
      detached: true, // own process group: the terminal's Ctrl-C reaches the launcher only
    });
    closeSync(fd);
    this.child = child;
    this.startedAt = Date.now();
    if (child.pid) writeFileSync(this.pidFile, `${child.pid}\n`);
    this.exited = new Promise((resolveExit) => {
      child.once('error', (error) => {
        log('error', 'process could not be started', { process: this.name, error: error.message }, { important: true });
      });
      child.once('exit', (code, signal) => {
        this.child = undefined;
        resolveExit({ code, signal });
        if (this.stopping) {
          rmSync(this.pidFile, { force: true });
          return;
        }
        void this.onUnexpectedExit(code, signal);
      });
    });
  }

  async onUnexpectedExit(code, signal) {
    const ranMs = Date.now() - this.startedAt;
    if (ranMs > 60_000) this.restarts = 0;
    const delayMs = Math.min(30_000, 500 * 2 ** this.restarts);
    this.restarts += 1;
    log('error', 'process exited unexpectedly', { process: this.name, code, signal, ranMs, restartInMs: delayMs, logFile: this.logFile }, { important: true });
    if (!this.restart) return;
    await sleep(delayMs);
    while (existsSync(this.holdFile) && !this.stopping) await sleep(500);
    if (this.stopping) return;
    log('info', 'restarting process', { process: this.name, attempt: this.restarts }, { important: true });
    this.start();
  }

  get pid() {
    return this.child?.pid;
  }

  /** SIGTERM to the process group, SIGKILL after stopTimeoutMs. */
  async stop() {
    this.stopping = true;
    const child = this.child;
    if (!child || !child.pid) return;
    const pid = child.pid;
    const signalGroup = (signal) => {
      try {
        process.kill(-pid, signal);
      } catch {
        try {
          process.kill(pid, signal);
        } catch {
          /* gone */
        }
      }
    };
    signalGroup('SIGTERM');
    const timeout = sleep(this.stopTimeoutMs).then(() => 'timeout');
    const result = await Promise.race([this.exited, timeout]);
    if (result === 'timeout' && isAlive(pid)) {
      log('warn', 'process did not stop in time; killing it', { process: this.name, pid });
      signalGroup('SIGKILL');
      await this.exited;
    }
    // anything left in its process group (e.g. a child of a service)
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* empty group */
    }
    rmSync(this.pidFile, { force: true });
  }
}
