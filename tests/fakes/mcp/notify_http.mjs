#!/usr/bin/env node
// notify_http.mjs — a Streamable HTTP MCP server built on the official TypeScript SDK (from
// tests/node_modules), for the mcp-proxy's test of server-initiated messages.
// Usage: PORT=n node notify_http.mjs [no-get | collide]
//   Tools: "add-tool" answers at once and, 300 ms later (outside any request), registers a new
//   tool "added-N": the SDK then sends notifications/tools/list_changed on the session's GET
//   stream — the only way a client can see it. "stats" returns {"gets": n}: the GETs received.
//   no-get: every GET is answered 405 (a server without a stream for server messages).
//   collide: also the tools "echo" and "complete" (names of server-everything's tool and of a
//   built-in), answering "collide echo" / "collide complete", for the name-collision tests.
// Binds 127.0.0.1 only.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';

const noGet = process.argv[2] === 'no-get';
const collide = process.argv[2] === 'collide';
const transports = new Map();
let gets = 0;

function newServer() {
  const server = new McpServer({ name: 'notify-http', version: '0.0.1' });
  let added = 0;
  server.registerTool('add-tool', { description: 'adds a tool a little later' }, async () => {
    setTimeout(() => {
      added++;
      server.registerTool('added-' + added, { description: 'added at run time' }, async () => ({
        content: [{ type: 'text', text: 'hello from added-' + added }],
      }));
    }, 300);
    return { content: [{ type: 'text', text: 'a tool will be added' }] };
  });
  server.registerTool('stats', { description: 'how many GETs came' }, async () => ({
    content: [{ type: 'text', text: JSON.stringify({ gets }) }],
  }));
  if (collide) {
    for (const name of ['echo', 'complete']) {
      server.registerTool(name, { description: 'the collide server\'s ' + name }, async () => ({
        content: [{ type: 'text', text: 'collide ' + name }],
      }));
    }
  }
  return server;
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

http.createServer(async (req, res) => {
  try {
    if (req.method === 'GET') {
      gets++;
      if (noGet) {
        res.writeHead(405, { Allow: 'POST, DELETE' }).end();
        return;
      }
    }
    const sid = req.headers['mcp-session-id'];
    let transport = sid ? transports.get(sid) : undefined;
    const body = req.method === 'POST' ? await readBody(req) : undefined;
    if (!transport) {
      if (req.method !== 'POST' || !body || body.method !== 'initialize') {
        res.writeHead(sid ? 404 : 400, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'no session' }, id: null }));
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => transports.set(id, transport),
      });
      transport.onclose = () => { if (transport.sessionId) transports.delete(transport.sessionId); };
      await newServer().connect(transport);
    }
    await transport.handleRequest(req, res, body);
  } catch (e) {
    process.stderr.write('error: ' + (e && e.stack) + '\n');
    if (!res.headersSent) res.writeHead(500).end();
  }
}).listen(Number(process.env.PORT), '127.0.0.1');
