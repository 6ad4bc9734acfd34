// What a command that ends access (user revoke, disable, delete; client
// disable, enable) removed, for the CLI to tell. A module of its own: the
// CLI loads it without oidc-provider.

/** What ending access removed, by kind of provider artifact (Session, Grant, RefreshToken, Interaction, ...). */
export type Removed = Record<string, number>;

/** Counts the kinds a `DELETE ... RETURNING kind` of provider artifacts answered. */
export function countByKind(rows: { kind: string }[]): Removed {
  const removed: Removed = {};
  for (const { kind } of rows) removed[kind] = (removed[kind] ?? 0) + 1;
  return removed;
}

/** The kinds that are not codes or tokens: what signing in made, and consents. */
export const NOT_TOKENS = ['Session', 'Interaction', 'Grant'] as const;

/** How many codes and tokens (every other kind) `removed` counts. */
export const codesAndTokens = (removed: Removed): number =>
  Object.entries(removed).reduce((sum, [kind, n]) => ((NOT_TOKENS as readonly string[]).includes(kind) ? sum : sum + n), 0);
