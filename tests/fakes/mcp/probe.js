#!/usr/bin/env node
// probe.js — a stdio MCP server that tries what a hostile user's server would, for the
// mcp-proxy's jail tests. One tool, "probe", with arguments {file, ports: [n...]}: it reads
// `file`, lists the command lines of every process it can see in /proc, the names of its
// environment variables, its uid, whether $HOME and /tmp are writable, and tries a TCP connect
// to 127.0.0.1 on each port. The result is one text item: that report as JSON.
// Run bare it sees the host; run jailed it must not (tests/integration/test_mcp_calls.c).
'use strict';
const fs = require('fs');
const net = require('net');
const readline = require('readline');
const send = (m) => process.stdout.write(JSON.stringify(m) + '\n');

function tryConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = (r) => { s.destroy(); resolve(r); };
    s.setTimeout(3000, () => done('ERR:timeout'));
    s.on('connect', () => done('ok'));
    s.on('error', (e) => done('ERR:' + (e.code || e.message)));
  });
}

function writable(dir) {
  try { fs.writeFileSync(dir + '/.probe', 'x'); fs.unlinkSync(dir + '/.probe'); return true; } catch (e) { return false; }
}

async function probe(args) {
  const r = {};
  try { r.file = fs.readFileSync(args.file, 'utf8'); } catch (e) { r.file = 'ERR:' + e.code; }
  r.procs = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(d)) continue;
    try { r.procs.push(fs.readFileSync('/proc/' + d + '/cmdline', 'utf8').split('\0').join(' ').trim()); } catch (e) { /* gone */ }
  }
  r.env = Object.keys(process.env).sort();
  r.uid = process.getuid();
  r.home = process.env.HOME || '';
  r.home_writable = r.home !== '' && writable(r.home);
  r.connect = {};
  for (const p of args.ports || []) r.connect[p] = await tryConnect(p);
  return r;
}

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  let m;
  try { m = JSON.parse(line); } catch (e) { return; }
  if (m.id === undefined || !m.method) return;
  if (m.method === 'initialize') {
    send({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'probe', version: '0.0.1' } } });
  } else if (m.method === 'tools/list') {
    send({ jsonrpc: '2.0', id: m.id, result: { tools: [{ name: 'probe', description: 'looks around', inputSchema: { type: 'object', properties: { file: { type: 'string' }, ports: { type: 'array' } } } }] } });
  } else if (m.method === 'tools/call') {
    const report = await probe(m.params.arguments || {});
    send({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: JSON.stringify(report) }] } });
  } else {
    send({ jsonrpc: '2.0', id: m.id, error: { code: -32601, message: 'no such method' } });
  }
});
