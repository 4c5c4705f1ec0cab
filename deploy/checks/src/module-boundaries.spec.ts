// The module-boundary rule once skipped itself silently (no cached Nx project graph on a fresh
// clone), so `eslint .` passed with a forbidden import in the tree. This runs the repository's
// own ESLint configuration, as `npm test` does, on source texts placed inside real projects.
// ESLint's Node API runs in a child process: it loads eslint.config.mjs with a dynamic import,
// which jest's module sandbox refuses.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const root = join(__dirname, '..', '..', '..');

const LINT_TEXTS = `
import { ESLint } from 'eslint';
const eslint = new ESLint({ cwd: process.cwd() });
const out = [];
for (const { file, code } of JSON.parse(process.argv[1])) {
  const [result] = await eslint.lintText(code, { filePath: file });
  out.push(result.messages.filter((m) => m.ruleId === '@nx/enforce-module-boundaries').map((m) => m.message));
}
process.stdout.write(JSON.stringify(out));
`;

const probes = {
  utilImportsDataAccess: {
    file: 'libs/observability/src/boundary-probe.ts',
    code: "import { LineRpcServer } from '@shortener/rpc';\nexport const probe = LineRpcServer;\n",
  },
  appImportsDriver: { file: 'apps/reader/src/boundary-probe.ts', code: "import { Pool } from 'pg';\nexport const probe = Pool;\n" },
  contractsImportNest: {
    file: 'libs/contracts/src/boundary-probe.ts',
    code: "import { Injectable } from '@nestjs/common';\nexport const probe = Injectable;\n",
  },
  appImportsApp: {
    file: 'apps/reader/src/boundary-probe.ts',
    code: "import { WriterModule } from '../../writer/src/writer.module';\nexport const probe = WriterModule;\n",
  },
  appImportsDataAccess: {
    file: 'apps/reader/src/boundary-probe.ts',
    code: "import { LineRpcServer } from '@shortener/rpc';\nexport const probe = LineRpcServer;\n",
  },
};

describe('module boundaries (eslint.config.mjs)', () => {
  let errors: Record<keyof typeof probes, string[]>;

  beforeAll(async () => {
    const entries = Object.entries(probes);
    const input = JSON.stringify(entries.map(([, probe]) => ({ file: join(root, probe.file), code: probe.code })));
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', LINT_TEXTS, input], {
      cwd: root,
      maxBuffer: 16 * 1024 * 1024,
    });
    const results = JSON.parse(stdout) as string[][];
    errors = Object.fromEntries(entries.map(([name], i) => [name, results[i]])) as typeof errors;
  }, 120_000);

  it('fails a util library that imports a data-access library', () => {
    expect(errors.utilImportsDataAccess).toEqual([expect.stringContaining('A project tagged with "type:util" can only depend on libs tagged with')]);
  });

  it('fails an app that imports a database driver directly', () => {
    expect(errors.appImportsDriver).toEqual([expect.stringContaining('pg')]);
  });

  it('fails contracts that import NestJS', () => {
    expect(errors.contractsImportNest).toHaveLength(1);
  });

  it('fails an app that imports another app', () => {
    expect(errors.appImportsApp).toHaveLength(1);
  });

  it('lets an app import a data-access library', () => {
    expect(errors.appImportsDataAccess).toEqual([]);
  });
});
