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

/** How LocalNodeControl runs the stack's own tools (tools/stack/cli.mjs). */
export interface LocalToolsOptions {
  /** Directory of cli.mjs: STACK_TOOLS_DIR (the launcher sets it), else tools/stack under the working directory. */
  toolsDir?: string;
  /** Deadline of provision-shard (initdb, base backups, migrations). */
  provisionTimeoutMs?: number;
  /** Deadline of retire-shard. */
  retireTimeoutMs?: number;
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
  /** provision-shard of tools/stack/cli.mjs makes a new shard's nodes like the launcher's. */
  readonly canProvision = true;
  private inventory: StackInventory;
  private readonly toolsDir: string;
  private readonly provisionTimeoutMs: number;
  private readonly retireTimeoutMs: number;

  constructor(
    private readonly stackDir: string,
    private readonly log: (message: string, extra?: object) => void,
    private readonly fenceTimeoutMs = 5000,
    tools: LocalToolsOptions = {},
  ) {
    this.inventory = this.readInventory();
    this.toolsDir = tools.toolsDir ?? (process.env.STACK_TOOLS_DIR || join(process.cwd(), 'tools', 'stack'));
    this.provisionTimeoutMs = tools.provisionTimeoutMs ?? 180_000;
    this.retireTimeoutMs = tools.retireTimeoutMs ?? 120_000;
  }

  private readInventory(): StackInventory {
    return JSON.parse(readFileSync(join(this.stackDir, 'stack.json'), 'utf8')) as StackInventory;
  }

  /**
   * `npm run stack -- provision-shard <shard> --json`: the shard's nodes s<shard>n<i> on
   * PG_BASE_PORT + shard*8 + i, made as the launcher makes a new stack's and recorded in
   * stack.json, which is read again so that every verb knows them.
   */
  async provision(shard: number): Promise<NodeAddress[]> {
    const started = Date.now();
    this.log('provisioning shard', { shard });
    const result = await this.stackCommand(['provision-shard', String(shard), '--json'], this.provisionTimeoutMs);
    const answer = parseProvisioned(result.stdout, shard);
    this.inventory = this.readInventory();
    this.log('shard provisioned', { shard, nodes: answer.map((node) => node.name), seconds: (Date.now() - started) / 1000 });
    return answer;
  }

  /** `npm run stack -- retire-shard <shard>`: stops the nodes (fast), keeps their data, retires the shard in stack.json. */
  async retire(shard: number, nodes: string[]): Promise<void> {
    await this.stackCommand(['retire-shard', String(shard), '--json'], this.retireTimeoutMs);
    this.inventory = this.readInventory();
    this.log('shard retired', { shard, nodes });
  }

  /** Runs tools/stack/cli.mjs on this stack; rejects with the command's own last words when it fails. */
  private stackCommand(args: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
    const cli = join(this.toolsDir, 'cli.mjs');
    return new Promise((resolve, reject) => {
      execFile(
        process.execPath,
        [cli, ...args],
        { env: { ...process.env, STACK_DIR: this.stackDir }, timeout: timeoutMs, killSignal: 'SIGTERM', maxBuffer: 16 * 1024 * 1024 },
        (error, stdout, stderr) => {
          if (!error) return resolve({ stdout, stderr });
          const how = error.killed ? `did not finish within ${timeoutMs / 1000} s` : `exited with ${error.code ?? error.signal ?? 'an error'}`;
          const said = stderr.trim().split('\n').slice(-5).join('\n') || error.message;
          reject(new Error(`${args[0]} ${args[1]} (${cli}) ${how}: ${said}`));
        },
      );
    });
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
    const find = () => this.inventory.shards.flatMap((shard) => shard.nodes).find((candidate) => candidate.name === name);
    let node = find();
    if (!node) {
      // a shard provisioned since (by this monitor or another): stack.json knows it
      this.inventory = this.readInventory();
      node = find();
    }
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

/** The one JSON line of `provision-shard --json`: `{"id", "nodes": [{"name", "host", "port"}, ...]}`. */
export function parseProvisioned(stdout: string, shard: number): NodeAddress[] {
  const line = stdout.trim().split('\n').pop() ?? '';
  let parsed: { id?: unknown; nodes?: unknown };
  try {
    parsed = JSON.parse(line) as { id?: unknown; nodes?: unknown };
  } catch {
    throw new Error(`provision-shard ${shard} answered no JSON line: ${JSON.stringify(line.slice(0, 200))}`);
  }
  const nodes = (Array.isArray(parsed.nodes) ? (parsed.nodes as Partial<NodeAddress>[]) : []).flatMap(({ name, host, port }) =>
    typeof name === 'string' && typeof host === 'string' && typeof port === 'number' && Number.isInteger(port) ? [{ name, host, port }] : [],
  );
  if (parsed.id !== shard || nodes.length === 0 || nodes.length !== (parsed.nodes as unknown[]).length) {
    throw new Error(`provision-shard ${shard} answered an unexpected shard: ${line.slice(0, 300)}`);
  }
  return nodes;
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
