import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, chownSync } from 'node:fs';
import { join } from 'node:path';
import type { NodeAddress } from '@shortener/topology';
import type { NodeControl } from './node-control';

interface StackInventory {
  postgres: { binDir: string; passfile: string; socketDir: string; user: string; database?: string; roles?: { monitor: string } };
  shards: { id: number; nodes: { name: string; host: string; port: number; dataDir: string }[] }[];
  logs: string;
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Settings that a rewound node must not keep from the primary it copied files from. */
const NODE_LOCAL_SETTINGS = ['primary_conninfo', 'primary_slot_name', 'synchronous_standby_names', 'default_transaction_read_only'];

/**
 * Node control for the local stack: pg_ctl, pg_rewind and signals on the nodes' processes.
 * Fence: every node runs on the monitor's host, so an unreachable (crashed, frozen,
 * overloaded) primary is fenced by SIGKILL of its postmaster and every backend, and the
 * fence returns only once all of them are gone.
 */
export class LocalNodeControl implements NodeControl {
  readonly fenceMethod = 'SIGKILL of the postmaster and its backends, awaited until they are gone';
  private readonly inventory: StackInventory;

  constructor(
    stackDir: string,
    private readonly log: (message: string, extra?: object) => void,
    private readonly fenceTimeoutMs = 5000,
  ) {
    this.inventory = JSON.parse(readFileSync(join(stackDir, 'stack.json'), 'utf8')) as StackInventory;
  }

  /** Clients find primaries through the topology alone here: nothing to mark. */
  async markRoles(): Promise<void> {
    return undefined;
  }

  async isRunning(name: string): Promise<boolean> {
    const pid = this.postmasterPid(name);
    return pid !== null && processAlive(pid);
  }

