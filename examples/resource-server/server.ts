// Runs the example API: ISSUER, AUDIENCE, PORT, for opaque tokens
// INTROSPECTION_CLIENT_ID / INTROSPECTION_CLIENT_SECRET from `portcullis api create`,
// and ALLOWED_ORIGINS (comma-separated) for browser apps calling it.
import { createResourceServer } from './app.js';

const { ISSUER = 'http://localhost:3000', AUDIENCE, PORT = '4000', INTROSPECTION_CLIENT_ID, INTROSPECTION_CLIENT_SECRET, ALLOWED_ORIGINS = '' } = process.env;
if (!AUDIENCE) {
  process.stderr.write('AUDIENCE is required: the identifier given to `portcullis api create --identifier`\n');
  process.exit(2);
}
const app = createResourceServer({
  issuer: ISSUER,
  audience: AUDIENCE,
  introspection:
    INTROSPECTION_CLIENT_ID && INTROSPECTION_CLIENT_SECRET
      ? { clientId: INTROSPECTION_CLIENT_ID, clientSecret: INTROSPECTION_CLIENT_SECRET }
      : undefined,
  allowedOrigins: ALLOWED_ORIGINS.split(',').map((origin) => origin.trim()).filter(Boolean),
});
const server = app.listen(Number(PORT), '127.0.0.1', () => process.stdout.write(`resource server listening on http://127.0.0.1:${PORT}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
