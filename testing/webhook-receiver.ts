/**
 * A webhook receiver for tests (issue 17): a real HTTP server on 127.0.0.1
 * recording every request, whose answer `state.mode` decides: 204, 500, or
 * no answer at all (stall: held until the test ends).
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { After } from "./harness.js";

export interface ReceivedRequest {
  headers: IncomingHttpHeaders;
  body: string;
  /** The answer given (absent: stalled). */
  status?: number;
}

export interface WebhookReceiver {
  state: { mode: "ok" | "fail" | "stall"; got: ReceivedRequest[]; stalled: ServerResponse[] };
  url: string;
  port: number;
}

export async function startWebhookReceiver(after: After, path = "/hook"): Promise<WebhookReceiver> {
  const state: WebhookReceiver["state"] = { mode: "ok", got: [], stalled: [] };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const got: ReceivedRequest = { headers: req.headers, body: Buffer.concat(chunks).toString("utf8") };
      state.got.push(got);
      if (state.mode === "stall") state.stalled.push(res);
      else {
        got.status = state.mode === "ok" ? 204 : 500;
        res.writeHead(got.status).end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  after(async () => {
    for (const res of state.stalled) res.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  const port = (server.address() as AddressInfo).port;
  return { state, url: `http://127.0.0.1:${port}${path}`, port };
}
