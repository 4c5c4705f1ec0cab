#!/usr/bin/env node
// `npm start`: the whole local stack in the foreground (docs/reference.md section 1). Installs
// node_modules and system prerequisites if needed, then hands over to the launcher
// (tools/stack/launcher.mjs). Node built-ins only until the dependencies are there.
import { ensureNodeModulesAsync, ensurePrerequisites } from './lib/bootstrap.mjs';

ensurePrerequisites();
// On a fresh machine Maven fetches the Kafka jars while npm installs the JavaScript ones
// (tools/stack/kafka.mjs needs Node built-ins only for that part).
const kafkaJars = import('./stack/kafka.mjs').then((kafka) => kafka.kafkaClasspath()).catch((error) => error);
await ensureNodeModulesAsync();
const jars = await kafkaJars;
if (jars instanceof Error) {
  process.stderr.write(`could not resolve the Kafka jars: ${jars.message}\n`);
  process.exit(1);
}
const { launch } = await import('./stack/launcher.mjs');
await launch(process.env);
