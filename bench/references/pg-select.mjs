// Reference of "redirect, cache miss": node:http, one primary-key SELECT on a replica of
// the code's owning shard (round robin over the shard's replicas), a 302. Pools the size
// of a reader's (6 connections per node).
import pg from 'pg';
import { listen, shardRing, topologyFromEnv } from './common.mjs';

const topology = topologyFromEnv();
const shardOf = shardRing(topology.ring.slots);
const password = process.env.BENCH_PG_PASSWORD;
const poolSize = Number(process.env.BENCH_POOL_SIZE || 6);
const replicas = topology.shards.map((shard) =>
  shard.replicas.map(
    (node) =>
      new pg.Pool({
        host: node.host,
        port: node.port,
        user: 'postgres',
        password,
        database: 'shortener',
        max: poolSize,
      }),
  ),
);
const next = replicas.map(() => 0);

listen((req, res) => {
  const code = req.url.slice(1);
  const shard = shardOf(code);
  const pools = replicas[shard];
  const pool = pools[next[shard]++ % pools.length];
  pool.query({ name: 'ref-select', text: 'SELECT url FROM urls WHERE code = $1', values: [code] }).then(
    ({ rows }) => {
      if (rows.length === 0) res.writeHead(404).end();
      else res.writeHead(302, { location: rows[0].url }).end();
    },
    () => res.writeHead(503).end(),
  );
});
