#!/usr/bin/env node
// `npm test`: everything CI runs. Static checks (ESLint with the module boundaries, Prettier,
// a type-check that includes every spec), unit tests (root jest config, every project), then the
// end-to-end suite against a real local stack started by tools/start.mjs in a temporary
// STACK_DIR on ports apart from a development stack's; stops it and checks that nothing
// of it is left. Exits non-zero if anything failed.
//
//   node tools/test.mjs               static + unit + e2e + docker
//   node tools/test.mjs --unit-only   static + unit
//   node tools/test.mjs --e2e-only    (also: nx run system-e2e:e2e)
//   node tools/test.mjs --docker-only the docker phase alone (= npm run test:docker)
//   TEST_DOCKER=0                     leave out the docker phase (the compose suites, tools/docker/test.mjs);
//                                     TEST_DOCKER=1 makes a missing engine a failure even when not root
//   STACK_SKIP_SERVICES=1 node tools/test.mjs --e2e-only   infrastructure suite only (dev aid)
//   E2E_KEEP_STACK_DIR=1              keep the temporary STACK_DIR (it is kept anyway on failure)
//   E2E_ONLY=<regexp>                 only the e2e spec files whose path matches (dev aid)
//   E2E_SKIP_FAULTS=1                 skip the fault suite (dev aid)
//   E2E_PORT_OFFSET=300               every port of the test stack moved by this much (a second test stack)
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CHROMIUM, PROMTOOL, REPO_ROOT, ensureNodeModules, ensurePrerequisites } from './lib/bootstrap.mjs';
import { runJest } from './lib/jest-run.mjs';

const argv = new Set(process.argv.slice(2));
// --faults-only: only the fault suite on a new stack (e.g. E2E_REPLICATION_MODE=async to count its losses)
const faultsOnly = argv.has('--faults-only');
const dockerOnly = argv.has('--docker-only');
const unit = !argv.has('--e2e-only') && !faultsOnly && !dockerOnly;
// The static phase runs wherever the unit tests do.
const staticChecks = unit;
const e2e = !argv.has('--unit-only') && !dockerOnly;
// The compose suites run last, after the local ones (they are the slow path).
const dockerPhase = dockerOnly || (unit && e2e && process.env.TEST_DOCKER !== '0');

/** An engine answers, or this process may install and start one (root). */
async function canHaveEngine() {
  if (typeof process.getuid === 'function' && process.getuid() === 0) return true;
  const { engineAnswers } = await import('./docker/engine.mjs');
  return engineAnswers();
}

// E2E_PORT_OFFSET moves every port of the test stack, so that two test stacks can run side by side.
const PORT_OFFSET = Number(process.env.E2E_PORT_OFFSET || 0);
const port = (base) => String(base + PORT_OFFSET);
const E2E_ENV = {
  PORT: port(3100),
  PUBLIC_BASE_URL: `http://localhost:${port(3100)}`,
  PG_BASE_PORT: port(17400),
  REDIS_PORT: port(17379),
  KAFKA_PORT: port(20092),
  SERVICES_BASE_PORT: port(5100),
  SHARDS: process.env.E2E_SHARDS || '4',
  REPLICAS: process.env.E2E_REPLICAS || '2',
  READERS: process.env.E2E_READERS || '2',
  REPLICATION_MODE: process.env.E2E_REPLICATION_MODE || 'quorum',
};
const READY_TIMEOUT_MS = Number(process.env.E2E_READY_TIMEOUT_MS || 6 * 60_000);

function say(message) {
  process.stdout.write(`[test] ${message}\n`);
}

const totals = { passed: 0, failed: 0, skipped: 0 };
const failures = [];

/** Runs jest (output forwarded, within `limitMinutes`); adds its counts. */
async function jest(args, env, label, limitMinutes) {
  const { ok, result, failure } = await runJest({ args, env, label, limitMs: limitMinutes * 60_000, allowNoTests: Boolean(process.env.E2E_ONLY) });
  if (result) {
    totals.passed += result.numPassedTests;
    totals.failed += result.numFailedTests;
    totals.skipped += result.numPendingTests + (result.numTodoTests ?? 0);
  }
  if (failure) failures.push(failure);
  return ok;
}

