// What a new password must be (`user create`, `user set-password`): long
// enough, and not one of those an attacker tries first. NIST SP 800-63B §3.1.1.2
// and OWASP ASVS 5.0 §6.2 ask a verifier to refuse passwords found in a list of
// commonly used or breached ones (ASVS: at least the 3,000 most common) and
// context-specific ones such as the user name; composition rules they advise
// against, so there are none. Passwords already set are not checked again:
// sign-in compares, it does not judge.
import { CONTROL_CHARACTERS } from '../display-text.js';

export interface PasswordPolicy {
  /** PASSWORD_MIN_LENGTH (8 by default; NIST asks 15 where the password is the only factor). */
  minLength: number;
}

/** In characters (code points), as the minimum: the longest still fits the sign-in form (see passwordProblem). */
export const MAX_PASSWORD_LENGTH = 1024;

let common: Promise<Set<string>> | undefined;

/**
 * The 49,233 passwords most often found in breaches, by frequency (zxcvbn's
 * list, drawn from the Xato corpus of 10 million), lower-cased. Loaded on the
 * first check only (about 60 ms and a few MiB): the server never sets
 * passwords, so it never pays.
 */
function commonPasswords(): Promise<Set<string>> {
  return (common ??= import('@zxcvbn-ts/language-common').then(({ dictionary }) => new Set(dictionary['passwords-common'].map((entry) => entry.toLowerCase()))));
}

/** Why `password` may not be set for the account with `email`; undefined when it may. */
export async function passwordProblem(password: string, email: string, policy: PasswordPolicy): Promise<string | undefined> {
  // Characters as NIST counts them (code points: an emoji is one, not two),
  // as typed and as compared (accounts/passwords.ts, NFKC), whichever is
  // fewer: an e followed by a combining accent is the one é, Hangul typed as
  // its letters the syllables they make, and one ﷺ, which NFKC writes out as
  // eighteen letters, is still one character typed.
  if (Math.min([...password].length, [...password.normalize('NFKC')].length) < policy.minLength) return `the password must be at least ${policy.minLength} characters`;
  // As typed, four bytes of UTF-8 at most each: the longest, form-encoded, is
  // 12 KiB, inside the sign-in form's 16 (http/form-body.ts).
  if ([...password].length > MAX_PASSWORD_LENGTH) return `the password must be at most ${MAX_PASSWORD_LENGTH} characters`;
  if (CONTROL_CHARACTERS.test(password)) return 'the password must not contain control characters';
  if (/^\s+$/u.test(password)) return 'the password must not be only spaces';
  // Compatibility forms folded too: full-width "ｐａｓｓｗｏｒｄ１" is "password1".
  const folded = password.normalize('NFKC').toLowerCase();
  const mailbox = email.toLowerCase();
  if (folded === mailbox || folded === mailbox.slice(0, mailbox.lastIndexOf('@'))) return 'the password must not be the email address or its part before the @';
  if ([...folded].every((character, _, all) => character === all[0])) return 'the password must not be one character repeated';
  // Case-insensitive: "Password1" is tried as soon as "password1".
  if ((await commonPasswords()).has(folded)) return 'the password is one of the most commonly used passwords, which attackers try first; choose another';
  return undefined;
}
