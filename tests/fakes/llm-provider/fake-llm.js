#!/usr/bin/env node
// fake-llm.js — a fake LLM provider for the tests: speaks the OpenAI Chat Completions
// (POST /v1/chat/completions) and the Anthropic Messages (POST /v1/messages) wire formats,
// streamed as server-sent events exactly as the real services stream them, on 127.0.0.1.
//
//   node fake-llm.js PORT
//
// What it answers is chosen by the request's "model": "<scenario>[:<arg>][:<tag>]" (the tag
// only makes a model name unique, so that per-model state such as "first request" is per test
// case):
//   text               a short text answer, split over several deltas, with usage
//   tool               when the last message is not a tool result: one execute_command tool
//                      call whose arguments are split over many deltas; else a text answer
//                      quoting the tool result
//   retry-after:N      the first request answers 429 with "Retry-After: N" (seconds), later
//                      ones as `text`; retry-date:N the same with an HTTP date N s ahead
//   fail500            always HTTP 500 with the provider's error body (500 for OpenAI, 529
//                      overloaded_error for Anthropic)
//   cut                some text, then the connection ends without the end of the message
//   steady:MS:N        N text deltas, one every MS ms, then the normal end
//   silent             the head and the first event, then nothing (the connection stays open)
//   nohead             accepts the request and never answers
//   error-event        an error event in the middle of the stream
// Every request and the moment its connection closed are logged; GET /_log returns them as
// JSON [{id, path, model, at_ms, closed_ms, finished, headers, body}] (at/closed: Date.now()).
'use strict';
const http = require('http');

const port = Number(process.argv[2] || process.env.PORT);
const log = [];
const seen = new Map(); // model -> requests so far

function sseWrite(res, event, obj) {
  const data = typeof obj === 'string' ? obj : JSON.stringify(obj);
  res.write((event ? `event: ${event}\n` : '') + `data: ${data}\n\n`);
}

function lastIsToolResult(wire, body) {
  const msgs = body.messages || [];
  const last = msgs[msgs.length - 1];
  if (!last) return null;
  if (wire === 'openai') return last.role === 'tool' ? String(last.content) : null;
  if (last.role !== 'user' || !Array.isArray(last.content)) return null;
  const tr = last.content.find((b) => b.type === 'tool_result');
  return tr ? String(tr.content) : null;
}

// The answer as a list of parts: {text} or {tool: {id, name, args}}; plus a stop reason.
function plan(scenario, wire, body) {
  if (scenario === 'tool') {
    const result = lastIsToolResult(wire, body);
    if (result === null)
      return { parts: [{ text: 'Let me run it.' }, { tool: { id: 'toolu_fake_1', name: 'execute_command', args: '{"command": "echo hi from the fake", "blocking": true}' } }], stop: 'tool' };
    return { parts: [{ text: `The tool said: ${result.slice(0, 200)}` }], stop: 'end' };
  }
  return { parts: [{ text: 'Hello from the fake provider. It streams in pieces.' }], stop: 'end' };
}

