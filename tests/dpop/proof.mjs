// Makes DPoP proofs (RFC 9449 §4.2) for tests/it/dpop.rs with the npm `jose` library
// (installed by scripts/install-test-deps.sh into .tools/ssf) and Node's own crypto:
// the proof's signature, its `jwk`, the key's RFC 7638 thumbprint and the `ath` hash
// all come from an implementation independent of tokengate's.
//
//   node proof.mjs --module DIR < [{
//       "key": PEM_PATH,          private key that signs (or an HMAC secret file with
//                                 "secret": true)
//       "alg": "ES256",
//       "jwk_from": PEM_PATH,     optional: whose public key goes in the header's jwk
//                                 (default: the signing key's own)
//       "jwk_extra": {...},       optional: members added to the jwk (e.g. "d")
//       "header": {...},          optional: merged over {typ, alg, jwk}; null removes
//       "payload": {...},         the claims; "ath": "$ath" becomes the hash of "token"
//       "token": "..."            the access token for "$ath"
//   }, ...]
// prints [{"proof": COMPACT_JWS, "jkt": THUMBPRINT_OF_THE_HEADER_JWK}, ...]
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { createHash, createPrivateKey, createPublicKey, createSecretKey } from "node:crypto";

const args = process.argv.slice(2);
const at = args.indexOf("--module");
if (at < 0 || !args[at + 1]) {
  console.error("usage: proof.mjs --module DIR < requests.json");
  process.exit(2);
}
const jose = await import(pathToFileURL(`${args[at + 1]}/dist/node/esm/index.js`).href);
const requests = JSON.parse(readFileSync(0, "utf8"));

const out = [];
for (const r of requests) {
  const key = r.secret
    ? createSecretKey(readFileSync(r.key))
    : createPrivateKey(readFileSync(r.key));
  const publicKey = r.jwk_from
    ? createPublicKey(readFileSync(r.jwk_from))
    : createPublicKey(key);
  const jwk = { ...(await jose.exportJWK(publicKey)), ...(r.jwk_extra ?? {}) };
  const jkt = await jose.calculateJwkThumbprint(jwk, "sha256");
  const header = { typ: "dpop+jwt", alg: r.alg, jwk, ...(r.header ?? {}) };
  for (const [k, v] of Object.entries(header)) if (v === null) delete header[k];
  const payload = { ...r.payload };
  if (payload.ath === "$ath") {
    payload.ath = createHash("sha256").update(r.token, "ascii").digest("base64url");
  }
  const proof = await new jose.CompactSign(Buffer.from(JSON.stringify(payload)))
    .setProtectedHeader(header)
    .sign(key);
  out.push({ proof, jkt });
}
process.stdout.write(JSON.stringify(out));
