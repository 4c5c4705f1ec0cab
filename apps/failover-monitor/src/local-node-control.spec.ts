import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalNodeControl } from './local-node-control';

/** A stack directory whose node s0n0 "runs" as a real process tree: a parent with two children, like a postmaster and its backends. */
function stackWithNode() {
  const dir = mkdtempSync(join(tmpdir(), 'node-control-'));
  const dataDir = join(dir, 's0n0');
  mkdirSync(dataDir);
  writeFileSync(
    join(dir, 'stack.json'),
    JSON.stringify({
      postgres: { binDir: '/usr/lib/postgresql/15/bin', passfile: join(dir, 'passfile'), socketDir: dir, user: 'postgres' },
      shards: [{ id: 0, nodes: [{ name: 's0n0', host: '127.0.0.1', port: 1, dataDir }] }],
      logs: dir,
    }),
  );
  return { dir, dataDir };
}

function startProcessTree(dataDir: string): { postmaster: ChildProcess; children: () => number[] } {
  const postmaster = spawn('sh', ['-c', 'sleep 60 & sleep 60 & wait'], { stdio: 'ignore' });
  writeFileSync(join(dataDir, 'postmaster.pid'), `${postmaster.pid}\n${dataDir}\n`);
  const children = () => {
    try {
      return execFileSync('pgrep', ['-P', String(postmaster.pid)], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean)
        .map(Number);
    } catch {
      return [];
    }
  };
  return { postmaster, children };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
}

describe('LocalNodeControl', () => {
  let stack: { dir: string; dataDir: string };
  const logged: string[] = [];
  let started: ChildProcess[] = [];

  beforeEach(() => {
    stack = stackWithNode();
    logged.length = 0;
  });

  afterEach(() => {
    for (const child of started) child.kill('SIGKILL');
    started = [];
    jest.restoreAllMocks();
    rmSync(stack.dir, { recursive: true, force: true });
  });

  const control = (fenceTimeoutMs = 5000) => new LocalNodeControl(stack.dir, (message) => void logged.push(message), fenceTimeoutMs);

  it('fences a running primary by killing the postmaster and every backend, and returns only once all are gone', async () => {
    const { postmaster, children } = startProcessTree(stack.dataDir);
    started.push(postmaster);
    await until(() => children().length === 2);
    const backends = children();
    expect(await control().isRunning('s0n0')).toBe(true);

    await control().fence('s0n0');

    for (const pid of [postmaster.pid as number, ...backends]) expect(alive(pid) && !zombie(pid)).toBe(false);
    expect(await control().isRunning('s0n0')).toBe(false);
    expect(logged).toEqual(['node fenced']);
  });

  it('fences a frozen (SIGSTOPped) primary too', async () => {
    const { postmaster, children } = startProcessTree(stack.dataDir);
    started.push(postmaster);
    await until(() => children().length === 2);
    postmaster.kill('SIGSTOP');

    await control().fence('s0n0');
    expect(await control().isRunning('s0n0')).toBe(false);
  });

  it('has nothing to fence when the node is not running, or left a stale pid file', async () => {
    await control().fence('s0n0');
    const exited = spawn('true');
    await new Promise((resolve) => exited.on('exit', resolve));
    writeFileSync(join(stack.dataDir, 'postmaster.pid'), `${exited.pid}\n`);
    await control().fence('s0n0');
    expect(logged).toEqual([]);
  });

  it('rejects, never reports success, when a process it must kill survives (not its own to signal)', async () => {
    const { postmaster, children } = startProcessTree(stack.dataDir);
    started.push(postmaster);
    await until(() => children().length === 2);
    const tree = [postmaster.pid as number, ...children()];
    const realKill = process.kill.bind(process);
    jest.spyOn(process, 'kill').mockImplementation((pid: number, signal?: string | number) => {
      if (tree.includes(pid)) throw Object.assign(new Error('kill EPERM'), { code: 'EPERM' });
      return realKill(pid, signal);
    });

    await expect(control(300).fence('s0n0')).rejects.toThrow(`processes ${tree.join(', ')} still alive 300 ms after SIGKILL`);
    expect(logged).toEqual([]);
  });

  it('refuses a node the stack does not have, and says why a node did not start', async () => {
    await expect(control().fence('s9n9')).rejects.toThrow('unknown node s9n9');
    await expect(control().start('s0n0')).rejects.toThrow('s0n0 did not start');
  });
});

function zombie(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}
