#!/usr/bin/env node
// misbehave.js — a stdio MCP server that misbehaves on purpose, for the mcp-proxy tests.
// Usage: node misbehave.js MODE
//   crash-mid-call  answers initialize and tools/list; exits with status 3 on any tools/call
//   garbage         writes a non-JSON line and a JSON line that is not JSON-RPC before every
//                   answer; otherwise a correct server (tool "echo")
//   silent-init     reads everything, answers nothing (never answers initialize)
//   kinds           tool "kinds" returns every content kind plus structuredContent;
//                   tool "big" returns a text of argument "bytes" bytes, each argument "char"
//                   (default "x"; a quote or a control character doubles or sextuples in JSON);
//                   tool "change" sends notifications/tools/list_changed, then answers;
//                   tool "nul" answers text and structuredContent holding NUL (\u0000), in a key too
//   old-version     answers initialize with protocolVersion 2024-11-05
//   bad-version     answers initialize with protocolVersion 1999-01-01
//   paged           tools/list in three pages of one tool each (nextCursor "p2", "p3")
//   stderr-flood    a correct server (tool "echo") that, once initialized, writes 20 000 lines
//                   of ~1 KB to stderr as fast as the pipe takes them
//   stateful        tool "remember" keeps argument "text" in the process; tool "recall" answers
//                   it (or "(nothing)"): state one account must not see of another
//   env-desc        a correct server (tool "echo") whose tool's description is "K=" + $K
//   big-list        tools/list of 200 tools with 10000-byte descriptions (~2 MB) in one page
//   endless-pages   tools/list pages of 100 tools with 10000-byte descriptions (~1 MB), each
//                   with a nextCursor, never ending
// Every mode logs what it received to stderr (the proxy copies it to its log).
'use strict';
const mode = process.argv[2] || 'garbage';
const readline = require('readline');
const rl = readline.createInterface({ input: process.stdin });
const send = (m) => process.stdout.write(JSON.stringify(m) + '\n');
let listCalls = 0;

const tools = {
  'crash-mid-call': [{ name: 'boom', description: 'exits mid-call', inputSchema: { type: 'object' } }],
  garbage: [{ name: 'echo', description: 'echoes', inputSchema: { type: 'object', properties: { message: { type: 'string' } } } }],
  kinds: [
    { name: 'kinds', description: 'every content kind', inputSchema: { type: 'object' } },
    { name: 'big', description: 'a large text', inputSchema: { type: 'object', properties: { bytes: { type: 'number' }, char: { type: 'string' } } } },
    { name: 'change', description: 'changes the tool list', inputSchema: { type: 'object' } },
    { name: 'nul', description: 'NUL characters in its answer', inputSchema: { type: 'object' } },
  ],
};
tools['old-version'] = tools.garbage;
tools['stderr-flood'] = tools.garbage;
tools.stateful = [
  { name: 'remember', description: 'keeps a text', inputSchema: { type: 'object', properties: { text: { type: 'string' } } } },
  { name: 'recall', description: 'answers the text kept', inputSchema: { type: 'object' } },
];
let remembered = '(nothing)';
tools['env-desc'] = [{ name: 'echo', description: 'K=' + process.env.K, inputSchema: { type: 'object', properties: { message: { type: 'string' } } } }];

function flood(left) {
  const line = 'noise '.repeat(160) + '\n';
  for (let i = 0; i < 50 && left > 0; i++, left--) process.stderr.write(line);
  if (left > 0) setImmediate(flood, left);
}

