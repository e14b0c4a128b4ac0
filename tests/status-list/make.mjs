// Makes a signed Status List Token with an implementation other than tokengate's: npm
// `@sd-jwt/jwt-status-list` builds and compresses the list, npm `jose` signs it.
// Installed pinned by scripts/install-test-deps.sh into .tools/status-list; used by
// tests/it/status_list.rs, which serves what this prints.
//
//   echo SPEC | node make.mjs --module-dir DIR
//
// DIR is .tools/status-list (its node_modules). SPEC is a JSON object:
//   { "bits": 1|2|4|8, "statuses": [0, 1, 2, ...],   one status per index
//     "key": "/path/private.pem", "alg": "ES256", "kid": "ec256",
//     "claims": { "iss": ..., "sub": ..., "iat": ..., "ttl": ..., "exp": ... },
//     "typ": "statuslist+jwt" }                       optional, for wrong-typ lists
// The compact JWS is written to stdout.

import { readFileSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const at = process.argv.indexOf('--module-dir');
if (at < 0 || !process.argv[at + 1]) {
  console.error('usage: node make.mjs --module-dir DIR < spec.json');
  process.exit(2);
}
const dir = resolve(process.argv[at + 1]);
const require = createRequire(join(dir, 'package.json'));
const { StatusList, createHeaderAndPayload } = require('@sd-jwt/jwt-status-list');
const jose = await import(
  pathToFileURL(join(dir, 'node_modules', 'jose', 'dist', 'webapi', 'index.js')).href
);

const spec = JSON.parse(readFileSync(0, 'utf8'));
const list = new StatusList(spec.statuses, spec.bits);
const { header, payload } = createHeaderAndPayload(list, { ...spec.claims }, {
  alg: spec.alg,
  typ: 'statuslist+jwt',
  kid: spec.kid,
});
if (spec.typ !== undefined) header.typ = spec.typ;
const key = createPrivateKey(readFileSync(spec.key));
const jwt = await new jose.SignJWT(payload).setProtectedHeader(header).sign(key);
process.stdout.write(jwt);
