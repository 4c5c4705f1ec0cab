import nx from '@nx/eslint-plugin';
import globals from 'globals';
import { createProjectGraphAsync } from 'nx/src/devkit-exports.js';

// @nx/enforce-module-boundaries reads Nx's cached project graph (.nx/workspace-data, git-ignored)
// and, when there is none, prints a warning and skips itself: on a fresh clone (and in CI) it
// never fired. Build (or refresh) the graph before any file is linted; a broken graph fails lint.
await createProjectGraphAsync({ exitOnError: true });

export default [
  ...nx.configs['flat/base'],
  ...nx.configs['flat/typescript'],
  ...nx.configs['flat/javascript'],
  { ignores: ['**/dist', '**/node_modules', '**/.stack', '**/.nx', 'bench/results', 'coverage'] },
  {
    files: ['**/*.ts'],
    rules: {
      '@nx/enforce-module-boundaries': [
        'error',
        {
          enforceBuildableLibDependency: false,
          allow: [],
          depConstraints: [
            {
              sourceTag: 'type:app',
              onlyDependOnLibsWithTags: ['type:data-access', 'type:util', 'type:contracts'],
              bannedExternalImports: ['pg', 'ioredis', 'kafkajs'],
            },
            {
              sourceTag: 'type:e2e',
              onlyDependOnLibsWithTags: ['type:util', 'type:contracts', 'type:testing'],
            },
            {
              sourceTag: 'type:data-access',
              // type:testing for the integration specs (a real redis-server, ...)
              onlyDependOnLibsWithTags: ['type:data-access', 'type:util', 'type:contracts', 'type:testing'],
            },
            { sourceTag: 'type:util', onlyDependOnLibsWithTags: ['type:util', 'type:contracts'] },
            {
              sourceTag: 'type:contracts',
              onlyDependOnLibsWithTags: [],
              bannedExternalImports: ['@nestjs/*', 'pg', 'ioredis', 'kafkajs'],
            },
            {
              sourceTag: 'type:testing',
              onlyDependOnLibsWithTags: ['type:util', 'type:contracts', 'type:data-access'],
            },
          ],
        },
      ],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error',
    },
  },
  {
    // The /admin page's script runs in the browser as a classic script.
    files: ['apps/gateway/admin/**/*.js'],
    languageOptions: { sourceType: 'script', globals: { ...globals.browser } },
  },
  {
    files: ['**/*.spec.ts', '**/*.e2e-spec.ts', 'apps/system-e2e/**/*.ts', 'tools/**', 'bench/**'],
    rules: { 'no-console': 'off', '@typescript-eslint/no-non-null-assertion': 'off' },
  },
];
