// Preloaded (`node --require tests/npm/loopback.cjs …`) by tests/mcp_provider.rs: binds every
// server the process starts to 127.0.0.1, whatever host it asks for. The MCP servers under
// test listen on all interfaces by default; the tests stay on loopback. The port comes from
// the PORT environment variable, as the servers read it.
"use strict";
const net = require("net");
const listen = net.Server.prototype.listen;
const LOOPBACK = "127.0.0.1";
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    // listen(port[, host][, backlog][, callback])
    if (typeof args[1] === "string") args[1] = LOOPBACK;
    else args.splice(1, 0, LOOPBACK);
  } else if (first && typeof first === "object" && "port" in first) {
    // listen(options[, callback])
    args[0] = { ...first, host: LOOPBACK };
  } else if (first === undefined || typeof first === "function") {
    // listen([callback]): a random port
    args.unshift(0, LOOPBACK);
  }
  return listen.apply(this, args);
};