  async fence(name: string): Promise<void> {
    const pid = this.postmasterPid(name);
    if (pid === null || !processAlive(pid)) return;
    // SIGKILL works on a frozen (SIGSTOPped) server too; its backends go with it so that
    // no session of the old primary can commit anything more.
    const children = childProcesses(pid);
    for (const target of [pid, ...children]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    const deadline = Date.now() + this.fenceTimeoutMs;
    while (Date.now() < deadline && [pid, ...children].some(processAlive)) await sleep(50);
    const alive = [pid, ...children].filter(processAlive);
    if (alive.length > 0) throw new Error(`${name}: processes ${alive.join(', ')} still alive ${this.fenceTimeoutMs} ms after SIGKILL`);
    this.log('node fenced', { node: name, pid });
  }

  async stop(name: string): Promise<void> {
    const node = this.node(name);
    await this.run('pg_ctl', ['stop', '-D', node.dataDir, '-m', 'fast', '-w', '-t', '30']);
  }

  async start(name: string): Promise<void> {
    const node = this.node(name);
    const result = await this.run('pg_ctl', ['start', '-D', node.dataDir, '-l', join(this.inventory.logs, `${name}.log`), '-w', '-t', '60', '-s'], true);
    if (result.code !== 0 && !(await this.isRunning(name))) {
      throw new Error(`${name} did not start: ${result.stderr.trim()}`);
    }
  }

  async rejoin(name: string, primary: NodeAddress, options: { fromScratch?: boolean } = {}): Promise<void> {
    await this.fence(name);
    const node = this.node(name);
    const passfile = this.inventory.postgres.passfile;
    // The monitor's own role (libs/db migration 3: REPLICATION and pg_rewind's file functions, granted
    // in the service database), its password in the stack's passfile; older stacks: the superuser.
    const role = this.inventory.postgres.roles?.monitor ?? 'postgres';
    const database = this.inventory.postgres.roles ? (this.inventory.postgres.database ?? 'shortener') : 'postgres';
    const source = `host=${primary.host} port=${primary.port} user=${role} dbname=${database} passfile=${passfile} application_name=${name}`;
    const rewind = options.fromScratch
      ? { code: 1, stdout: '', stderr: 'a new base backup was asked for' }
      : await this.run('pg_rewind', ['-D', node.dataDir, '--source-server', source, '-R'], true);
    this.log('pg_rewind', { node: name, code: rewind.code, output: `${rewind.stdout}${rewind.stderr}`.trim().slice(-300) });
    if (rewind.code !== 0) {
      // A node that cannot be rewound (too far behind, WAL gone) is copied anew.
      this.log('taking a new base backup', { node: name, reason: rewind.stderr.trim().slice(-300) });
      const owner = statSync(node.dataDir);
      for (const entry of readdirSync(node.dataDir)) rmSync(join(node.dataDir, entry), { recursive: true, force: true });
      chownSync(node.dataDir, owner.uid, owner.gid);
      const backup = await this.run(
        'pg_basebackup',
        ['-h', primary.host, '-p', String(primary.port), '-U', role, '-D', node.dataDir, '-X', 'stream', '-R', '-S', name, '-c', 'fast'],
        true,
        { PGPASSFILE: passfile, PGAPPNAME: name },
      );
      if (backup.code !== 0) throw new Error(`${name}: base backup failed: ${backup.stderr.trim()}`);
    }
    this.writeNodeSettings(node, primary, source);
    await this.start(name);
    this.log('node rejoined as a replica', { node: name, primary: primary.name });
  }

  /** pg_rewind copied the primary's files: give the node back its own port and settings. */
  private writeNodeSettings(node: { name: string; port: number; dataDir: string }, primary: NodeAddress, conninfo: string) {
    const owner = statSync(node.dataDir);
    const ownConf = join(node.dataDir, 'stack-node.conf');
    writeFileSync(
      ownConf,
      [
        '# This node of the local stack (tools/stack/pg.mjs); see stack.json.',
        `port = ${node.port}`,
        `unix_socket_directories = '${this.inventory.postgres.socketDir}'`,
        `cluster_name = '${node.name}'`,
        '',
      ].join('\n'),
    );
    const autoConf = join(node.dataDir, 'postgresql.auto.conf');
    const kept = (existsSync(autoConf) ? readFileSync(autoConf, 'utf8') : '')
      .split('\n')
      .filter((line) => line.trim() && !NODE_LOCAL_SETTINGS.some((key) => line.trim().startsWith(key)));
    const quoted = (value: string) => `'${value.replace(/'/g, "''")}'`;
    writeFileSync(
      autoConf,
      [...kept, `primary_conninfo = ${quoted(conninfo.replace(/dbname=\S+ /, ''))}`, `primary_slot_name = ${quoted(node.name)}`, ''].join('\n'),
    );
    writeFileSync(join(node.dataDir, 'standby.signal'), '');
    for (const file of [ownConf, autoConf, join(node.dataDir, 'standby.signal')]) chownSync(file, owner.uid, owner.gid);
    void primary;
  }

  private node(name: string) {
    const node = this.inventory.shards.flatMap((shard) => shard.nodes).find((candidate) => candidate.name === name);
    if (!node) throw new RangeError(`unknown node ${name}`);
    return node;
  }

  private postmasterPid(name: string): number | null {
    const file = join(this.node(name).dataDir, 'postmaster.pid');
    if (!existsSync(file)) return null;
    const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  }

  /** Runs a PostgreSQL program as the owner of the data directories (never as root). */
  private run(program: string, args: string[], allowFail = false, env: Record<string, string> = {}): Promise<RunResult> {
    const owner = statSync(this.inventory.shards[0].nodes[0].dataDir);
    return new Promise((resolve, reject) => {
      execFile(
        join(this.inventory.postgres.binDir, program),
        args,
        {
          uid: owner.uid,
          gid: owner.gid,
          cwd: '/tmp',
          timeout: 120_000,
          env: { ...process.env, ...env, HOME: '/tmp' },
        },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
          if (code !== 0 && !allowFail) reject(new Error(`${program} ${args[0]}: ${stderr || error?.message}`));
          else resolve({ code, stdout, stderr });
        },
      );
    });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: the process exists but is not ours to signal; it is alive, and a fence that
    // cannot kill it must say so rather than report it gone.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat); // a zombie is dead for our purpose
  } catch {
    return false;
  }
}

function childProcesses(parent: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parent) children.push(Number(entry));
    } catch {
      // raced with its exit
    }
  }
  return children;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