/**
 * The stack scripts' own tests (tools/stack/*.test.mjs): plain Node ES modules, which Jest
 * cannot load without transforms, run by node --test; counted with the unit tests.
 */
function nodeTests() {
  const files = ['tools/stack'].flatMap((dir) =>
    readdirSync(join(REPO_ROOT, dir))
      .filter((name) => name.endsWith('.test.mjs'))
      .map((name) => join(dir, name)),
  );
  if (files.length === 0) return Promise.resolve(true);
  return new Promise((resolveRun) => {
    // A test that never ends fails after 2 minutes rather than holding the run.
    const child = spawn(process.execPath, ['--test', '--test-reporter=tap', '--test-timeout=120000', ...files], {
      cwd: REPO_ROOT,
      env: process.env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
      process.stdout.write(chunk);
    });
    child.on('exit', (code, signal) => {
      const count = (name) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(output)?.[1] ?? 0);
      totals.passed += count('pass');
      totals.failed += count('fail');
      totals.skipped += count('skipped') + count('todo');
      if (code !== 0) failures.push(`unit: node --test exited with ${code ?? signal}`);
      if (count('pass') + count('fail') === 0) failures.push('unit: node --test ran no test');
      resolveRun(code === 0);
    });
  });
}

/** Runs one static check (a node_modules binary), output forwarded; counts it as one test. */
function check(label, bin, args) {
  return checkCommand(label, process.execPath, [join(REPO_ROOT, 'node_modules', ...bin), ...args]);
}

