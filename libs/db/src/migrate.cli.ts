/**
 * Applies the migrations to the current primary of every shard (the node that is not in
 * recovery), then sets the passwords of the service roles migration 3 made
 * (PG_WRITER_PASSWORD, PG_READER_PASSWORD, PG_MONITOR_PASSWORD, each optional). Run by the
 * local stack after the primaries start, by the compose `migrate` service and by the
 * migrations Job in Kubernetes, as the superuser. Exits non-zero if any shard has no
 * reachable primary.
 */
import { Client } from 'pg';
import { z } from 'zod';
import { shardNodesSchema, validateEnvironment } from '@shortener/config';
import { migrate } from './migrator';
import { setServiceRolePasswords } from './migrations/service-roles';

const environmentSchema = z.object({
  SHARD_NODES: z.string().transform((value) => shardNodesSchema.parse(JSON.parse(value))),
  PG_USER: z.string().default('postgres'),
  PG_PASSWORD: z.string().min(1),
  PG_DATABASE: z.string().default('shortener'),
  PG_WRITER_PASSWORD: z.string().min(16).optional(),
  PG_READER_PASSWORD: z.string().min(16).optional(),
  PG_MONITOR_PASSWORD: z.string().min(16).optional(),
});

function log(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), service: 'migrate', ...event })}\n`);
}

async function primaryOf(nodes: { name: string; host: string; port: number }[], env: z.output<typeof environmentSchema>) {
  for (const node of nodes) {
    const client = new Client({
      host: node.host,
      port: node.port,
      user: env.PG_USER,
      password: env.PG_PASSWORD,
      database: env.PG_DATABASE,
      connectionTimeoutMillis: 3000,
    });
    try {
      await client.connect();
      const { rows } = await client.query<{ standby: boolean }>('SELECT pg_is_in_recovery() AS standby');
      if (!rows[0].standby) return { node, client };
      await client.end();
    } catch {
      await client.end().catch(() => undefined);
    }
  }
  return null;
}

async function main(): Promise<void> {
  const env = validateEnvironment(environmentSchema, process.env);
  let failed = false;
  for (const shard of env.SHARD_NODES) {
    const found = await primaryOf(shard.nodes, env);
    if (!found) {
      log({ level: 'error', msg: 'no reachable primary', shard: shard.id });
      failed = true;
      continue;
    }
    try {
      const report = await migrate(found.client);
      // Roles live in the cluster's shared catalog: the replicas receive them by streaming.
      const passwordsSet = await setServiceRolePasswords(found.client, env);
      log({ level: 'info', msg: 'migrated', shard: shard.id, node: found.node.name, ...report, passwordsSet });
    } catch (error) {
      log({ level: 'error', msg: (error as Error).message, shard: shard.id, node: found.node.name });
      failed = true;
    } finally {
      await found.client.end();
    }
  }
  process.exitCode = failed ? 1 : 0;
}

main().catch((error) => {
  log({ level: 'fatal', msg: (error as Error).message });
  process.exitCode = 1;
});
