#!/usr/bin/env python3
"""get_device latency over streamable HTTP as a plain HTTP/1.1 client sees it.

Not rmcp's client, nor any MCP SDK: Python's standard library only (asyncio streams), one
keep-alive connection per MCP session, one request at a time on it, the request written in one
send, and TCP_NODELAY left *off* on the client's sockets, as Python's http.client and many small
clients do. Such a client is what exposed the 44 ms Nagle/delayed-ACK stall the project's own
rmcp-based benchmark (benches/mcp_latency.rs) could not see.

It builds the same lab as that benchmark (a pool and 100 devices), records one run with
`labctl reconcile --once` into a SQLite store, starts `labctl mcp --http 127.0.0.1:0` (a bearer
token, limits out of the way) in its own process, opens N sessions (initialize, initialized) and
calls get_device on a different device each time:

  closed loop (default): each session calls again as soon as it has its answer;
  --rate R: open loop, R calls/s in all, spread evenly over the sessions; a call's latency is
            counted from when it was due, so a late start counts against the server.

--ping sends MCP `ping` instead: what the HTTP and session path costs without a tool.

Prints one Markdown table row: sessions, pacing, calls, errors, calls/s, p50, p90, p99, max.

  python3 benches/mcp_plain.py --labctl target/release/labctl --sessions 200 --rate 2000

Loopback only.
"""

import argparse
import asyncio
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

TOKEN = "bench-token-0d6c1f2e9a8b7c6d5e4f3a2b1c0d9e8f"
DEVICES = 100


def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def build_lab(root):
    repo = os.path.join(root, "repo")
    write(repo, "pools/lab.yaml",
          "apiVersion: labctl.dev/v1\nkind: Pool\nmetadata: {name: lab}\nspec: {type: compute}\n")
    for i in range(DEVICES):
        write(repo, f"devices/vm{i:03}.yaml",
              "apiVersion: labctl.dev/v1\nkind: Device\nmetadata:\n"
              f"  name: vm{i:03}\n  labels: {{role: bench}}\nspec:\n  type: vm\n  pool: /lab\n"
              f"  proxmox: {{node: pve-01, vmid: {1000 + i}}}\n  cores: 4\n  memoryMiB: 8192\n"
              "  interfaces:\n"
              f"    - {{name: net0, mac: \"bc:24:11:00:{i // 256:02x}:{i % 256:02x}\", "
              f"ip: 10.0.{1 + i // 200}.{10 + i % 200}}}\n")
    return repo


