// What a `portcullis` command is (its arguments, the services it opens, where
// it writes), and how commands print what they did.
import { codesAndTokens, NOT_TOKENS, type Removed } from '../provider/removed.js';
import type { Services } from '../services.js';

export interface Io {
  out(text: string): void;
  /** One line on stderr: something went wrong beside a command that did what it was asked. */
  warn(text: string): void;
  readStdin(): Promise<string>;
}

export type Command = (args: string[], services: () => Promise<Services>, io: Io) => Promise<void>;

/**
 * JSON on stdout, with every control and format character in its strings
 * escaped (\uXXXX): JSON.stringify leaves DEL, C1 controls, bidirectional
 * overrides and line separators as they are, and a terminal acts on them.
 */
export const json = (value: unknown) =>
  `${JSON.stringify(value, null, 2).replace(/(?!\n)[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, (character) =>
    Array.from({ length: character.length }, (_, i) => `\\u${character.charCodeAt(i).toString(16).padStart(4, '0')}`).join(''),
  )}\n`;

/**
 * A JSON array written as its items come, each as json() writes it: the
 * same text as json() of the whole array, without holding it all.
 */
export async function jsonArray<T>(io: Io, pages: AsyncIterable<T[]>, item: (value: T) => unknown): Promise<void> {
  let first = true;
  for await (const page of pages) {
    for (const value of page) {
      io.out(`${first ? '[\n' : ',\n'}  ${json(item(value)).trimEnd().replaceAll('\n', '\n  ')}`);
      first = false;
    }
  }
  io.out(first ? '[]\n' : '\n]\n');
}

/** `label: value` lines, the values aligned; those without a value left out. */
export function fields(rows: [string, string | undefined][]): string {
  const shown = rows.filter(([, value]) => value !== undefined && value !== '');
  const width = Math.max(...shown.map(([label]) => label.length)) + 2;
  return shown.map(([label, value]) => `${`${label}:`.padEnd(width)}${value}\n`).join('');
}

/** What ending access (a user's, a client's) removed, in words ("2 sessions, 3 consents"); empty for nothing. */
export function describeRemoved(removed: Removed): string {
  const words: Record<(typeof NOT_TOKENS)[number], [string, string]> = {
    Session: ['session', 'sessions'],
    Interaction: ['sign-in in progress', 'sign-ins in progress'],
    Grant: ['consent', 'consents'],
  };
  // Every other kind (codes, access and refresh tokens) is counted as "codes and tokens".
  const counts: [[string, string], number][] = [
    ...NOT_TOKENS.map((kind): [[string, string], number] => [words[kind], removed[kind] ?? 0]),
    [['code or token', 'codes and tokens'], codesAndTokens(removed)],
  ];
  return counts
    .filter(([, n]) => n > 0)
    .map(([[one, many], n]) => `${n} ${n === 1 ? one : many}`)
    .join(', ');
}
