// What the benchmark registers and asks for, the same for Portcullis and the baseline.
export const REDIRECT_URI = 'http://127.0.0.1:9/callback';
export const AUDIENCE = 'https://api.example.com';
export const REFRESH_SCOPE = 'openid offline_access';
export const LOGIN_SCOPE = 'openid email';
export const RESOURCE_SERVER = 'examples/resource-server/server.ts';
