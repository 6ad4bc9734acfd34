// Secrets the server must use again later (private signing keys, cookie keys)
// cannot be hashed like passwords or token ids, so they are sealed before they
// reach the database: AES-256-GCM under an encryption key that never enters
// it. A database dump or backup alone then signs nothing and forges no cookie.
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { syncDirectory } from '../persistence/file-sync.js';
import { sameDigest } from '../persistence/hash.js';

export class SealError extends Error {
  override name = 'SealError';
}

/** Where the encryption keys come from: ENCRYPTION_KEYS, or a key file made on first start. */
export type EncryptionKeySource = { kind: 'env'; keys: string[] } | { kind: 'file'; path: string };

/**
 * A MAC (base64url) made under the current encryption key and checked under
 * every one: what this service hands out and must later recognise as its own
 * (a cookie), through an ENCRYPTION_KEYS rollout.
 */
export interface KeyedMac {
  make(value: string): string;
  check(value: string, mac: string): boolean;
}

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

interface EncryptionKey {
  /** Names the key in what it sealed, so a value sealed under a key no longer configured is reported as such. */
  id: string;
  key: Buffer;
}

const hmac = (key: Buffer, value: string): string => createHmac('sha256', key).update(value).digest('base64url');
const derive = (key: EncryptionKey, purpose: string): Buffer => Buffer.from(hkdfSync('sha256', key.key, 'portcullis', purpose, 32));

export class SecretSealer {
  private readonly keys: EncryptionKey[];

  /** `secrets`: high-entropy strings of 32+ characters; the first seals, every one opens. */
  constructor(secrets: string[]) {
    if (secrets.length === 0) throw new SealError('at least one encryption key is required');
    this.keys = secrets.map((secret) => {
      if (secret.length < 32) throw new SealError('each encryption key must be at least 32 characters');
      // Operators paste any long random string; HKDF turns it into exactly 256 bits.
      const key = Buffer.from(hkdfSync('sha256', secret, 'portcullis', 'secrets at rest v1', 32));
      return { id: createHash('sha256').update(key).digest('base64url').slice(0, 8), key };
    });
  }

  /**
   * An HMAC-SHA256 (base64url) under a key derived from the current
   * encryption key for `purpose` alone: a digest of a guessable value (an
   * address, an email) that only the holder of the encryption key can
   * compute. A new encryption key gives new digests.
   */
  keyedDigest(purpose: string): (value: string) => string {
    const key = this.derivedKey(purpose);
    return (value) => hmac(key, value);
  }

  /**
   * 256 bits derived from the current encryption key for `purpose` alone:
   * the same on every instance given the same key, and useless for anything
   * else (HKDF's info separates the purposes).
   */
  derivedKey(purpose: string): Buffer {
    return derive(this.keys[0]!, purpose);
  }

  /**
   * keyedDigest under each encryption key, the current one's first: to
   * find a stored digest made before a new key was put first (on this
   * instance, or on another still running with the list before).
   */
  keyedDigests(purpose: string): (value: string) => string[] {
    const keys = this.keys.map((key) => derive(key, purpose));
    return (value) => keys.map((key) => hmac(key, value));
  }

  /**
   * keyedDigests as a MAC: made under the current key, and checked under any
   * key, so that one made by an instance still on the list before a new key
   * was put first is recognised.
   */
  keyedMac(purpose: string): KeyedMac {
    const digests = this.keyedDigests(purpose);
    return {
      make: (value) => digests(value)[0]!,
      check: (value, mac) => digests(value).some((digest) => sameDigest(digest, mac)),
    };
  }

  /** Only values in this format are sealed; a legacy row stored in plain never contains it. */
  static isSealed(value: string): boolean {
    return value.startsWith(`${VERSION}.`);
  }

