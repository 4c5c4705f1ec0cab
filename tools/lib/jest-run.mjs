// One Jest run of the test scripts (tools/test.mjs, tools/docker/test.mjs): output forwarded,
// counts read from its --json result file, and a time limit. A Jest that never exits (an open
// handle left by a failed hook) must fail its phase, not hold CI until its own limit kills
// everything: the whole process group is killed when the limit passes.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './bootstrap.mjs';

/**
 * Runs jest with `args` and resolves { ok, result, failure }: `result` is the parsed --json
 * summary when Jest wrote one, `failure` a sentence when the run failed (exit code, no test, time limit).
 */
export function runJest({ args, env, label, limitMs, allowNoTests = false }) {
  const resultFile = join(tmpdir(), `jest-${label}-${process.pid}.json`);
  return new Promise((resolveRun) => {
    const child = spawn(process.execPath, [join(REPO_ROOT, 'node_modules', 'jest', 'bin', 'jest.js'), ...args, '--json', `--outputFile=${resultFile}`], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'inherit', 'inherit'],
      // Its own process group, so the time limit also reaches the workers and what they spawned.
      detached: true,
    });
    // A detached group does not get the terminal's Ctrl-C: it is passed on, and the group goes with this process.
    const killGroup = () => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    };
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      process.stdout.write(`[test] ${label}: still running after ${Math.round(limitMs / 1000)} s; killing it\n`);
      killGroup();
    }, limitMs);
    const onSignal = (signal) => {
      killGroup();
      process.kill(process.pid, signal);
    };
    process.once('exit', killGroup);
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      process.removeListener('exit', killGroup);
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      let result = null;
      if (existsSync(resultFile)) {
        try {
          result = JSON.parse(readFileSync(resultFile, 'utf8'));
        } catch {
          /* reported by the exit code */
        }
        rmSync(resultFile, { force: true });
      }
      let failure = null;
      if (timedOut) failure = `${label}: killed after its time limit of ${Math.round(limitMs / 1000)} s${result ? '' : ' (no results)'}`;
      else if (code !== 0) failure = `${label}: jest exited with ${code ?? signal}${result ? '' : ' (no results)'}`;
      else if (result && result.numTotalTests === 0 && !allowNoTests) failure = `${label}: no test ran`;
      resolveRun({ ok: failure === null, result, failure });
    });
  });
}
