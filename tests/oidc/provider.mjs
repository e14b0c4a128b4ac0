// A real OpenID provider for tests/idp.rs: npm `oidc-provider` 8.x (installed by
// scripts/install-test-deps.sh into .tools/oidc), configured for the client credentials
// grant with resource indicators, so that its token endpoint issues real JWT access
// tokens (RFC 9068, `typ: at+jwt`) signed with the key the test names.
//
//   node provider.mjs --module DIR --port N --issuer-file FILE \
//        --key KID=PRIVATE.pem [--key KID=PRIVATE.pem ...] --sign KID [--alg RS256]
//
// DIR is the installed oidc-provider package. It listens on 127.0.0.1:N; with N = 0 the
// kernel picks a free port. The issuer is http://127.0.0.1:PORT with the port actually
// bound, and is written to FILE once the server listens (like Envoy's
// --admin-address-path): whoever started the provider reads it there, so no port is
// picked free and then raced for. Keys are PEM private keys turned into the provider's
// JWKS (the public halves are what it publishes at /jwks). A rotation is a restart on
// the same port with another --key list: the issuer URL stays the same.
//
// For the test's bookkeeping only, GET /__test/hits answers how many times the JWKS and
// the discovery document were fetched by this process.
//
// Back-Channel Logout (tests/it/backchannel.rs): the client is registered with
// `backchannel_logout_session_required`, and a token request may carry `sid`, which the
// JWT access token then carries (oidc-provider's extraTokenClaims, from the form body: a
// client-credentials token has no session of its own, so the test names one).
// POST /__test/backchannel-logout?uri=U&sub=S[&sid=I] makes the provider send its real
// logout token (client.backchannelLogout, what end_session does for every client of a
// session) to U, tokengate's endpoint, and answers 200 with {"ok":true} when U answered
// 200, else {"ok":false,"status":N}. The uri is given per call because tokengate binds
// its port after the provider has its issuer.

import { createPrivateKey } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

function parseArgs(argv) {
  const out = { key: [], alg: 'RS256' };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`--${name} needs a value`);
    if (name === 'key') out.key.push(value); else out[name] = value;
  }
  for (const required of ['module', 'port', 'issuer-file', 'sign']) {
    if (!out[required]) throw new Error(`--${required} is required`);
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
const { default: Provider } = await import(pathToFileURL(join(args.module, 'lib', 'index.js')).href);

const keys = args.key.map((spec) => {
  const [kid, path] = spec.split('=');
  const jwk = createPrivateKey(readFileSync(path)).export({ format: 'jwk' });
  return { ...jwk, kid, use: 'sig', alg: args.alg };
});
if (!keys.some((k) => k.kid === args.sign)) throw new Error(`--sign ${args.sign} is not among the keys`);

// Listen first: the issuer names the port the kernel gave.
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(args.port), '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const RESOURCE = 'https://api.test';
const provider = new Provider(issuer, {
  jwks: { keys },
  cookies: { keys: ['tokengate-test-cookie-key'] },
  ttl: { ClientCredentials: 600 },
  clients: [{
    client_id: 'tokengate-test',
    client_secret: 'tokengate-test-client-secret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    backchannel_logout_uri: 'http://127.0.0.1/set-per-call',
    backchannel_logout_session_required: true,
  }],
  extraTokenClaims: (ctx) => {
    const sid = ctx.oidc.body?.sid;
    return typeof sid === 'string' && sid ? { sid } : undefined;
  },
  features: {
    devInteractions: { enabled: false },
    backchannelLogout: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'read write',
        audience: 'api',
        accessTokenTTL: 600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: args.alg, kid: args.sign } },
      }),
    },
  },
});

const hits = { jwks: 0, discovery: 0, token: 0 };
provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/hits') {
    ctx.body = hits;
    return;
  }
  if (ctx.path === '/__test/backchannel-logout' && ctx.method === 'POST') {
    const { uri, sub, sid } = ctx.query;
    const client = await provider.Client.find('tokengate-test');
    Object.defineProperty(client, 'backchannelLogoutUri', { value: uri, configurable: true });
    if (!sid) Object.defineProperty(client, 'backchannelLogoutSessionRequired', { value: false, configurable: true });
    try {
      await client.backchannelLogout(sub, sid);
      ctx.body = { ok: true };
    } catch (err) {
      ctx.body = { ok: false, status: err.response?.statusCode ?? 0, error: err.message };
    } finally {
      Object.defineProperty(client, 'backchannelLogoutSessionRequired', { value: true, configurable: true });
    }
    return;
  }
  if (ctx.path === '/jwks') hits.jwks += 1;
  if (ctx.path === '/.well-known/openid-configuration') hits.discovery += 1;
  if (ctx.path === '/token') hits.token += 1;
  await next();
});

server.on('request', provider.callback());
// Written whole, then renamed: a reader never sees half an issuer.
const file = args['issuer-file'];
writeFileSync(`${file}.tmp`, `${issuer}\n`);
renameSync(`${file}.tmp`, file);
console.log(`oidc-provider listening on ${issuer} (signing with ${args.sign})`);
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
