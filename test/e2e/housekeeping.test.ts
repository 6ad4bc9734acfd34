// Rows past their expiry leave the database without anyone asking.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { authorizationRequest, discover, REDIRECT_URI, visit } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

let pc: TestPortcullis;

beforeAll(async () => {
  pc = await startPortcullis({ INTERACTION_TTL: '3s', SWEEP_INTERVAL: '1s' });
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

it('expired interactions are removed by the sweeper, and an expired one shows a friendly page', async () => {
  const { client_id, client_secret } = await pc.createClient({ name: 'Sweep', redirectUris: [REDIRECT_URI] });
  const rp = await discover(pc.issuer, client_id, client_secret);
  const ua = new UserAgent();
  const login = await visit(ua, (await authorizationRequest(rp, 'openid')).url);
  const prisma = pc.server.services.database.prisma;
  expect(await prisma.providerArtifact.count({ where: { kind: 'Interaction' } })).toBe(1);

  await new Promise((resolve) => setTimeout(resolve, 5500));
  expect(await prisma.providerArtifact.count({ where: { kind: 'Interaction' } })).toBe(0);

  const late = await ua.open(login.url);
  expect(late.status).toBe(400);
  expect(late.html).toContain('Your sign-in expired');
});
