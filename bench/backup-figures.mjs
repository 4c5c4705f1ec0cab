#!/usr/bin/env node
// The backup figures of the README (docs/reference.md section 11), measured on a running
// local stack that may be destroyed: STACK_DIR=<dir> node bench/backup-figures.mjs
//
//   1. LINKS links (100,000) created through the API;
//   2. a full backup of every shard (npm run stack -- backup --type full): time and size;
//   3. the RPO: creates at a steady rate, then every PostgreSQL node of the stack killed
//      at once (the disaster: the machines gone, the repository kept); restore --to latest
//      into a new STACK_DIR; the newest acknowledged create found there, and how long
//      before the disaster it was acknowledged;
//   4. the restore time of step 3.
// Prints one JSON document. The stack is left with its databases killed: stop it after.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pg from 'pg';

const REPO = resolve(import.meta.dirname, '..');
const stackDir = resolve(REPO, process.env.STACK_DIR || '.stack');
const inventory = JSON.parse(readFileSync(join(stackDir, 'stack.json'), 'utf8'));
const baseUrl = `http://127.0.0.1:${inventory.services.gateway.port}`;
const LINKS = Number(process.env.LINKS || 100_000);
const CONCURRENCY = 32;
const RPO_RATE_PER_SECOND = 50;
const RPO_SECONDS = 40;

const say = (line) => process.stderr.write(`[backup-figures] ${line}\n`);

async function create(label) {
  for (;;) {
    const response = await fetch(`${baseUrl}/api/urls`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: `https://example.com/${label}` }),
    }).catch(() => null);
    if (response?.status === 201) return (await response.json()).code;
    if (response) await response.arrayBuffer();
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stackCli(args, env = {}) {
  const t0 = Date.now();
  const result = spawnSync(process.execPath, [join(REPO, 'tools', 'stack', 'cli.mjs'), ...args], {
    cwd: REPO,
    env: { ...process.env, STACK_DIR: stackDir, ...env },
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`stack ${args.join(' ')} failed:\n${result.stdout}${result.stderr}`);
  return { out: result.stdout, ms: Date.now() - t0 };
}

const figures = { links: LINKS, shards: inventory.shards.length };

let next = 0;
const t0 = Date.now();
await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    while (next < LINKS) {
      next += 1;
      await create(`load-${next}`);
    }
  }),
);
figures.loadSeconds = (Date.now() - t0) / 1000;
say(`${LINKS} links in ${figures.loadSeconds} s`);

const backup = stackCli(['backup', '--type', 'full']);
figures.fullBackupSeconds = backup.ms / 1000;
figures.perShard = backup.out
  .split('\n')
  .filter((line) => /^shard-\d+: /.test(line))
  .map((line) => line.trim());
say(backup.out.trim());

// The RPO: steady creates, each acknowledgement's time kept, then every node killed at once.
const acknowledged = [];
let creating = true;
const loop = (async () => {
  while (creating) {
    const started = Date.now();
    const code = await create(`rpo-${started}`);
    acknowledged.push({ code, at: Date.now() });
    await new Promise((r) => setTimeout(r, Math.max(0, 1000 / RPO_RATE_PER_SECOND - (Date.now() - started))));
  }
})();
await new Promise((r) => setTimeout(r, RPO_SECONDS * 1000));
const disasterAt = Date.now();
for (const node of inventory.shards.flatMap((shard) => shard.nodes)) {
  try {
    process.kill(Number(readFileSync(join(node.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]), 'SIGKILL');
  } catch {
    /* not running */
  }
}
creating = false;
await Promise.race([loop, new Promise((r) => setTimeout(r, 2000))]);
const before = acknowledged.filter((ack) => ack.at <= disasterAt);
say(`disaster at ${new Date(disasterAt).toISOString()} after ${before.length} acknowledged creates`);

const restoredDir = join(stackDir, '..', `backup-figures-restore-${process.pid}`);
rmSync(restoredDir, { recursive: true, force: true });
const restored = stackCli(['restore', '--to', 'latest', '--stack-dir', restoredDir], { PG_BASE_PORT: '18400', REDIS_PORT: '18379', KAFKA_PORT: '21092' });
figures.restoreSeconds = restored.ms / 1000;
say(restored.out.trim());

// The restored primaries (n0 of each shard), started just to be asked which codes they hold.
const restoredInventory = JSON.parse(readFileSync(join(restoredDir, 'stack.json'), 'utf8'));
const password = readFileSync(join(restoredDir, 'pg-password'), 'utf8').trim();
const asPostgres =
  process.getuid?.() === 0
    ? {
        uid: Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout),
        gid: Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout),
      }
    : {};
const present = new Set();
for (const shard of restoredInventory.shards) {
  const node = shard.nodes[0];
  spawnSync(join(restoredInventory.postgres.binDir, 'pg_ctl'), ['start', '-w', '-D', node.dataDir, '-l', join(restoredDir, 'logs', `${node.name}.log`)], {
    ...asPostgres,
    stdio: 'ignore',
  });
  const client = new pg.Client({ host: node.host, port: node.port, user: 'postgres', password, database: 'shortener' });
  await client.connect();
  for (const row of (await client.query('SELECT code FROM urls WHERE code = ANY($1)', [before.map((ack) => ack.code)])).rows) present.add(row.code);
  await client.end();
  spawnSync(join(restoredInventory.postgres.binDir, 'pg_ctl'), ['stop', '-m', 'fast', '-w', '-D', node.dataDir], { ...asPostgres, stdio: 'ignore' });
}
const lost = before.filter((ack) => !present.has(ack.code));
const firstLost = lost[0];
const newestKept = before.filter((ack) => present.has(ack.code)).at(-1);
figures.rpo = {
  acknowledgedBeforeDisaster: before.length,
  lost: lost.length,
  // Everything acknowledged up to this long before the disaster was restored.
  rpoSeconds: firstLost ? (disasterAt - firstLost.at) / 1000 : 0,
  newestRestoredAckSecondsBeforeDisaster: newestKept ? (disasterAt - newestKept.at) / 1000 : null,
};
rmSync(restoredDir, { recursive: true, force: true });
process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
