// Reference of "create": node:http, reads the JSON body, one single-row INSERT of a random
// 7-character code on the owning shard's primary (whose synchronous_standby_names make it
// wait for the same replication mode as the service), a 201 with the code. Pools the size
// of the writer's (8 connections per node).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { listen, shardRing, topologyFromEnv } from './common.mjs';

const topology = topologyFromEnv();
const shardOf = shardRing(topology.ring.slots);
const password = process.env.BENCH_PG_PASSWORD;
const poolSize = Number(process.env.BENCH_POOL_SIZE || 8);
const primaries = topology.shards.map(
  (shard) =>
    new pg.Pool({
      host: shard.primary.host,
      port: shard.primary.port,
      user: 'postgres',
      password,
      database: 'shortener',
      max: poolSize,
    }),
);
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const TOKEN_HASH = Buffer.alloc(32, 7);

function randomCode() {
  const bytes = randomBytes(7);
  let code = '';
  for (const byte of bytes) code += ALPHABET[byte % 62];
  return code;
}

listen((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      res.writeHead(400).end();
      return;
    }
    const code = randomCode();
    primaries[shardOf(code)]
      .query({
        name: 'ref-insert',
        text: 'INSERT INTO urls (code, url, manage_token_hash) VALUES ($1, $2, $3) ON CONFLICT (code) DO NOTHING',
        values: [code, body.url, TOKEN_HASH],
      })
      .then(
        () => res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ code })),
        () => res.writeHead(503).end(),
      );
  });
});
