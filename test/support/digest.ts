// How the README says token, code, session and interaction ids are stored:
// SHA-256, base64url. Written here, not taken from src/, so that a test
// finding a row by its id checks the code against the rule, not against itself.
import { createHash } from 'node:crypto';

export const sha256 = (value: string): string => createHash('sha256').update(value).digest('base64url');
