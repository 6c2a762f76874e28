// An MCP client of another implementation (the official TypeScript SDK) talking to labctl over
// streamable HTTP: connect with a bearer token, list the tools, call each one given on the
// command line, print one JSON object. The SDK validates every structured result against the
// tool's output schema, so a result that does not match its schema fails the call.
//
// node sdk-client.mjs URL CALLS_JSON   (token in LABCTL_TEST_TOKEN)
//
// With LABCTL_TEST_TRANSPORT=sse the SDK's older HTTP+SSE client is used instead, URL being
// the server's /sse endpoint.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";

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
for (const [name, args] of JSON.parse(callsJson)) {
  try {
    const result = await client.callTool({ name, arguments: args });
    out.calls[name] = { isError: result.isError ?? false, structured: result.structuredContent ?? null };
  } catch (e) {
    out.calls[name] = { thrown: String(e) };
  }
}
await client.close();
console.log(JSON.stringify(out));
