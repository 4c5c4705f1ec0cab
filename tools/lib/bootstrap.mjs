// What `npm start` and `npm test` do before anything else, with Node built-ins only (it
// runs before node_modules exists): install JavaScript dependencies when they are
// missing or older than the lock file, and check (or install) the system prerequisites.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

function say(message) {
  process.stderr.write(`${message}\n`);
}

function nodeModulesStale() {
  const lock = join(REPO_ROOT, 'package-lock.json');
  const installed = join(REPO_ROOT, 'node_modules', '.package-lock.json');
  return !existsSync(installed) || (existsSync(lock) && statSync(lock).mtimeMs > statSync(installed).mtimeMs + 1000);
}

/** `npm ci` when node_modules is missing or older than package-lock.json. */
export function ensureNodeModules() {
  if (!nodeModulesStale()) return;
  say('node_modules is missing or older than package-lock.json: running npm ci');
  const result = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: REPO_ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) {
    say('npm ci failed');
    process.exit(result.status || 1);
  }
}

/** The same, without blocking the event loop (so that other work can run beside it). */
export async function ensureNodeModulesAsync() {
  if (!nodeModulesStale()) return;
  say('node_modules is missing or older than package-lock.json: running npm ci');
  const code = await new Promise((resolveRun) => {
    const child = spawn('npm', ['ci', '--no-audit', '--no-fund'], { cwd: REPO_ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('exit', (c) => resolveRun(c ?? 1));
    child.on('error', () => resolveRun(1));
  });
  if (code !== 0) {
    say('npm ci failed');
    process.exit(code);
  }
}

function onPath(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

function javaMajor() {
  const result = spawnSync('java', ['-version'], { encoding: 'utf8' });
  if (result.status !== 0) return 0;
  const match = /version "(\d+)(?:\.(\d+))?/.exec(`${result.stderr}${result.stdout}`);
  if (!match) return 0;
  return match[1] === '1' ? Number(match[2]) : Number(match[1]);
}

function pgBinDir() {
  return process.env.PG_BIN || '/usr/lib/postgresql/15/bin';
}

/** Tools only the tests need: promtool checks and unit-tests the alert rules, Chromium runs the /admin page e2e. */
export const PROMTOOL = { what: 'promtool (alert rule checks)', apt: 'prometheus', present: () => onPath('promtool') };
export const CHROMIUM = {
  what: 'Chromium (the /admin page e2e; Playwright never downloads a browser)',
  apt: 'chromium',
  present: () => existsSync(CHROMIUM_PATH),
};
export const CHROMIUM_PATH = '/usr/bin/chromium';

function missingPrerequisites({ stack = true, tools = [] } = {}) {
  const missing = tools.filter((tool) => !tool.present());
  if (!stack) return missing;
  const pgBin = pgBinDir();
  const pgOk = ['initdb', 'pg_ctl', 'pg_basebackup', 'pg_rewind', 'postgres'].every((b) => {
    try {
      accessSync(join(pgBin, b), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  if (!pgOk) missing.push({ what: `PostgreSQL 15 server binaries in ${pgBin}`, apt: 'postgresql-15' });
  if (!onPath('pgbackrest')) missing.push({ what: 'pgBackRest (WAL archiving and backups of every shard)', apt: 'pgbackrest' });
  if (!onPath('redis-server')) missing.push({ what: 'redis-server', apt: 'redis-server' });
  if (javaMajor() < 17) missing.push({ what: 'a Java 17+ runtime (java)', apt: 'openjdk-17-jre-headless' });
  if (!onPath('mvn')) missing.push({ what: 'Maven (mvn), which fetches the Kafka jars', apt: 'maven' });
  return missing;
}

/** Installs what is missing with apt-get when root; otherwise names it and exits. */
export function ensurePrerequisites(scope = {}) {
  let missing = missingPrerequisites(scope);
  if (missing.length === 0) return;
  const packages = missing.map((m) => m.apt);
  // Other installs may hold the dpkg lock (a shared machine, a CI image still provisioning): wait for it.
  const lock = ['-o', 'DPkg::Lock::Timeout=600'];
  const command = `apt-get ${lock.join(' ')} update && apt-get ${lock.join(' ')} install -y --no-install-recommends ${packages.join(' ')}`;
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!root || !onPath('apt-get')) {
    say(`missing prerequisites: ${missing.map((m) => m.what).join(', ')}`);
    say(`install them with:\n  sudo ${command.replace('&& apt-get', '&& sudo apt-get')}`);
    process.exit(1);
  }
  say(`installing missing prerequisites: ${packages.join(' ')}`);
  if (packages.includes('postgresql-15') && !existsSync('/etc/postgresql-common/createcluster.conf')) {
    // The Debian package would otherwise create and start a cluster on port 5432; the stack
    // runs its own nodes and needs only the binaries.
    mkdirSync('/etc/postgresql-common', { recursive: true });
    writeFileSync('/etc/postgresql-common/createcluster.conf', 'create_main_cluster = false\n');
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [
    [...lock, 'update'],
    [...lock, 'install', '-y', '--no-install-recommends', ...packages],
  ]) {
    const result = spawnSync('apt-get', args, { stdio: ['ignore', 'inherit', 'inherit'], env });
    if (result.status !== 0) {
      say(`apt-get ${args.join(' ')} failed; run: ${command}`);
      process.exit(1);
    }
  }
  missing = missingPrerequisites(scope);
  if (missing.length > 0) {
    say(`still missing after apt-get: ${missing.map((m) => m.what).join(', ')}`);
    process.exit(1);
  }
}