/** Runs one static check (any command), output forwarded; counts it as one test. */
function checkCommand(label, command, args) {
  return new Promise((resolveRun) => {
    const t0 = Date.now();
    const child = spawn(command, args, {
      cwd: REPO_ROOT,
      env: process.env,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    let done = false;
    const finish = (ok, outcome) => {
      if (done) return;
      done = true;
      say(`${label}: ${ok ? 'ok' : `FAILED (${outcome})`} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      if (ok) totals.passed += 1;
      else {
        totals.failed += 1;
        failures.push(`static: ${label}`);
      }
      resolveRun(ok);
    };
    child.on('error', (error) => finish(false, error.message));
    child.on('exit', (code, signal) => finish(code === 0, code ?? signal));
  });
}

async function runStatic() {
  // eslint.config.mjs builds the Nx project graph first, so the module-boundary rule really runs.
  await check('eslint (module boundaries)', ['eslint', 'bin', 'eslint.js'], ['.']);
  await check('prettier --check', ['prettier', 'bin', 'prettier.cjs'], ['--check', '--log-level', 'warn', '.']);
  // tsconfig.json includes the specs, the e2e specs and deploy/checks, which the build leaves out.
  await check('tsc (sources and specs)', ['typescript', 'bin', 'tsc'], ['-p', 'tsconfig.json', '--noEmit']);
  // The alert rules (docs/reference.md section 9): valid, and their unit tests pass.
  await checkCommand('promtool check rules', 'promtool', ['check', 'rules', 'deploy/prometheus/alerts.yaml']);
  await checkCommand('promtool test rules', 'promtool', ['test', 'rules', 'deploy/prometheus/alerts.test.yaml']);
}

function processesOf(stackDir) {
  return import('./stack/util.mjs').then((util) => util.processesOfStack(stackDir));
}

async function portsInUse() {
  const { canConnect } = await import('./stack/util.mjs');
  const ports = [
    Number(E2E_ENV.PORT),
    Number(E2E_ENV.REDIS_PORT),
    Number(E2E_ENV.KAFKA_PORT),
    Number(E2E_ENV.KAFKA_PORT) + 1,
    Number(E2E_ENV.PG_BASE_PORT),
    Number(E2E_ENV.SERVICES_BASE_PORT),
  ];
  const busy = [];
  for (const port of ports) if (await canConnect('127.0.0.1', port, 500)) busy.push(port);
  return busy;
}

function tail(file, lines = 40) {
  if (!existsSync(file)) return '';
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

async function runE2e() {
  const busy = await portsInUse();
  if (busy.length > 0) {
    failures.push(`e2e: ports ${busy.join(', ')} are in use (another test stack still running?)`);
    return;
  }
  const stackDir = mkdtempSync(join(tmpdir(), 'shortener-e2e-'));
  say(`starting a test stack in ${stackDir}`);
  const t0 = Date.now();
  const launcher = spawn(process.execPath, [join(REPO_ROOT, 'tools', 'start.mjs')], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...E2E_ENV, STACK_DIR: stackDir, ADMIN_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise((resolveExit) => launcher.on('exit', (code, signal) => resolveExit({ code, signal })));
  let ready = false;
  const readyLine = new Promise((resolveReady) => {
    createInterface({ input: launcher.stdout }).on('line', (line) => {
      process.stdout.write(`[stack] ${line}\n`);
      if (!ready && line.startsWith('ready: ')) {
        ready = true;
        resolveReady(line.slice('ready: '.length));
      }
    });
    createInterface({ input: launcher.stderr }).on('line', (line) => process.stderr.write(`[stack] ${line}\n`));
  });
  let timer;
  const outcome = await Promise.race([
    readyLine.then((url) => ({ ready: url })),
    exited.then((exit) => ({ exit })),
    new Promise((r) => (timer = setTimeout(() => r({ timeout: true }), READY_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
  let ok = true;
  if (outcome.ready) {
    say(`stack ready in ${((Date.now() - t0) / 1000).toFixed(1)} s at ${outcome.ready}`);
    const adminToken = readFileSync(join(stackDir, 'admin-token'), 'utf8').trim();
    const args = ['--config', 'apps/system-e2e/jest.config.ts', '--runInBand', '--forceExit'];
    if (process.env.STACK_SKIP_SERVICES && process.env.STACK_SKIP_SERVICES !== '0') {
      say('STACK_SKIP_SERVICES is set: running the infrastructure suite only');
      args.push('--testPathPatterns', 'stack\\.e2e-spec');
    } else if (process.env.E2E_ONLY) {
      args.push('--testPathPatterns', process.env.E2E_ONLY, '--passWithNoTests');
    }
    const e2eEnv = { ...process.env, E2E_BASE_URL: `http://127.0.0.1:${E2E_ENV.PORT}`, E2E_STACK_DIR: stackDir, E2E_ADMIN_TOKEN: adminToken };
    if (!faultsOnly) ok = await jest(args, e2eEnv, 'e2e', 30);
    // The fault suite changes the topology (failovers, switchover): it runs last, on the same stack.
    const skipFaults = (process.env.STACK_SKIP_SERVICES && process.env.STACK_SKIP_SERVICES !== '0') || process.env.E2E_SKIP_FAULTS === '1';
    if (!skipFaults) {
      const faultArgs = ['--config', 'apps/system-e2e/jest.config.ts', '--runInBand', '--forceExit', '--testMatch', '**/*.faults-spec.ts'];
      if (process.env.E2E_ONLY) faultArgs.push('--testPathPatterns', process.env.E2E_ONLY, '--passWithNoTests');
      const faultsOk = await jest(faultArgs, e2eEnv, 'faults', 15);
      ok = ok && faultsOk;
    }
    // Online resharding changes the slot map for good (a shard added, then drained): last of all.
    if (!skipFaults && process.env.E2E_SKIP_RESHARD !== '1') {
      const reshardArgs = ['--config', 'apps/system-e2e/jest.config.ts', '--runInBand', '--forceExit', '--testMatch', '**/*.reshard-spec.ts'];
      if (process.env.E2E_ONLY) reshardArgs.push('--testPathPatterns', process.env.E2E_ONLY, '--passWithNoTests');
      const reshardOk = await jest(reshardArgs, e2eEnv, 'resharding', 15);
      ok = ok && reshardOk;
    }
  } else {
    ok = false;
    failures.push(
      outcome.timeout
        ? `e2e: the stack was not ready within ${READY_TIMEOUT_MS / 1000} s`
        : `e2e: the launcher exited before ready (${JSON.stringify(outcome.exit)})`,
    );
  }

  // stop it and check that nothing of it is left
  const tStop = Date.now();
  if (launcher.exitCode === null && launcher.signalCode === null) launcher.kill('SIGTERM');
  const stopTimeout = new Promise((r) => setTimeout(() => r('timeout'), 180_000));
  const stopped = await Promise.race([exited, stopTimeout]);
  if (stopped === 'timeout') {
    failures.push('e2e: the launcher did not stop within 180 s of SIGTERM');
    launcher.kill('SIGKILL');
    ok = false;
  } else {
    say(`stack stopped in ${((Date.now() - tStop) / 1000).toFixed(1)} s (launcher exit ${stopped.code ?? stopped.signal})`);
    if (outcome.ready && stopped.code !== 0) {
      failures.push(`e2e: the launcher exited with ${stopped.code ?? stopped.signal} after SIGTERM`);
      ok = false;
    }
  }
  let left = await processesOf(stackDir);
  for (let i = 0; i < 10 && left.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 500));
    left = await processesOf(stackDir);
  }
  if (left.length > 0) {
    failures.push(`e2e: processes of the test stack left after stop: ${left.map((p) => `${p.pid} ${p.cmdline}`).join('; ')}`);
    ok = false;
    for (const proc of left) {
      try {
        process.kill(proc.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  } else {
    say('no process of the test stack is left');
  }

  if (!ok) {
    for (const name of ['launcher', 'gateway', 'writer', 'reader-0', 'monitor-0', 'build', 'migrate', 'kafka']) {
      const text = tail(join(stackDir, 'logs', `${name}.log`), 25);
      if (text) process.stdout.write(`\n[test] --- last lines of ${name}.log ---\n${text}\n`);
    }
    say(`kept ${stackDir} for inspection`);
  } else if (process.env.E2E_KEEP_STACK_DIR) {
    say(`kept ${stackDir}`);
  } else {
    rmSync(stackDir, { recursive: true, force: true });
  }
}

ensureNodeModules();
// The stack's prerequisites for the e2e suite; promtool for the static phase, Chromium for the /admin page e2e.
const tools = [...(staticChecks ? [PROMTOOL] : []), ...(e2e ? [CHROMIUM] : [])];
if (e2e || tools.length > 0) ensurePrerequisites({ stack: e2e, tools });
if (staticChecks) {
  say('static checks');
  await runStatic();
}
if (unit) {
  say('unit tests');
  // --forceExit: a handle a failed hook left open must not keep the run waiting (the time limit is the backstop).
  await jest(['--config', 'jest.config.ts', '--forceExit'], { ...process.env }, 'unit', 15);
  await nodeTests();
}
if (e2e) {
  say('end-to-end tests');
  await runE2e();
}
if (dockerPhase && !dockerOnly && process.env.TEST_DOCKER !== '1' && !(await canHaveEngine())) {
  // Only root can install and start dockerd; a developer without it still gets the local suites.
  say('docker: SKIPPED, no Docker engine answers and this user cannot start one (run `npm run test:docker` as root, or start dockerd)');
  totals.skipped += 1;
} else if (dockerPhase) {
  say('docker: the end-to-end and container fault suites against the compose topology');
  const { testDocker } = await import('./docker/test.mjs');
  const docker = await testDocker();
  totals.passed += docker.totals.passed;
  totals.failed += docker.totals.failed;
  totals.skipped += docker.totals.skipped;
  failures.push(...docker.failures.map((failure) => `docker ${failure}`));
}
for (const failure of failures) say(`FAILED ${failure}`);
process.stdout.write(`total: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped\n`);
process.exit(failures.length > 0 || totals.failed > 0 ? 1 : 0);
