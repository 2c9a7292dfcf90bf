/**
 * Interop with cosign's own test data (github.com/sigstore/cosign at
 * commit d6d86c224e5899b54f56cbb063b79dc43abc11c2): strings copied verbatim from cosign's
 * repository, each citing its path, so a drift between what cosign writes and
 * what Meridian reads shows here. cosign's repository holds no fixed
 * key + simple-signing payload + signature triple (its tests sign with keys
 * generated at run time), so the signature itself is checked with a key
 * generated here over cosign's exact payload bytes.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { cosignSign, generateCosignKey, simpleSigningPayload } from "../../testing/cosign.js";
import { signatureLayers, verifySignatureLayer } from "../cosign.js";
import { evaluateGates } from "../gates.js";
import { parseVulnReport, VULN_PREDICATE } from "../vuln-reports.js";

/** pkg/cosign/obsolete_test.go TestObsoletePayload: "generating _exactly_ the same string as previous versions is essential". */
const COSIGN_PAYLOAD =
  '{"critical":{"identity":{"docker-reference":"index.docker.io/namespace/image"},"image":{"docker-manifest-digest":"sha256:4aa3054270f7a70b4528f2064ee90961788e1e1518703592ae4463de3b889dec"},"type":"cosign container image signature"},"optional":null}';
const COSIGN_PAYLOAD_DIGEST = "sha256:4aa3054270f7a70b4528f2064ee90961788e1e1518703592ae4463de3b889dec";

/** pkg/policy/testdata/valid/vuln: a DSSE envelope as `cosign attest --type vuln` writes it (scanner.result null). */
const COSIGN_VULN_ENVELOPE =
  '{"payloadType":"application/vnd.in-toto+json","payload":"eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjAuMSIsInByZWRpY2F0ZVR5cGUiOiJodHRwczovL2Nvc2lnbi5zaWdzdG9yZS5kZXYvYXR0ZXN0YXRpb24vdnVsbi92MSIsInN1YmplY3QiOlt7Im5hbWUiOiJyZWdpc3RyeS5sb2NhbDo1MDAwL2tuYXRpdmUvZGVtbyIsImRpZ2VzdCI6eyJzaGEyNTYiOiIzYzE5YWE5ODBhOWM1NzA5YTJjOTZjMmQwNzc5ZmViZjZlNWU0NTNiOTJiMTcyY2U4NGNiODVmZGFmNjk1MzczIn19XSwicHJlZGljYXRlIjp7Imludm9jYXRpb24iOnsicGFyYW1ldGVycyI6bnVsbCwidXJpIjoiIiwiZXZlbnRfaWQiOiIiLCJidWlsZGVyLmlkIjoiIn0sInNjYW5uZXIiOnsidXJpIjoiIiwidmVyc2lvbiI6IiIsImRiIjp7InVyaSI6IiIsInZlcnNpb24iOiIifSwicmVzdWx0IjpudWxsfSwibWV0YWRhdGEiOnsic2NhblN0YXJ0ZWRPbiI6IjAwMDEtMDEtMDFUMDA6MDA6MDBaIiwic2NhbkZpbmlzaGVkT24iOiIwMDAxLTAxLTAxVDAwOjAwOjAwWiJ9fX0=","signatures":[{"keyid":"","sig":"MEUCIHE9QkUy+d6uFwae0LSH2Fgy99na3jQvaYMU6qj5dzbFAiEA0uKmqGY1ZHoQZsd0BR4Ug0c8d+sHT0hPcxA61o4DKlM="}]}';
