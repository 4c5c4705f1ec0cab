// The unit suite: every project's jest config except the end-to-end suite, which needs
// the running stack and is started by tools/test.mjs.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const roots = ['apps', 'libs', 'tools'];
const projects = roots.flatMap((root) =>
  existsSync(join(__dirname, root))
    ? readdirSync(join(__dirname, root))
        .filter((name) => name !== 'system-e2e')
        .map((name) => join(__dirname, root, name, 'jest.config.ts'))
        .filter((config) => existsSync(config))
    : [],
);
// Static checks of docker/ and k8s/ (deploy/checks): no stack needed.
const deployChecks = join(__dirname, 'deploy', 'checks', 'jest.config.ts');
if (existsSync(deployChecks)) projects.push(deployChecks);

export default { projects };
