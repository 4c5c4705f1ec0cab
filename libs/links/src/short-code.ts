import { randomFillSync } from 'node:crypto';

export const CODE_ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
export const GENERATED_CODE_LENGTH = 7;

// Bytes >= 248 are rejected so that every symbol is equally likely (248 = 4 * 62).
const UNBIASED_LIMIT = 256 - (256 % CODE_ALPHABET.length);
const POOL_SIZE = 1024;
const pool = Buffer.allocUnsafe(POOL_SIZE);
let poolOffset = POOL_SIZE;

function nextRandomByte(): number {
  if (poolOffset >= POOL_SIZE) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  return pool[poolOffset++];
}

/** A 7-character base62 code from the operating system's CSPRNG, without modulo bias. */
export function generateCode(length = GENERATED_CODE_LENGTH): string {
  let code = '';
  while (code.length < length) {
    const byte = nextRandomByte();
    if (byte < UNBIASED_LIMIT) code += CODE_ALPHABET[byte % CODE_ALPHABET.length];
  }
  return code;
}