class Conn:
    """One keep-alive HTTP/1.1 connection carrying one MCP session."""

    def __init__(self, host, port, path):
        self.host, self.port, self.path = host, port, path
        self.session = None
        self.next_id = 1

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        # asyncio turns Nagle off on its sockets; a plain client leaves it on.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)

    async def post(self, message):
        body = json.dumps(message).encode()
        head = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: application/json",
            "Accept: application/json, text/event-stream",
            f"Authorization: Bearer {TOKEN}",
            f"Content-Length: {len(body)}",
        ]
        if self.session:
            head.append(f"Mcp-Session-Id: {self.session}")
            head.append("Mcp-Protocol-Version: 2025-06-18")
        # Headers and body in one send, as http.client does for a small body.
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        return await self.response()

    async def response(self):
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        headers = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                body += await self.reader.readexactly(size)
                await self.reader.readexactly(2)
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def request(self, method, params):
        rid = self.next_id
        self.next_id += 1
        status, headers, body = await self.post(
            {"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        if status != 200:
            raise RuntimeError(f"{method}: HTTP {status}: {body[:200]!r}")
        if "mcp-session-id" in headers:
            self.session = headers["mcp-session-id"]
        text = body.decode()
        if headers.get("content-type", "").startswith("text/event-stream"):
            for data in re.findall(r"^data: ?(.*)$", text, re.M):
                if data.strip():
                    msg = json.loads(data)
                    if msg.get("id") == rid:
                        return msg
            raise RuntimeError(f"{method}: no answer in the event stream")
        return json.loads(text)

    async def start(self):
        await self.open()
        await self.request("initialize", {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "plain-http-bench", "version": "1"}})
        status, _, _ = await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        if status != 202:
            raise RuntimeError(f"initialized: HTTP {status}")


def pct(sorted_samples, q):
    return sorted_samples[min(len(sorted_samples) - 1, int(q * len(sorted_samples)))]


async def load(url, sessions, seconds, warmup, rate, ping):
    m = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    conns = [Conn(host, port, path) for _ in range(sessions)]
    for c in conns:
        await c.start()
    loop = asyncio.get_running_loop()
    started = loop.time() + 0.1
    warm_until = started + warmup
    until = warm_until + seconds
    interval = sessions / rate if rate else 0.0
    samples, errors = [], [0]

    async def run(c, index):
        i = index
        due = started + (interval * index / sessions if interval else 0.0)
        while True:
            if interval:
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                t0 = due
                due += interval
            else:
                t0 = loop.time()
            if t0 >= until:
                return
            i += 1
            try:
                if ping:
                    msg = await c.request("ping", {})
                    msg.setdefault("result", {})
                else:
                    msg = await c.request("tools/call", {
                        "name": "get_device", "arguments": {"device": f"vm{i % DEVICES:03}"}})
                ok = "result" in msg and not msg["result"].get("isError")
            except Exception:
                ok = False
            took = loop.time() - t0
            if not ok:
                errors[0] += 1
            elif t0 >= warm_until:
                samples.append(took)

    await asyncio.gather(*(run(c, n) for n, c in enumerate(conns)))
    for c in conns:
        c.writer.close()
    samples.sort()
    return samples, errors[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labctl", default=os.environ.get("LABCTL", "target/release/labctl"))
    ap.add_argument("--sessions", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--rate", type=float, default=0, help="calls/s in all (open loop)")
    ap.add_argument("--ping", action="store_true",
                    help="send MCP ping instead of get_device: the cost of the path alone")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        repo = build_lab(root)
        db = f"sqlite://{root}/state.db"
        subprocess.run([args.labctl, "reconcile", "--once", repo, "--database-url", db],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        tokens = os.path.join(root, "tokens.yaml")
        digest = hashlib.sha256(TOKEN.encode()).hexdigest()
        write(root, "tokens.yaml", f"tokens: [{{name: bench, sha256: {digest}, scopes: [read]}}]\n")
        log = open(os.path.join(root, "server.log"), "w+")
        server = subprocess.Popen(
            [args.labctl, "mcp", "--http", "127.0.0.1:0", "--tokens", tokens, "--database-url", db,
             "--max-in-flight", str(4 * args.sessions + 16),
             "--max-sessions", str(2 * args.sessions + 16), "--rate", "1e9", "--burst", "1e9"],
            stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "LABCTL_LOG": "warn"})
        try:
            url = None
            deadline = time.time() + 20
            while url is None:
                log.seek(0)
                m = re.search(r"listening on (http://\S+)", log.read())
                if m:
                    url = m.group(1)
                elif time.time() > deadline or server.poll() is not None:
                    log.seek(0)
                    sys.exit(f"labctl mcp did not start:\n{log.read()}")
                else:
                    time.sleep(0.05)
            samples, errors = asyncio.run(
                load(url, args.sessions, args.seconds, args.warmup, args.rate, args.ping))
        finally:
            server.terminate()
            server.wait(timeout=15)
    if not samples:
        sys.exit(f"no successful call ({errors} errors)")
    ms = lambda s: f"{s * 1000:.2f} ms"
    pacing = f"{args.rate:,.0f} calls/s in all" if args.rate else "closed loop"
    print(f"| {args.sessions} | {pacing} | {len(samples):,} | {errors} | "
          f"{len(samples) / args.seconds:,.0f} | {ms(pct(samples, 0.5))} | {ms(pct(samples, 0.9))} | "
          f"{ms(pct(samples, 0.99))} | {ms(samples[-1])} |")


if __name__ == "__main__":
    main()
