// The end-to-end suite: runs against a real local stack that tools/test.mjs starts (or any
// running stack: set E2E_STACK_DIR, and E2E_BASE_URL / E2E_ADMIN_TOKEN if they differ
// from its stack.json / admin-token). Never part of the unit run (see jest.config.ts).
export default {
  displayName: 'system-e2e',
  preset: '../../jest.preset.js',
  rootDir: __dirname,
  testMatch: ['<rootDir>/src/**/*.e2e-spec.ts'],
  testTimeout: 120000,
};
