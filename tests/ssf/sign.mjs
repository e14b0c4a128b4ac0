// Signs Security Event Tokens for tests/it/ssf.rs with the npm `jose` library (installed
// by scripts/install-test-deps.sh into .tools/ssf): an implementation independent of
// tokengate's, so that the receiver is shown to accept what another JOSE stack produces.
//
//   node sign.mjs --module DIR sign  < [{"key": PEM_PATH, "alg": "ES256",
//                                        "header": {...}, "payload": {...}}, ...]
//       prints a JSON array of compact JWS, one per request ("payload_raw": TEXT signs
//       that text as the payload instead, for JSON no serializer would write);
//   node sign.mjs --module DIR jwks  < [{"key": PEM_PATH, "alg": "ES256", "kid": "k"}, ...]
//       prints the JWKS of the public keys.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { createPrivateKey, createPublicKey } from "node:crypto";

const args = process.argv.slice(2);
const at = args.indexOf("--module");
if (at < 0 || !args[at + 1]) {
  console.error("usage: sign.mjs --module DIR (sign|jwks) < requests.json");
  process.exit(2);
}
const jose = await import(pathToFileURL(`${args[at + 1]}/dist/node/esm/index.js`).href);
const mode = args.filter((_, i) => i !== at && i !== at + 1)[0];
const requests = JSON.parse(readFileSync(0, "utf8"));

if (mode === "sign") {
  const out = [];
  for (const r of requests) {
    const key = createPrivateKey(readFileSync(r.key));
    const header = { alg: r.alg, ...r.header };
    const payload = r.payload_raw ?? JSON.stringify(r.payload);
    out.push(await new jose.CompactSign(Buffer.from(payload))
      .setProtectedHeader(header)
      .sign(key));
  }
  process.stdout.write(JSON.stringify(out));
} else if (mode === "jwks") {
  const keys = [];
  for (const r of requests) {
    const jwk = await jose.exportJWK(createPublicKey(readFileSync(r.key)));
    keys.push({ ...jwk, kid: r.kid, alg: r.alg, use: "sig" });
  }
  process.stdout.write(JSON.stringify({ keys }));
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