/** pkg/policy/testdata/malformed/vuln: the same with predicateType lacking "https://". */
const COSIGN_MALFORMED_VULN =
  '{"payloadType":"application/vnd.in-toto+json","payload":"eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjAuMSIsInByZWRpY2F0ZVR5cGUiOiJjb3NpZ24uc2lnc3RvcmUuZGV2L2F0dGVzdGF0aW9uL3Z1bG4vdjEiLCJzdWJqZWN0IjpbeyJuYW1lIjoicmVnaXN0cnkubG9jYWw6NTAwMC9rbmF0aXZlL2RlbW8iLCJkaWdlc3QiOnsic2hhMjU2IjoiM2MxOWFhOTgwYTljNTcwOWEyYzk2YzJkMDc3OWZlYmY2ZTVlNDUzYjkyYjE3MmNlODRjYjg1ZmRhZjY5NTM3MyJ9fV0sInByZWRpY2F0ZSI6eyJpbnZvY2F0aW9uIjp7InBhcmFtZXRlcnMiOm51bGwsInVyaSI6IiIsImV2ZW50X2lkIjoiIiwiYnVpbGRlci5pZCI6IiJ9LCJzY2FubmVyIjp7InVyaSI6IiIsInZlcnNpb24iOiIiLCJkYiI6eyJ1cmkiOiIiLCJ2ZXJzaW9uIjoiIn0sInJlc3VsdCI6bnVsbH0sIm1ldGFkYXRhIjp7InNjYW5TdGFydGVkT24iOiIwMDAxLTAxLTAxVDAwOjAwOjAwWiIsInNjYW5GaW5pc2hlZE9uIjoiMDAwMS0wMS0wMVQwMDowMDowMFoifX19","signatures":[{"keyid":"","sig":"MEUCIHE9QkUy+d6uFwae0LSH2Fgy99na3jQvaYMU6qj5dzbFAiEA0uKmqGY1ZHoQZsd0BR4Ug0c8d+sHT0hPcxA61o4DKlM="}]}';

describe("cosign interop", () => {
  test("the test helper builds the simple-signing payload byte for byte as cosign does", () => {
    assert.equal(
      simpleSigningPayload("index.docker.io/namespace/image", COSIGN_PAYLOAD_DIGEST).toString(),
      COSIGN_PAYLOAD,
    );
  });

  test("cosign's exact payload bytes, signed, verify; one byte changed does not", () => {
    const key = generateCosignKey();
    const sig = cosignSign(key.privateKey, "", COSIGN_PAYLOAD_DIGEST, Buffer.from(COSIGN_PAYLOAD));
    const [layer] = signatureLayers(JSON.parse(sig.tagManifest.toString()));
    const pub = { name: "k", pem: key.publicPem };
    assert.deepEqual(verifySignatureLayer(COSIGN_PAYLOAD_DIGEST, layer, Buffer.from(COSIGN_PAYLOAD), pub), {
      ok: true,
      keyId: "k",
    });
    const other = "sha256:4aa3054270f7a70b4528f2064ee90961788e1e1518703592ae4463de3b889ded";
    assert.deepEqual(verifySignatureLayer(other, layer, Buffer.from(COSIGN_PAYLOAD), pub), {
      ok: false,
      reason: `payload names ${COSIGN_PAYLOAD_DIGEST} not ${other}`,
    });
  });

  test("cosign's vuln attestation envelope is read (DSSE, predicateType); its null scanner.result never passes", () => {
    const parsed = parseVulnReport(Buffer.from(COSIGN_VULN_ENVELOPE));
    assert.deepEqual(parsed, {
      malformed: "in-toto vulnerability attestation without predicate.scanner.result",
    });
    const statement = JSON.parse(Buffer.from(JSON.parse(COSIGN_VULN_ENVELOPE).payload, "base64").toString());
    assert.equal(statement.predicateType, VULN_PREDICATE);
    // The same statement with a scanner result filled in is read.
    statement.predicate.scanner.result = { vulnerabilities: [{ id: "CVE-2022-0001", severity: "HIGH" }] };
    const r = evaluateGates(
      { vulnerabilities: { artifactTypes: ["application/vnd.dsse.envelope.v1+json"], failAt: "high" } },
      {
        subject: COSIGN_PAYLOAD_DIGEST,
        signatures: [],
        keys: new Map(),
        reports: [
          {
            artifactType: "application/vnd.dsse.envelope.v1+json",
            source: "r",
            bytes: Buffer.from(
              JSON.stringify({
                payloadType: "application/vnd.in-toto+json",
                payload: Buffer.from(JSON.stringify(statement)).toString("base64"),
              }),
            ),
          },
        ],
        annotations: {},
        labels: {},
        now: 0,
      },
    );
    assert.equal(
      r.results[0]?.reason,
      "vulnerabilities: 1 finding(s) at or above high: CVE-2022-0001 (high)",
    );
  });

  test("cosign's malformed vuln attestation is refused", () => {
    assert.deepEqual(parseVulnReport(Buffer.from(COSIGN_MALFORMED_VULN)), {
      malformed: `in-toto predicateType cosign.sigstore.dev/attestation/vuln/v1, not ${VULN_PREDICATE}`,
    });
  });
});
