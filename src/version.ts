// The version this copy of Portcullis is, from package.json (one level up
// from src/ and from dist/ alike): for `portcullis --version` and the start-up line.
import { readFileSync } from 'node:fs';

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
