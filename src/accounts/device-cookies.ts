// Device cookies (OWASP, "Slow down online guessing attacks with device
// cookies"): a browser that has signed in to an account keeps a cookie that
// the sign-in throttle recognises, so that it is counted on its own rather
// than in the email's count, which anyone can fill by guessing.
//
// The cookie is `<browser id>.<MAC>`, the MAC (a keyed digest under a key
// derived from the encryption key) binding the id to the password the browser
// signed in with. So it cannot be made up, it is worth nothing for another
// account, and a new password (`user set-password`, after a compromise, or an
// email given to someone else) leaves every earlier browser counted with the
// email again.
import { randomBytes } from 'node:crypto';
import type { KeyedMac } from '../keys/sealed-secrets.js';

export class DeviceCookies {
  constructor(private readonly mac: KeyedMac) {}

  /**
   * The cookie for a browser that has just signed in with the password the
   * account holds as `credential` (see Accounts.checkPassword), keeping the
   * browser's id where it was recognised already.
   */
  issue(credential: string, browser?: string): string {
    const id = browser ?? randomBytes(16).toString('base64url');
    return `${id}.${this.mac.make(`${id} ${credential}`)}`;
  }

  /**
   * The browser's id, where `cookie` was issued to it for `credential`, the
   * password the account it is signing in to holds now (undefined: no such
   * account).
   */
  recognise(cookie: string | undefined, credential: string | undefined): string | undefined {
    if (!cookie || !credential) return undefined;
    const [id, mac, extra] = cookie.split('.');
    if (!id || !mac || extra !== undefined) return undefined;
    // Under any encryption key: one issued before a new key was put first still counts.
    return this.mac.check(`${id} ${credential}`, mac) ? id : undefined;
  }
}
