import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PG_BIN = process.env.PG_BIN || '/usr/lib/postgresql/15/bin';

export interface RunningPostgres {
  /** Superuser `postgres`, trust authentication, through the Unix socket in the server's own directory. */
  connection: { host: string; port: number; user: string; database: string };
  stop(): Promise<void>;
}

/** PostgreSQL refuses to run as root: then the server runs as the `postgres` system user. */
function serverUser(): { uid: number; gid: number } | undefined {
  if (typeof process.geteuid !== 'function' || process.geteuid() !== 0) return undefined;
  const name = process.env.PG_OS_USER || 'postgres';
  return {
    uid: Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim()),
  };
}

/**
 * A throwaway real PostgreSQL 15 (initdb in a temporary directory, fsync off), for
 * integration tests of SQL: what a statement does and how it is planned. It listens on a
 * Unix socket in its own directory only: two of them started at once by parallel Jest
 * workers can never meet on one TCP port, nor a client reach the other's server.
 */
export async function startPostgresServer({ settings = {} }: { settings?: Record<string, string> } = {}): Promise<RunningPostgres> {
  const directory = mkdtempSync(join(tmpdir(), 'shortener-pg-'));
  const dataDir = join(directory, 'data');
  const user = serverUser();
  if (user) chownSync(directory, user.uid, user.gid);
  const asServer = user ? { uid: user.uid, gid: user.gid } : {};
  execFileSync(join(PG_BIN, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8', '--no-instructions'], {
    ...asServer,
    stdio: 'ignore',
  });
  const port = 5432; // only names the socket file inside the private directory
  const child: ChildProcess = spawn(
    join(PG_BIN, 'postgres'),
    [
      '-D',
      dataDir,
      '-p',
      String(port),
      '-k',
      directory,
      '-c',
      'listen_addresses=',
      '-c',
      'fsync=off',
      '-c',
      'full_page_writes=off',
      ...Object.entries(settings).flatMap(([key, value]) => ['-c', `${key}=${value}`]),
    ],
    { ...asServer, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('postgres did not start within 30 s')), 30_000);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`postgres exited with ${code}`)));
    child.stderr!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return {
    connection: { host: directory, port, user: 'postgres', database: 'postgres' },
    stop: () =>
      new Promise<void>((resolve) => {
        const done = () => {
          rmSync(directory, { recursive: true, force: true });
          resolve();
        };
        if (child.exitCode !== null) return done();
        child.once('exit', done);
        child.kill('SIGINT'); // fast shutdown
      }),
  };
}
