// A command's arguments: options picked out by name, its positional
// arguments counted, a password read from standard input.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Io } from './command.js';
import { UsageError } from './usage.js';
import { typoOf } from '../typos.js';

/** An option's value the command refuses (a duration it cannot read, a number out of range): one line, exit 1, as a refused address is; a value outside a fixed list is a UsageError. */
export class RefusedOption extends Error {
  override name = 'RefusedOption';
}

export type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * The password piped in: one line, its line break (as `echo` or a file's
 * last line ends it) not part of it. More lines are a usage error, said as
 * such: a file with a blank last line would otherwise be refused for holding
 * control characters, the line break's.
 */
export async function passwordFromStdin(io: Io): Promise<string> {
  const password = (await io.readStdin()).replace(/\r?\n$|\r$/, '');
  if (!password) throw new UsageError('no password on standard input');
  if (/[\r\n]/.test(password)) throw new UsageError('standard input holds more than one line: pipe the password alone, on one line');
  return password;
}

export function parse(args: string[], options: Options, positionals = 0) {
  let parsed;
  // Options are picked out by name, an option's value with it whatever it
  // begins with (`user update bob --name -x-`, `user revoke -bob@example.com
  // --client -8UZ…`: client ids, base64url, and key ids, JWK thumbprints, may
  // begin with "-"); whatever else there is, and all after a `--`, is an
  // argument. So `client delete -8UZ…` is not taken for a flag.
  const optionName = (word: string) => {
    const name = word.startsWith('--') ? word.slice(2).split('=')[0]! : '';
    return Object.hasOwn(options, name) ? name : undefined;
  };
  const picked: string[] = [];
  const rest: string[] = [];
  for (let index = 0; index < args.length; index++) {
    const arg = args[index]!;
    if (arg === '--') {
      rest.push(...args.slice(index + 1));
      break;
    }
    const name = optionName(arg);
    const option = name === undefined ? undefined : options[name];
    if (!option) rest.push(arg);
    else if (option.type !== 'string' || arg.includes('=')) picked.push(arg);
    // Not another of its options: `--name $UNSET --json` must not name it "--json".
    else if (index + 1 < args.length && args[index + 1] !== '--' && optionName(args[index + 1]!) === undefined) picked.push(`--${name}=${args[++index]}`);
    else throw new UsageError(`--${name} needs a value${index + 1 < args.length ? ` (one that begins with "--" is written --${name}=VALUE)` : ''}`);
  }
  try {
    parsed = parseArgs({ args: [...picked, '--', ...rest], options, allowPositionals: true, strict: true, tokens: true });
  } catch (error) {
    // parseArgs's own words ("Unknown option '--x'"), begun in lower case as every other message here.
    const message = (error as Error).message;
    throw new UsageError(message.charAt(0).toLowerCase() + message.slice(1));
  }
  refuseRepeated(parsed.tokens, options);
  if (parsed.positionals.length !== positionals) {
    // An option this command does not take (`keys retire KID --json`) was read as an argument above.
    const option = parsed.positionals.length > positionals ? parsed.positionals.find((arg) => arg.startsWith('--')) : undefined;
    if (option) {
      const meant = typoOf(option.slice(2).split('=')[0]!, Object.keys(options));
      throw new UsageError(`unknown option '${option}'${meant ? `: did you mean --${meant}?` : ''}`);
    }
    throw new UsageError(positionals ? `expected ${positionals} argument(s), got ${parsed.positionals.length}` : `unexpected argument '${parsed.positionals[0]}'`);
  }
  return parsed;
}

/**
 * An option that takes one value, given twice: parseArgs keeps the last one
 * and drops the other without a word (`--email a@x ... --email b@x`). Options
 * declared `multiple` repeat; a flag said twice loses nothing.
 */
function refuseRepeated(tokens: NonNullable<ReturnType<typeof parseArgs>['tokens']>, options: Options): void {
  const seen = new Set<string>();
  for (const token of tokens) {
    if (token.kind !== 'option' || options[token.name]?.type !== 'string' || options[token.name]?.multiple) continue;
    if (seen.has(token.name)) throw new UsageError(`--${token.name} is given more than once; it takes one value`);
    seen.add(token.name);
  }
}

/** A pair of opposite flags of an update (`--email-verified` / `--email-unverified`): true, false, or undefined for neither. */
export function eitherFlag(values: Record<string, unknown>, yes: string, no: string): boolean | undefined {
  if (values[yes] && values[no]) throw new UsageError(`--${yes} and --${no} exclude each other`);
  return values[yes] ? true : values[no] ? false : undefined;
}

export function required(value: unknown, flag: string): string {
  if (typeof value !== 'string' || !value.trim()) throw new UsageError(`${flag} is required`);
  return value;
}

/**
 * The argument an update command takes first, always, and the options after
 * it: a base64url client id may begin with "-", even "--", and so may an email.
 */
export function leadingArgument(args: string[], usage: string): [string, string[]] {
  const [first, ...rest] = args;
  if (!first || /^--[a-z-]+$/.test(first)) throw new UsageError(usage);
  return [first, rest];
}
