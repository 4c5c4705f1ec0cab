import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalNodeControl, parseProvisioned } from './local-node-control';

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

/**
 * A stand-in tools/stack/cli.mjs: provision-shard appends shard <id> to stack.json (or fails
 * when FAKE_FAIL is in the environment) and answers one JSON line; retire-shard drops it.
 */
const FAKE_CLI = `
import { readFileSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
const [command, id, flag] = process.argv.slice(2);
const file = join(process.env.STACK_DIR, 'stack.json');
const stack = JSON.parse(readFileSync(file, 'utf8'));
appendFileSync(join(process.env.STACK_DIR, 'calls'), [command, id, flag].join(' ') + '\\n');
process.stderr.write('progress line\\n');
if (process.env.FAKE_FAIL) { process.stderr.write('initdb failed: disk full\\n'); process.exit(1); }
const shard = Number(id);
if (command === 'provision-shard') {
  const nodes = [0, 1].map((i) => ({ name: 's' + shard + 'n' + i, host: '127.0.0.1', port: 16400 + shard * 8 + i, dataDir: join(process.env.STACK_DIR, 's' + shard + 'n' + i) }));
  stack.shards.push({ id: shard, nodes });
  writeFileSync(file, JSON.stringify(stack));
  process.stdout.write(JSON.stringify({ id: shard, nodes: nodes.map(({ name, host, port }) => ({ name, host, port })) }) + '\\n');
} else {
  stack.shards = stack.shards.filter((s) => s.id !== shard);
  writeFileSync(file, JSON.stringify(stack));
  process.stdout.write(JSON.stringify({ id: shard, retired: true }) + '\\n');
}
`;

describe('LocalNodeControl provisioning (tools/stack/cli.mjs)', () => {
  let stack: { dir: string; dataDir: string };
  let toolsDir: string;
  const logged: string[] = [];

  beforeEach(() => {
    stack = stackWithNode();
    toolsDir = mkdtempSync(join(tmpdir(), 'stack-tools-'));
    writeFileSync(join(toolsDir, 'cli.mjs'), FAKE_CLI);
    logged.length = 0;
    delete process.env.FAKE_FAIL;
  });

  afterEach(() => {
    delete process.env.FAKE_FAIL;
    rmSync(stack.dir, { recursive: true, force: true });
    rmSync(toolsDir, { recursive: true, force: true });
  });

  const control = () => new LocalNodeControl(stack.dir, (message) => void logged.push(message), 5000, { toolsDir });

  it('provisions through provision-shard <id> --json on its STACK_DIR, answers the nodes primary first, and then knows them', async () => {
    const local = control();
    expect(local.canProvision).toBe(true);
    await expect(local.isRunning('s1n1')).rejects.toThrow('unknown node s1n1');

    const nodes = await local.provision(1);

    expect(nodes).toEqual([
      { name: 's1n0', host: '127.0.0.1', port: 16408 },
      { name: 's1n1', host: '127.0.0.1', port: 16409 },
    ]);
    expect(readFileSync(join(stack.dir, 'calls'), 'utf8')).toBe('provision-shard 1 --json\n');
    expect(logged).toEqual(['provisioning shard', 'shard provisioned']);
    // every verb knows the new nodes now: no postmaster.pid, so not running
    expect(await local.isRunning('s1n1')).toBe(false);
  });

  it('finds nodes that another process provisioned after it read stack.json', async () => {
    const local = control();
    await control().provision(2);
    expect(await local.isRunning('s2n0')).toBe(false);
  });

  it('rejects with the command’s last words when provisioning fails, and when it times out', async () => {
    process.env.FAKE_FAIL = '1';
    await expect(control().provision(1)).rejects.toThrow(/provision-shard 1 .*exited with 1: progress line\ninitdb failed: disk full/);
    delete process.env.FAKE_FAIL;
    writeFileSync(join(toolsDir, 'cli.mjs'), 'setTimeout(() => undefined, 10_000);');
    const slow = new LocalNodeControl(stack.dir, () => undefined, 5000, { toolsDir, provisionTimeoutMs: 300 });
    await expect(slow.provision(1)).rejects.toThrow('did not finish within 0.3 s');
  });

  it('refuses an answer that is not the shard it asked for', () => {
    expect(() => parseProvisioned('progress\n{"id":2,"nodes":[{"name":"s2n0","host":"h","port":1}]}\n', 1)).toThrow('unexpected shard');
    expect(() => parseProvisioned('', 1)).toThrow('no JSON line');
    expect(parseProvisioned('{"id":1,"nodes":[{"name":"s1n0","host":"h","port":1}]}\n', 1)).toEqual([{ name: 's1n0', host: 'h', port: 1 }]);
  });

  it('retires through retire-shard <id>, after which the nodes are unknown', async () => {
    const local = control();
    await local.provision(1);
    await local.retire(1, ['s1n0', 's1n1']);
    expect(readFileSync(join(stack.dir, 'calls'), 'utf8')).toBe('provision-shard 1 --json\nretire-shard 1 --json\n');
    await expect(local.isRunning('s1n0')).rejects.toThrow('unknown node s1n0');
  });
});

function zombie(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}
