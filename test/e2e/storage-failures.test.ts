// When the database refuses a write, the client gets an error and no token:
// nothing is handed out that was not stored (src/provider/request-scope.ts
// lets token saves overlap the rest of the request, never the response).
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';

let pc: TestPortcullis;
let admin: pg.Client;

beforeAll(async () => {
  pc = await startPortcullis();
  admin = pc.outsideConnection();
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await pc?.close();
});

it('a token whose save fails is not handed out, and the next one is', async () => {
  const robot = await pc.createClient({ name: 'Robot', grantTypes: ['client_credentials'], scope: 'openid' });
  expect((await pc.clientCredentials(robot)).status).toBe(200);

  await admin.query(`CREATE FUNCTION refuse_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION 'disk full (simulated)'; END $$`);
  await admin.query(`CREATE TRIGGER refuse_tokens BEFORE INSERT ON provider_artifacts
                     FOR EACH ROW WHEN (NEW.kind = 'ClientCredentials') EXECUTE FUNCTION refuse_tokens()`);
  try {
    const refused = await pc.clientCredentials(robot);
    expect(refused.status).toBe(500);
    expect(refused.body).toEqual({ error: 'server_error', error_description: 'oops! something went wrong' });
    expect(refused.body.access_token).toBeUndefined();
  } finally {
    await admin.query('DROP TRIGGER refuse_tokens ON provider_artifacts');
    await admin.query('DROP FUNCTION refuse_tokens()');
  }
  const { status, body } = await pc.clientCredentials(robot);
  expect(status).toBe(200);
  const introspected = await fetch(`${pc.issuer}/token/introspection`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${robot.client_id}:${robot.client_secret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ token: body.access_token as string }),
  });
  expect(await introspected.json()).toMatchObject({ active: true, client_id: robot.client_id });
  // The failure was logged as a server error, with no token in the line.
  expect(pc.errors.some((line) => line.includes('disk full (simulated)'))).toBe(true);
  expect(pc.errors.join('\n')).not.toContain(body.access_token as string);
});
