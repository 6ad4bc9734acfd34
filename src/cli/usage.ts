export const USAGE = `Usage: portcullis <command> [options]

Clients
  client create --name NAME [--redirect-uri URI ...]   at least one for authorization_code (the default)
                [--post-logout-redirect-uri URI ...] [--grant-type TYPE ...]
                [--scope "openid profile email offline_access"] [--scope ...] [--public | --native]
                [--id-token-alg ES256|EdDSA|RS256] [--logo-uri URI] [--client-uri URI]
                [--policy-uri URI] [--tos-uri URI] [--jwks-file PATH]
                [--backchannel-logout-uri URI] [--require-par] [--require-dpop] [--require-jar]
                [--subject-type public|pairwise] [--json]
                                            --id-token-alg: RS256 (the default) or SIGNING_ALG's;
                                            --jwks-file: authenticates with its keys (a JWK Set of
                                            public keys; private_key_jwt), not a secret;
                                            --backchannel-logout-uri: told when a person's session
                                            with it ends here (OpenID Back-Channel Logout);
                                            --require-par: its sign-ins only through the PAR
                                            endpoint (RFC 9126); --require-dpop: its token
                                            requests only with a DPoP proof (RFC 9449);
                                            --require-jar: its authorization requests only as
                                            request objects signed with its keys (RFC 9101);
                                            --subject-type pairwise: its people's sub is one made
                                            for the host of its redirect URIs (all on one), not
                                            the user id (OpenID Connect Core §8); for good
  client list [--json]
  client show CLIENT_ID [--json]           its registration, and how many people consented to it
  client update CLIENT_ID [--name NAME] [--redirect-uri URI ...] [--post-logout-redirect-uri URI ...]
                [--grant-type TYPE ...] [--scope SCOPES ...] [--id-token-alg ALG] [--logo-uri URI]
                [--client-uri URI] [--policy-uri URI] [--tos-uri URI]
                [--jwks-file PATH] [--backchannel-logout-uri URI]
                [--require-par | --no-require-par] [--require-dpop | --no-require-dpop]
                [--require-jar | --no-require-jar] [--json]
                                            what is given replaces what was registered ("" removes
                                            a shown URI or the back-channel one); the id and secret
                                            stay, and what was issued within the new registration;
                                            new keys only for a client made with keys
  client disable CLIENT_ID [--json]        refuses the client everywhere, and ends its codes and
                                            tokens (consents stay), until client enable
  client enable CLIENT_ID [--json]
  client delete CLIENT_ID [--json]
  client rotate-secret CLIENT_ID [--json]   a new secret; the old one stops working at once

APIs (resource servers)
  api create --identifier URI --scope NAME[=DESCRIPTION] [--scope ...] [--name NAME]
             [--token-format jwt|opaque] [--ttl 15m] [--json]
                                    named after the identifier's host unless --name; jwt tokens
                                    unless --token-format; --ttl from 1s to 24h
  api list [--json]
  api update IDENTIFIER [--name NAME] [--scope NAME[=DESCRIPTION] ...] [--token-format jwt|opaque]
             [--ttl 15m] [--json]
                                    what is given replaces what was registered; a scope taken
                                    away leaves consents and clients (tokens issued keep it)
  api delete IDENTIFIER [--json]

Users
  user create --email EMAIL [--name NAME] --password-stdin [--email-verified]
              [--totp required|off] [--json]
  user list [--json]
  user show EMAIL|ID [--json]       the user, their open sessions and the consents they gave
  user show EMAIL|ID|SUB --client CLIENT_ID [--json]
                                    also the sub that client knows them by; SUB: the user a
                                    pairwise client's sub names
  user update EMAIL|ID [--email EMAIL] [--name NAME] [--email-verified | --email-unverified]
                       [--totp required|off] [--json]
                                    a new email is unverified unless --email-verified; --totp
                                    required: a code from an authenticator app after the password
                                    (set up at the next sign-in); off: none, the app forgotten
  user reset-totp EMAIL|ID [--json] forgets the user's authenticator app (a lost phone) and
                                    signs them out everywhere: they set up a new one at their
                                    next sign-in
  user set-password EMAIL|ID --password-stdin [--json]   also signs the user out everywhere
  user revoke EMAIL|ID [--client CLIENT_ID] [--json]
                                    ends sessions, consents and the tokens issued under them;
                                    with --client, only what they gave that app (they stay signed in)
  user disable EMAIL|ID [--json]    refuses the user's sign-ins, sessions and tokens, and ends
                                    what revoke ends, until user enable
  user enable EMAIL|ID [--json]     lets a disabled user sign in again
  user delete EMAIL|ID [--json]     the user and everything revoke ends

Signing keys
  keys list [--json]
  keys rotate [--now] [--json]
  keys retire KID [--compromised] [--json]

Database
  migrate                 apply pending migrations (the server also does this at start; other
                          commands only on a new database); exit 1 when the database is ahead
                          of this release
  copy --to postgresql://HOST/DATABASE [--json]
                          copies everything the embedded database holds (clients, users, keys,
                          sessions, consents, tokens, the audit trail) into a new PostgreSQL
                          database, for a server to move there; its server must be stopped, and
                          a password goes in PGPASSWORD, not in --to

Audit trail
  audit list [--since 30d] [--limit 100] [--json]
                          who changed what with this CLI, and when (every command but the
                          list and show commands; oldest first)
  audit forget EMAIL|ID ... [--json]
                          erases a person from it: in the user commands that named them, the
                          account, emails and names become [erased] (what was done stays); only
                          what is named: give every email and id they had

Version
  --version, -v, version  this copy's version (also in the server's "portcullis listening" line)

Configuration comes from the environment (DATABASE_URL, DATA_DIR, ...); see README.md.
`;

/**
 * The usage of one command (its lines in USAGE), for a usage error in it: the
 * whole text would bury the one-line error above it.
 */
export function usageOf(command: string): string {
  const lines = USAGE.split('\n');
  const start = lines.findIndex((line) => line === `  ${command}` || line.startsWith(`  ${command} `));
  if (start === -1) return USAGE;
  let end = start + 1;
  while (end < lines.length && /^ {4,}\S/.test(lines[end]!)) end++;
  const own = lines.slice(start, end).map((line, index) => `${index === 0 ? '  portcullis ' : '             '}${line.slice(2)}`);
  return `Usage:\n${own.join('\n')}\n\nportcullis --help lists every command.\n`;
}

export class UsageError extends Error {
  override name = 'UsageError';
}
