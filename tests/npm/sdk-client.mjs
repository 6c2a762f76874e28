// An MCP client of another implementation (the official TypeScript SDK) talking to labctl over
// streamable HTTP: connect with a bearer token, list the tools, call each one given on the
// command line, print one JSON object. The SDK validates every structured result against the
// tool's output schema, so a result that does not match its schema fails the call.
//
// node sdk-client.mjs URL CALLS_JSON   (token in LABCTL_TEST_TOKEN)
//
// With LABCTL_TEST_TRANSPORT=sse the SDK's older HTTP+SSE client is used instead, URL being
// the server's /sse endpoint.
//
// LABCTL_TEST_FOLLOW (JSON {level, subscribe: [uri], waitFor: uri}) first sets the log level and
// subscribes, records every notification and progress report, and after the calls waits (15 s at
// most) for resources/updated of `waitFor`; they are printed as `heard`.
//
// LABCTL_TEST_PROMPTS (JSON {get: [[name, args]], complete: [[prompt, argument, value, context]]})
// lists the prompts, gets each one given and asks for each completion; printed as `prompts`.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import {
  LoggingMessageNotificationSchema,
  ResourceListChangedNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

const [url, callsJson] = process.argv.slice(2);
const Transport = process.env.LABCTL_TEST_TRANSPORT === "sse" ? SSEClientTransport : StreamableHTTPClientTransport;
const transport = new Transport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${process.env.LABCTL_TEST_TOKEN}` } },
});
const client = new Client({ name: "labctl-sdk-interop", version: "1.0.0" });
await client.connect(transport);
const listed = await client.listTools();
const out = {
  server: client.getServerVersion(),
  protocolVersion: transport.protocolVersion ?? null,
  tools: listed.tools.map((t) => ({ name: t.name, readOnly: t.annotations?.readOnlyHint ?? null, hasOutputSchema: !!t.outputSchema })),
  calls: {},
};
const follow = process.env.LABCTL_TEST_FOLLOW ? JSON.parse(process.env.LABCTL_TEST_FOLLOW) : null;
const heard = { updated: [], listChanged: 0, logs: [], progress: [] };
if (follow) {
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => { heard.updated.push(n.params.uri); });
  client.setNotificationHandler(ResourceListChangedNotificationSchema, () => { heard.listChanged += 1; });
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => { heard.logs.push({ level: n.params.level, data: n.params.data }); });
  if (follow.level) await client.setLoggingLevel(follow.level);
  for (const uri of follow.subscribe ?? []) await client.subscribeResource({ uri });
  out.capabilities = client.getServerCapabilities();
}
for (const [name, args] of JSON.parse(callsJson)) {
  try {
    const options = follow ? { onprogress: (p) => heard.progress.push(p), timeout: 60000 } : undefined;
    const result = await client.callTool({ name, arguments: args }, undefined, options);
    out.calls[name] = { isError: result.isError ?? false, structured: result.structuredContent ?? null };
  } catch (e) {
    out.calls[name] = { thrown: String(e) };
  }
}
const askPrompts = process.env.LABCTL_TEST_PROMPTS ? JSON.parse(process.env.LABCTL_TEST_PROMPTS) : null;
if (askPrompts) {
  const listed = await client.listPrompts();
  const prompts = { listed: listed.prompts, got: [], completions: [] };
  for (const [name, args] of askPrompts.get ?? []) {
    try {
      const got = await client.getPrompt({ name, arguments: args });
      prompts.got.push({ name, description: got.description, text: got.messages.map((m) => m.content.text).join("\n") });
    } catch (e) {
      prompts.got.push({ name, thrown: String(e) });
    }
  }
  for (const [prompt, argument, value, context] of askPrompts.complete ?? []) {
    const done = await client.complete({
      ref: { type: "ref/prompt", name: prompt },
      argument: { name: argument, value },
      ...(context ? { context: { arguments: context } } : {}),
    });
    prompts.completions.push(done.completion.values);
  }
  out.prompts = prompts;
}
if (follow) {
  const deadline = Date.now() + 15000;
  while (follow.waitFor && !heard.updated.includes(follow.waitFor) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  out.heard = heard;
}
await client.close();
console.log(JSON.stringify(out));
