// Holds the provider instance the app serves. oidc-provider takes its key set at
// construction, so when another instance (or the CLI) rotates keys we build a
// new provider and swap it in; state lives in the database, so nothing is lost.
import type Provider from 'oidc-provider';
import type { Logger } from '../logger.js';
import type { Database, Prisma } from '../persistence/database.js';
import { SealError } from '../keys/sealed-secrets.js';
import { holdBackScheduledKeys, keepPublishedFor, keepReplacedKeysPublished, loadSigningKeys, signingKeysVersion } from '../keys/signing-keys.js';
import type { ProviderServices } from './configuration.js';
import { createProvider } from './provider.js';

type HostServices = Omit<ProviderServices, 'signingKeys' | 'dpopNonceSecret'> & Pick<Database, 'exclusively'>;

export class ProviderHost {
  private constructor(
    private readonly services: HostServices & Pick<ProviderServices, 'dpopNonceSecret'>,
    public current: Provider,
    private version: string,
  ) {}

  static async create(hostServices: HostServices): Promise<ProviderHost> {
    // Derived from the encryption key, so every instance issues and accepts the same nonces.
    const services = { ...hostServices, dpopNonceSecret: hostServices.sealer.derivedKey('dpop nonces v1') };
    await settleKeySchedule(services);
    const [version, signingKeys] = await Promise.all([signingKeysVersion(services.prisma), loadSigningKeys(services.prisma, services.sealer)]);
    return new ProviderHost(services, createProvider({ ...services, signingKeys }), version);
  }

  /**
   * Why the keys this server signs with and publishes may no longer be the
   * current ones, if they may: signing keys changed that it cannot open,
   * sealed with an encryption key its ENCRYPTION_KEYS lacks (another server
   * started with a new one resealed them). Until a reload succeeds it would
   * sign with a replaced key, or one retired as compromised: not ready.
   */
  keysOutOfDate: string | undefined;

  private refreshing?: Promise<boolean>;
  private askedAgain = false;

  /**
   * Rebuilds the provider if the published signing keys changed. Returns
   * whether it did. One runs at a time; a call while one runs (an announced
   * change during a timer's reload, which may have read the keys before the
   * change) makes it look once more before it ends.
   */
  refresh(): Promise<boolean> {
    if (this.refreshing) {
      this.askedAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      let changed = false;
      do {
        this.askedAgain = false;
        changed = (await this.reload()) || changed;
      } while (this.askedAgain);
      return changed;
    })().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async reload(): Promise<boolean> {
    const prisma: Prisma = this.services.prisma;
    const version = await signingKeysVersion(prisma);
    if (version === this.version) {
      // Changed back to the keys this server holds.
      this.keysOutOfDate = undefined;
      return false;
    }
    await settleKeySchedule(this.services);
    let signingKeys: Awaited<ReturnType<typeof loadSigningKeys>>;
    try {
      signingKeys = await loadSigningKeys(prisma, this.services.sealer);
    } catch (error) {
      if (error instanceof SealError) this.keysOutOfDate = 'the signing keys changed and this server cannot open them (see ENCRYPTION_KEYS)';
      throw error;
    }
    this.current = createProvider({ ...this.services, signingKeys });
    this.version = version;
    this.keysOutOfDate = undefined;
    (this.services.logger as Logger).info('signing keys changed; provider reloaded', { keys: signingKeys.length });
    return true;
  }
}

/**
 * Holds this server's rules on the schedule in the database: no key signs
 * sooner after it was made than this server's KEY_ACTIVATION_DELAY (see
 * holdBackScheduledKeys), and replaced keys stay published for as long as
 * this server's tokens live (see keepReplacedKeysPublished).
 */
async function settleKeySchedule(services: Pick<HostServices, 'prisma' | 'exclusively' | 'config' | 'apis' | 'logger'>): Promise<void> {
  const { prisma, config, logger } = services;
  const held = await holdBackScheduledKeys(services, config.keyActivationDelay);
  if (held.length > 0) {
    logger.warn('a key rotation was scheduled with a shorter KEY_ACTIVATION_DELAY than this server\'s; its keys now sign from later', {
      keys: held.map((key) => key.kid),
      activatesAt: held[0]!.activatesAt.toISOString(),
      keyActivationDelay: config.keyActivationDelay,
    });
  }
  const lengthened = await keepReplacedKeysPublished(prisma, await keepPublishedFor(config, services.apis));
  if (lengthened > 0) logger.info('replaced signing keys stay published for as long as tokens of this server live', { keys: lengthened });
}
