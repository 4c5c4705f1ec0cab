#!/usr/bin/env node
// `npm start`: the whole local stack in the foreground (CONTRACT section 1). Installs
// node_modules and system prerequisites if needed, then hands over to the launcher
// (tools/stack/launcher.mjs). Node built-ins only until the dependencies are there.
import { ensureNodeModules, ensurePrerequisites } from './lib/bootstrap.mjs';

ensureNodeModules();
ensurePrerequisites();
const { launch } = await import('./stack/launcher.mjs');
await launch(process.env);
