#!/usr/bin/env node
// `npm run bench`: the benchmark suite of docs/reference.md section 6 (bench/README.md). Installs
// node_modules and checks system prerequisites like `npm start`, then runs bench/run.mjs.
import { ensureNodeModules, ensurePrerequisites } from './lib/bootstrap.mjs';

ensureNodeModules();
ensurePrerequisites();
const { main } = await import('../bench/run.mjs');
await main(process.argv.slice(2));
