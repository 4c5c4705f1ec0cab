#!/usr/bin/env node
// `npm run docker:down [-- --volumes]`: stops and removes the containers and the network of
// the compose project (DOCKER_PROJECT, default shortener); `--volumes` also drops its named
// volumes (the data). Then stops the dockerd that docker:up started, if it started one
// (an engine that was already running is left running).
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { COMPOSE_FILE, compose, docker, engineAnswers, projectContainers, projectVolumes, say, stopEngineStartedHere } from './engine.mjs';

export async function down({ project = process.env.DOCKER_PROJECT || 'shortener', volumes = false, stopEngine = true } = {}) {
  if (!(await engineAnswers())) {
    say('no Docker engine answers: nothing to stop');
    return;
  }
  // Compose interpolates the whole file even to stop it: required variables get placeholders.
  const required = [...readFileSync(COMPOSE_FILE, 'utf8').matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*):?\?/g)].map((match) => match[1]);
  const env = { ...Object.fromEntries(required.map((name) => [name, 'placeholder'])), ...process.env };
  await compose(['down', '--remove-orphans', '--timeout', '20', ...(volumes ? ['--volumes'] : [])], { project, env, allowFail: true });
  // Whatever compose did not remove (a container paused or cut off by a test): by label.
  const left = await projectContainers(project);
  if (left.length > 0) {
    await docker(['rm', '-f', ...left.map((container) => container.id)], { allowFail: true });
    say(`removed ${left.length} container(s) compose left`);
  }
  const { stdout: networks } = await docker(['network', 'ls', '-q', '--filter', `label=com.docker.compose.project=${project}`], { allowFail: true });
  if (networks.trim()) await docker(['network', 'rm', ...networks.trim().split('\n')], { allowFail: true });
  if (volumes) {
    const named = await projectVolumes(project);
    if (named.length > 0) await docker(['volume', 'rm', '-f', ...named], { allowFail: true });
  }
  say(`project ${project} is down${volumes ? ' and its volumes are gone' : ' (volumes kept)'}`);
  if (stopEngine) await stopEngineStartedHere();
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    await down({ volumes: process.argv.includes('--volumes') || process.argv.includes('-v') });
  } catch (error) {
    process.stderr.write(`[docker] ${error.message}\n`);
    process.exit(1);
  }
}