rl.on('line', (line) => {
  let m;
  try { m = JSON.parse(line); } catch (e) { return; }
  process.stderr.write(`got ${m.method || 'response'}\n`);
  if (mode === 'silent-init') return;
  if (m.id === undefined || !m.method) return;
  if (mode === 'garbage') {
    process.stdout.write('this is not json {{{\n');
    process.stdout.write(JSON.stringify({ hello: 'not json-rpc' }) + '\n');
  }
  if (m.method === 'initialize') {
    const v = mode === 'old-version' ? '2024-11-05' : mode === 'bad-version' ? '1999-01-01' : m.params.protocolVersion;
    send({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: v, capabilities: { tools: { listChanged: true } }, serverInfo: { name: 'misbehave-' + mode, version: '0.0.1' } } });
    if (mode === 'stderr-flood') setImmediate(flood, 20000);
  } else if (m.method === 'tools/list') {
    listCalls++;
    if (mode === 'big-list') {
      const list = [];
      for (let i = 0; i < 200; i++)
        list.push({ name: `t${i}`, description: 'd'.repeat(10000), inputSchema: { type: 'object' } });
      send({ jsonrpc: '2.0', id: m.id, result: { tools: list } });
      return;
    }
    if (mode === 'endless-pages') {
      const page = m.params && m.params.cursor ? Number(m.params.cursor.slice(1)) : 1;
      const list = [];
      for (let i = 0; i < 100; i++)
        list.push({ name: `t${page}_${i}`, description: 'd'.repeat(10000), inputSchema: { type: 'object' } });
      send({ jsonrpc: '2.0', id: m.id, result: { tools: list, nextCursor: 'p' + (page + 1) } });
      return;
    }
    if (mode === 'paged') {
      const page = { undefined: 1, p2: 2, p3: 3 }[m.params && m.params.cursor];
      const result = { tools: [{ name: 'page' + page, inputSchema: { type: 'object' } }] };
      if (page < 3) result.nextCursor = 'p' + (page + 1);
      send({ jsonrpc: '2.0', id: m.id, result });
      return;
    }
    const list = (tools[mode] || []).slice();
    if (mode === 'kinds' && listCalls > 1) list.push({ name: 'added', description: 'after list_changed', inputSchema: { type: 'object' } });
    send({ jsonrpc: '2.0', id: m.id, result: { tools: list } });
  } else if (m.method === 'tools/call') {
    const name = m.params.name;
    if (mode === 'crash-mid-call') { process.stderr.write('crashing now\n'); process.exit(3); }
    if (name === 'remember') {
      remembered = m.params.arguments.text;
      send({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'kept' }] } });
    } else if (name === 'recall') {
      send({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: remembered }] } });
    } else if (name === 'echo') {
      send({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'Echo: ' + m.params.arguments.message }] } });
    } else if (name === 'kinds') {
      send({ jsonrpc: '2.0', id: m.id, result: {
        content: [
          { type: 'text', text: 'plain text' },
          { type: 'image', data: 'iVBORw0KGgo=', mimeType: 'image/png' },
          { type: 'audio', data: 'UklGRg==', mimeType: 'audio/wav' },
          { type: 'resource', resource: { uri: 'test://doc', mimeType: 'text/plain', text: 'embedded text' } },
          { type: 'resource', resource: { uri: 'test://bin', mimeType: 'application/octet-stream', blob: 'AAEC' } },
          { type: 'resource_link', uri: 'test://link', name: 'a link' },
        ],
        structuredContent: { answer: 42 },
      } });
    } else if (name === 'big') {
      send({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: (m.params.arguments.char || 'x').repeat(m.params.arguments.bytes || 1000) }] } });
    } else if (name === 'nul') {
      send({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'a\u0000b' }], structuredContent: { k: 'x\u0000', 'k\u0000': '\\u0000' } } });
    } else if (name === 'change') {
      send({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
      send({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'changed' }] } });
    } else {
      send({ jsonrpc: '2.0', id: m.id, error: { code: -32602, message: 'Unknown tool: ' + name } });
    }
  } else if (m.method === 'ping') {
    send({ jsonrpc: '2.0', id: m.id, result: {} });
  } else {
    send({ jsonrpc: '2.0', id: m.id, error: { code: -32601, message: 'Method not found' } });
  }
});
rl.on('close', () => process.exit(0));
