// A real client on the TypeScript SDK (@modelcontextprotocol/sdk, from .cache/node), driven by
// tests/clients/test_ts_sdk.py. argv[2] is a JSON plan:
//   {sdk, transport: {stdio: {command, args, cwd, env}} | {http: url},
//    good: {name, arguments}, refused: [{name, arguments}, ...],
//    cancel: {name, arguments, startedFile}}
// It lists the tools, makes the good call and the refused ones, then starts the cancel call, aborts
// it (the SDK sends notifications/cancelled) once startedFile exists (the upstream saw the
// request), and makes the good call again. It prints one JSON object: each step's result, or
// the error the SDK threw ({thrown: {code, message}}).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const plan = JSON.parse(process.argv[2]);
const esm = (p) => import(pathToFileURL(join(plan.sdk, "dist", "esm", p)).href);
const { Client } = await esm("client/index.js");

async function transport() {
  if (plan.transport.stdio) {
    const { StdioClientTransport } = await esm("client/stdio.js");
    return new StdioClientTransport({ ...plan.transport.stdio, stderr: "inherit" });
  }
  const { StreamableHTTPClientTransport } = await esm("client/streamableHttp.js");
  return new StreamableHTTPClientTransport(new URL(plan.transport.http));
}

async function step(fn) {
  try {
    return await fn();
  } catch (e) {
    return { thrown: { code: e?.code ?? null, message: String(e?.message ?? e) } };
  }
}

async function untilExists(path, ms) {
  const deadline = Date.now() + ms;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`${path} did not appear within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const client = new Client({ name: "mcp-gateway-ts-sdk-test", version: "0" });
await client.connect(await transport());
const out = {};
out.list = await step(async () => (await client.listTools()).tools.map((t) => t.name));
out.good = await step(() => client.callTool(plan.good));
out.refused = [];
for (const call of plan.refused) out.refused.push(await step(() => client.callTool(call)));
if (plan.cancel) {
  const abort = new AbortController();
  const call = step(() => client.callTool(plan.cancel, undefined, { signal: abort.signal, timeout: 120000 }));
  out.cancelStarted = await step(() => untilExists(plan.cancel.startedFile, 15000).then(() => true));
  abort.abort("the test cancels this call");
  out.cancelled = await call;
  out.afterCancel = await step(() => client.callTool(plan.good));
}
await client.close();
process.stdout.write(JSON.stringify(out) + "\n");
