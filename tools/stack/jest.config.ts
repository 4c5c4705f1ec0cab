// Unit tests of the stack scripts' pure logic (no stack needed); part of the root unit run.
export default {
  displayName: 'stack-tools',
  preset: '../../jest.preset.js',
  rootDir: __dirname,
  testMatch: ['<rootDir>/**/*.spec.ts'],
  moduleFileExtensions: ['ts', 'js', 'cjs', 'json'],
};