function pieces(s, n) {
  const out = [];
  for (let i = 0; i < s.length; i += n) out.push(s.slice(i, i + n));
  return out;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Streams a planned answer. opts: {cut, intervalMs, count, silent, errorEvent}
async function streamOpenAI(res, model, p, opts) {
  const base = { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model };
  const chunk = (delta, finish) => sseWrite(res, null, { ...base, choices: [{ index: 0, delta, finish_reason: finish || null }] });
  chunk({ role: 'assistant', content: '' });
  if (opts.silent) return false;
  let text = '';
  for (const part of p.parts) {
    if (part.text !== undefined) {
      for (const t of pieces(part.text, 7)) { chunk({ content: t }); text += t; }
    } else {
      const tc = part.tool;
      chunk({ tool_calls: [{ index: 0, id: tc.id, type: 'function', function: { name: tc.name, arguments: '' } }] });
      for (const a of pieces(tc.args, 3)) chunk({ tool_calls: [{ index: 0, function: { arguments: a } }] });
    }
  }
  if (opts.count) {
    for (let i = 0; i < opts.count; i++) {
      await sleep(opts.intervalMs);
      if (res.destroyed) return false;
      chunk({ content: ` tick${i}` });
    }
  }
  if (opts.errorEvent) { sseWrite(res, 'error', { error: { message: 'the fake broke mid-stream', type: 'server_error' } }); return true; }
  if (opts.cut) return true;
  chunk({}, p.stop === 'tool' ? 'tool_calls' : 'stop');
  sseWrite(res, null, { ...base, choices: [], usage: { prompt_tokens: 31, completion_tokens: 17, total_tokens: 48 } });
  sseWrite(res, null, '[DONE]');
  return true;
}

async function streamAnthropic(res, model, p, opts) {
  sseWrite(res, 'message_start', { type: 'message_start', message: { id: 'msg_fake', type: 'message', role: 'assistant', content: [], model, stop_reason: null, stop_sequence: null, usage: { input_tokens: 52, cache_creation_input_tokens: 0, cache_read_input_tokens: 3, output_tokens: 1 } } });
  if (opts.silent) return false;
  sseWrite(res, 'ping', { type: 'ping' });
  let index = 0;
  for (const part of p.parts) {
    if (part.text !== undefined) {
      sseWrite(res, 'content_block_start', { type: 'content_block_start', index, content_block: { type: 'text', text: '' } });
      for (const t of pieces(part.text, 7)) sseWrite(res, 'content_block_delta', { type: 'content_block_delta', index, delta: { type: 'text_delta', text: t } });
      if (opts.count) {
        for (let i = 0; i < opts.count; i++) {
          await sleep(opts.intervalMs);
          if (res.destroyed) return false;
          sseWrite(res, 'content_block_delta', { type: 'content_block_delta', index, delta: { type: 'text_delta', text: ` tick${i}` } });
        }
      }
      if (opts.cut) return true;
      if (opts.errorEvent) { sseWrite(res, 'error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }); return true; }
      sseWrite(res, 'content_block_stop', { type: 'content_block_stop', index });
    } else {
      const tc = part.tool;
      sseWrite(res, 'content_block_start', { type: 'content_block_start', index, content_block: { type: 'tool_use', id: tc.id, name: tc.name, input: {} } });
      for (const a of pieces(tc.args, 3)) sseWrite(res, 'content_block_delta', { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: a } });
      sseWrite(res, 'content_block_stop', { type: 'content_block_stop', index });
    }
    index++;
  }
  sseWrite(res, 'message_delta', { type: 'message_delta', delta: { stop_reason: p.stop === 'tool' ? 'tool_use' : 'end_turn', stop_sequence: null }, usage: { output_tokens: 21 } });
  sseWrite(res, 'message_stop', { type: 'message_stop' });
  return true;
}

function errorBody(wire, status, message) {
  if (wire === 'anthropic') return { type: 'error', error: { type: status === 429 ? 'rate_limit_error' : 'overloaded_error', message } };
  return { error: { message, type: status === 429 ? 'rate_limit_exceeded' : 'server_error' } };
}

async function handle(req, res, entry, body) {
  const wire = req.url.endsWith('/messages') ? 'anthropic' : 'openai';
  const model = String(body.model || '');
  const [scenario, arg] = model.split(':');
  const n = seen.get(model) || 0;
  seen.set(model, n + 1);
  const sendError = (status, message, headers) => {
    res.writeHead(status, { 'Content-Type': 'application/json', ...(headers || {}) });
    res.end(JSON.stringify(errorBody(wire, status, message)));
  };
  if ((scenario === 'retry-after' || scenario === 'retry-date') && n === 0) {
    const s = Number(arg || 1);
    const value = scenario === 'retry-after' ? String(s) : new Date(Date.now() + s * 1000 + 999).toUTCString();
    return sendError(429, 'rate limited by the fake', { 'Retry-After': value });
  }
  if (scenario === 'fail500') return sendError(wire === 'anthropic' ? 529 : 500, 'the fake is down');
  if (scenario === 'nohead') return; // never answers
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  const opts = {};
  if (scenario === 'cut') opts.cut = true;
  if (scenario === 'silent') opts.silent = true;
  if (scenario === 'error-event') opts.errorEvent = true;
  if (scenario === 'steady') { opts.intervalMs = Number(arg || 100); opts.count = Number(model.split(':')[2] || 10); }
  const p = plan(scenario, wire, body);
  const ended = wire === 'anthropic' ? await streamAnthropic(res, body.model, p, opts) : await streamOpenAI(res, body.model, p, opts);
  if (ended && !res.destroyed) { entry.finished = true; res.end(); }
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/_log') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    return res.end(JSON.stringify(log));
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const entry = { id: log.length, path: req.url, at_ms: Date.now(), closed_ms: 0, finished: false, model: '', headers: { authorization: req.headers.authorization || '', 'x-api-key': req.headers['x-api-key'] || '', 'anthropic-version': req.headers['anthropic-version'] || '' }, body: null };
    log.push(entry);
    res.on('close', () => { entry.closed_ms = Date.now(); });
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (e) {
      res.writeHead(400, { 'Content-Type': 'application/json' });
      return res.end(JSON.stringify({ error: { message: `bad JSON: ${e.message}` } }));
    }
    entry.model = String(body.model || '');
    entry.body = body;
    if (req.method !== 'POST' || !/\/(chat\/completions|messages)$/.test(req.url)) {
      res.writeHead(404, { 'Content-Type': 'application/json' });
      return res.end(JSON.stringify({ error: { message: `no route ${req.method} ${req.url}` } }));
    }
    handle(req, res, entry, body).catch((e) => { console.error(e); res.destroy(); });
  });
});
server.keepAliveTimeout = 1000;
server.listen(port, '127.0.0.1', () => console.log(`fake-llm listening on 127.0.0.1:${port}`));
process.on('SIGTERM', () => process.exit(0));
