// npm run stack -- add-shard | drain-shard: the pure part (arguments, the progress line,
// when to print, how it ends), tested by operation-progress.test.mjs; cli.mjs does the HTTP.

export class UsageError extends Error {}

export const RESHARDING_USAGE = 'usage: npm run stack -- add-shard [--nodes \'[{"name","host","port"}, ...]\'] | drain-shard <id>';

/**
 * The request a command makes: `add-shard [--nodes <json>]` is POST /api/cluster/shards
 * (body `{}` lets node control provision the nodes), `drain-shard <id>` is DELETE
 * /api/cluster/shards/{id}. The nodes are checked by the gateway; here only that they are JSON.
 */
export function parseReshardingArgs(command, args) {
  if (command === 'drain-shard') {
    if (args.length !== 1 || !/^\d+$/.test(args[0])) throw new UsageError(RESHARDING_USAGE);
    return { method: 'DELETE', path: `/api/cluster/shards/${Number(args[0])}` };
  }
  if (command !== 'add-shard') throw new UsageError(RESHARDING_USAGE);
  const body = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const inline = arg.startsWith('--nodes=') ? arg.slice('--nodes='.length) : undefined;
    if (arg !== '--nodes' && inline === undefined) throw new UsageError(`unknown argument "${arg}"; ${RESHARDING_USAGE}`);
    if (body.nodes) throw new UsageError(`--nodes given twice; ${RESHARDING_USAGE}`);
    const text = inline ?? args[++i];
    if (text === undefined) throw new UsageError(`--nodes needs a JSON array; ${RESHARDING_USAGE}`);
    try {
      body.nodes = JSON.parse(text);
    } catch (error) {
      throw new UsageError(`--nodes is not JSON (${error.message}); ${RESHARDING_USAGE}`);
    }
    if (!Array.isArray(body.nodes)) throw new UsageError(`--nodes must be a JSON array of {"name", "host", "port"}; ${RESHARDING_USAGE}`);
  }
  return { method: 'POST', path: '/api/cluster/shards', body };
}

/** The operation document as one line, as libs/resharding's progressLine writes it (this file cannot import TypeScript). */
export function progressLine(document) {
  const pct = document.slots.total ? Math.floor((100 * document.slots.moved) / document.slots.total) : 100;
  return (
    `${document.type} ${document.shard}: ${document.state}, ${document.phase}, ` +
    `slots ${document.slots.moved}/${document.slots.total} (${pct} %), rows copied ${document.rows.copied}, verified ${document.rows.verified}, ` +
    `longest write pause ${document.maxWritePauseMs} ms${document.error ? `, error: ${document.error}` : ''}`
  );
}

/**
 * What to write for a new line: on a terminal the same line is rewritten (`\r`, then
 * erase the rest of the old one); elsewhere (a log, a pipe) a line only when it changed.
 * Null: nothing to write.
 */
export function progressOutput(line, previous, isTTY) {
  if (isTTY) return line === previous ? null : `\r${line}\x1b[K`;
  return line === previous ? null : `${line}\n`;
}

/** The process's exit code once the operation has ended (0 done, 1 failed), null while it runs. */
export function exitCodeOf(document) {
  if (document.state === 'done') return 0;
  if (document.state === 'failed') return 1;
  return null;
}

/** A refused request (any answer but 202) as one message: the problem's detail, or what the answer was. */
export function refusalMessage(status, text) {
  try {
    const problem = JSON.parse(text);
    if (problem && typeof problem.detail === 'string') return `refused (${status}): ${problem.detail}`;
  } catch {
    // not JSON: said below as it came
  }
  return `refused (${status}): ${text.trim().slice(0, 300) || 'no body'}`;
}