  /**
   * `context` names what is sealed (e.g. the row's key): it is authenticated
   * with the ciphertext, so a sealed value copied into another row does not open.
   */
  seal(plaintext: string, context: string): string {
    const { id, key } = this.keys[0]!;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.from(context));
    const body = Buffer.concat([iv, cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return `${VERSION}.${id}.${body.toString('base64url')}`;
  }

  /** Whether `sealed` was sealed with the key that seals now; if not, it is due to be sealed again. */
  isCurrent(sealed: string): boolean {
    return sealed.split('.')[1] === this.keys[0]!.id;
  }

  open(sealed: string, context: string): string {
    const [version, id, encoded] = sealed.split('.');
    if (version !== VERSION || !id || !encoded) throw new SealError(`${context} is not sealed in a format this version reads`);
    const entry = this.keys.find((candidate) => candidate.id === id);
    if (!entry) {
      throw new SealError(
        `${context} was sealed with encryption key ${id}, which is not configured (configured: ${this.keys.map((k) => k.id).join(', ')}); ` +
          'set ENCRYPTION_KEYS to include the key it was sealed with (an encryption key file made by the first start, or by the CLI run before it, holds it)',
      );
    }
    const body = Buffer.from(encoded, 'base64url');
    if (body.length < IV_BYTES + TAG_BYTES) throw new SealError(`${context} is truncated`);
    const decipher = createDecipheriv('aes-256-gcm', entry.key, body.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(body.subarray(IV_BYTES, body.length - TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch {
      throw new SealError(`${context} failed authentication: it was altered, or belongs to another row`);
    }
  }

  /** The id of the key that seals, for logs; never the key. */
  get sealingKeyId(): string {
    return this.keys[0]!.id;
  }
}

/**
 * The sealer for a configuration. Without ENCRYPTION_KEYS, a key is generated
 * once into the key file (owner-only) and read from there on later starts;
 * generated only if `mayGenerate` agrees (the database holds nothing sealed
 * yet), so that a start pointed at the wrong key file, or at none, writes no
 * key that could never open what is stored. Returns whether the key was
 * generated now, and whether the file is readable by others than its owner,
 * so the server can say so.
 */
export async function loadSealer(
  source: EncryptionKeySource,
  mayGenerate: () => Promise<boolean> = async () => true,
): Promise<{ sealer: SecretSealer; generated: boolean; exposed: boolean }> {
  if (source.kind === 'env') return { sealer: new SecretSealer(source.keys), generated: false, exposed: false };
  const existing = await openKeyFile(source.path);
  if (existing) {
    // Like ssh with a private key: say so when others than the owner may read it.
    const exposed = ((await stat(source.path)).mode & 0o077) !== 0;
    return { sealer: existing, generated: false, exposed };
  }
  if (!(await mayGenerate())) {
    throw new SealError(
      `the encryption key file ${source.path} does not exist, and the database holds keys sealed with an encryption key: ` +
        'set ENCRYPTION_KEYS, or ENCRYPTION_KEY_FILE, to that key',
    );
  }
  await mkdir(path.dirname(source.path), { recursive: true });
  try {
    await createKeyFile(source.path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw new SealError(`cannot create the encryption key file ${source.path}: ${(error as Error).message}`);
    return loadSealer(source);
  }
  const created = await readKeyFile(source.path);
  return { sealer: new SecretSealer([created!]), generated: true, exposed: false };
}

/**
 * Writes a new key to `file`, complete or not at all: written and synced
 * under a temporary name, then linked into place. A process killed while
 * writing leaves no empty key file that would stop every later start. The
 * link fails with EEXIST if another process (server and CLI starting
 * together) made the file first: it then reads that one.
 */
async function createKeyFile(file: string): Promise<void> {
  const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(temporary, 'wx', 0o600);
  try {
    await handle.writeFile(`${randomBytes(32).toString('base64url')}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temporary, file);
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
  // Its name too: after a power loss, secrets the database kept, sealed with
  // a key whose file was lost, could not be read again.
  syncDirectory(path.dirname(file));
}

/** The sealer of an existing key file; undefined if there is none yet. Unreadable, empty or short: an error. */
export async function openKeyFile(file: string): Promise<SecretSealer | undefined> {
  const key = await readKeyFile(file);
  if (!key) return undefined;
  try {
    return new SecretSealer([key]);
  } catch (error) {
    throw new SealError(`the encryption key file ${file} (ENCRYPTION_KEY_FILE): ${(error as Error).message}`);
  }
}

async function readKeyFile(file: string, retries = 1): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SealError(`cannot read the encryption key file ${file}: ${(error as Error).message}`);
  }
  const key = text.trim();
  if (key) return key;
  // A concurrent creator may not have written it yet; an empty file is not a key.
  if (retries > 0) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    return readKeyFile(file, retries - 1);
  }
  throw new SealError(`the encryption key file ${file} is empty; delete it only if the database holds no sealed secrets yet`);
}
