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
// The agent loop's scenarios (tests/integration/test_runloop.c); "results" are the tool results
// after the newest real user message (role tool, or a user message holding tool_execution):
//   multi              no results yet: two execute_command calls in one turn (echo one, echo
//                      two); else a text answer naming the results
//   swapped            no results yet: two execute_command calls whose provider indices come
//                      out of order: index 1 (echo BBB) first, 500 ms later index 0 (echo
//                      AAA); else a text answer naming the results (OpenAI wire)
//   longid             no results yet: one execute_command call whose id is 100 bytes, with a
//                      two-byte UTF-8 character across its 79th byte; else text
//   dupids             no results yet: three execute_command calls with ids "call_1", "call_1"
//                      and "call.2" (a dot: Anthropic takes [A-Za-z0-9_-] only); else text
//   xmlmulti           no results yet: one <function_calls> block with two invokes and text
//                      after the block; else a text answer
//   badxml             no results yet: a block whose invoke is never closed; else text
//   xmlstrings         no results yet: one block writing two files whose contents look like
//                      JSON and a number, then printing them; else text
//   unknown            no results yet: a call of no_such_tool; else text
//   nul                no results yet: text with a NUL character (\u0000 on the wire) and a
//                      call printing a NUL byte (printf 'N1\000N2'); else text with a NUL
//   ask                a call of ask (the run must end with it); after a result: text
//   loop               always a tool call (max iterations)
//   length:N           the first N requests stop with finish "length" ("max_tokens"), then text
//   big:LIMIT          a request body over LIMIT bytes is answered 400 context_length_exceeded;
//                      while the thread holds no tool result: a call printing 2 MB; else text
//   slow2              no results yet: a call printing the time (date +%s%3N), then 2 s of
//                      silence, then a second call; else text (execute-on-stream)
//   title              text: the answer of a project-naming request; title-fail: HTTP 500
// A hostile or broken provider (OpenAI wire unless said otherwise):
//   h-badutf8          a data line whose JSON holds bytes that are not UTF-8 (both wires)
//   h-namegrow:N       one tool call whose function.name grows by 1 MiB in each of N deltas
//                      (fragments that differ from the name so far), then the normal end
//   h-done-linger      a text answer to its end ([DONE]; Anthropic: message_stop), then the
//                      connection stays open with a ": ping" comment every 200 ms (both wires);
//                      h-done-linger:silent the same without the pings
//   h-argsgrow:K       one execute_command call whose arguments grow by K-byte deltas that
//                      each end with '}' ({"command": "echo xxx}xxx}...) to 4.5 MiB, then the end
//   h-errbody          HTTP 500 whose body never ends (64 KiB every 50 ms)
//   h-bigjson          HTTP 200 application/json (a whole chat.completion) whose body never
//                      ends (1 MiB of its text every 5 ms)
//   h-json:MB          HTTP 200 application/json: a whole chat.completion of MB MiB of text
//   h-html             HTTP 200 with content-type text/html (a login page)
//   h-hugeline:MB      one data line of MB MiB with no line end, then the connection closes
//   h-pings:MS         the first chunk, then only ": ping" comments every MS ms, for ever
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

// Tool results after the newest real user message.
function resultsSinceUser(wire, body) {
  const msgs = body.messages || [];
  const out = [];
  for (let i = msgs.length - 1; i >= 0; i--) {
    const m = msgs[i];
    const text = typeof m.content === 'string' ? m.content : JSON.stringify(m.content || '');
    if (m.role === 'tool') { out.unshift(text); continue; }
    if (m.role === 'user' && (text.includes('tool_execution') || text.includes('tool_result'))) { out.unshift(text); continue; }
    if (m.role === 'user') break;
  }
  return out;
}

const call = (id, name, args, index) => ({ tool: { id, name, args, index } });

// The answer as a list of parts: {text} or {tool: {id, name, args}}; plus a stop reason.
function plan(scenario, wire, body, n, arg) {
  const results = resultsSinceUser(wire, body);
  if (scenario === 'multi') {
    if (results.length === 0)
      return { parts: [{ text: 'Two at once.' }, call('call_m1', 'execute_command', '{"command": "echo one", "blocking": true}'), call('call_m2', 'execute_command', '{"command": "echo two", "blocking": true}')], stop: 'tool' };
    return { parts: [{ text: `Got ${results.length} results.` }], stop: 'end' };
  }
  if (scenario === 'swapped') {
    if (results.length === 0)
      return { parts: [call('call_s1', 'execute_command', '{"command": "echo BBB", "blocking": true}', 1), { sleep: 500 }, call('call_s0', 'execute_command', '{"command": "echo AAA", "blocking": true}', 0)], stop: 'tool' };
    return { parts: [{ text: `Got ${results.length} results: ${results.join(' | ').slice(0, 300)}` }], stop: 'end' };
  }
  if (scenario === 'longid') {
    if (results.length === 0)
      return { parts: [call('call_' + 'x'.repeat(73) + '\u00e9' + 'y'.repeat(20), 'execute_command', '{"command": "echo LONG", "blocking": true}')], stop: 'tool' };
    return { parts: [{ text: `Got ${results.length} results.` }], stop: 'end' };
  }
  if (scenario === 'dupids') {
    if (results.length === 0)
      return { parts: [call('call_1', 'execute_command', '{"command": "echo D1", "blocking": true}'),
                       call('call_1', 'execute_command', '{"command": "echo D2", "blocking": true}'),
                       call('call.2', 'execute_command', '{"command": "echo D3", "blocking": true}')], stop: 'tool' };
    return { parts: [{ text: `Got ${results.length} results.` }], stop: 'end' };
  }
  if (scenario === 'xmlmulti' || scenario === 'badxml') {
    if (results.length > 0) return { parts: [{ text: `Read ${results.length} results.` }], stop: 'end' };
    const block = scenario === 'xmlmulti'
      ? '<function_calls>\n<invoke name="execute_command">\n<parameter name="command">echo x1</parameter>\n<parameter name="blocking">true</parameter>\n</invoke>\n<invoke name="execute_command">\n<parameter name="command">echo x2</parameter>\n<parameter name="blocking">true</parameter>\n</invoke>\n</function_calls>'
      : '<function_calls>\n<invoke name="execute_command">\n<parameter name="command">echo never</parameter>\n</function_calls>';
    return { parts: [{ text: `Running both.\n${block}\nTEXT AFTER THE BLOCK` }], stop: 'end' };
  }
  if (scenario === 'xmlstrings') {
    if (results.length > 0) return { parts: [{ text: `Read ${results.length} results.` }], stop: 'end' };
    const file = (path, contents) => `<invoke name="create_file">\n<parameter name="file_path">${path}</parameter>\n<parameter name="file_contents">${contents}</parameter>\n</invoke>\n`;
    const block = '<function_calls>\n' + file('a.json', '{"a": 1}') + file('b.txt', '007') +
      '<invoke name="execute_command">\n<parameter name="command">cat a.json b.txt</parameter>\n<parameter name="blocking">true</parameter>\n</invoke>\n</function_calls>';
    return { parts: [{ text: `Writing.\n${block}` }], stop: 'end' };
  }
  if (scenario === 'nul') {
    if (results.length === 0)
      return { parts: [{ text: 'before\u0000after' }, call('call_n1', 'execute_command', JSON.stringify({ command: "printf 'N1\\000N2'", blocking: true }))], stop: 'tool' };
    return { parts: [{ text: `Read\u0000 ${results.length} results.` }], stop: 'end' };
  }
  if (scenario === 'unknown') {
    if (results.length === 0) return { parts: [call('call_u1', 'no_such_tool', '{"x": 1}')], stop: 'tool' };
    return { parts: [{ text: `The tool said: ${results[0].slice(0, 300)}` }], stop: 'end' };
  }
  if (scenario === 'ask') {
    if (results.length === 0) return { parts: [{ text: 'I need to know.' }, call('call_a1', 'ask', '{"text": "Which colour?"}')], stop: 'tool' };
    return { parts: [{ text: 'THE RUN SHOULD HAVE ENDED' }], stop: 'end' };
  }
  if (scenario === 'slow2') {
    if (results.length === 0)
      return { parts: [call('call_s1', 'execute_command', '{"command": "date +%s%3N", "blocking": true}'), { sleep: 2000 }, call('call_s2', 'execute_command', '{"command": "echo late", "blocking": true}')], stop: 'tool' };
    return { parts: [{ text: 'Both ran.' }], stop: 'end' };
  }
  if (scenario === 'loop') return { parts: [call(`call_l${n}`, 'execute_command', '{"command": "echo again", "blocking": true}')], stop: 'tool' };
  if (scenario === 'length') {
    if (n < Number(arg || 1)) return { parts: [{ text: `part${n} ` }], stop: 'length' };
    return { parts: [{ text: 'the end.' }], stop: 'end' };
  }
  if (scenario === 'big') {
    const any = (body.messages || []).some((m) => m.role === 'tool');
    if (!any) return { parts: [call(`call_b${n}`, 'execute_command', '{"command": "yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | head -c 2000000", "blocking": true}')], stop: 'tool' };
    return { parts: [{ text: `Fine, request ${n}.` }], stop: 'end' };
  }
  if (scenario === 'title') return { parts: [{ text: ' "Colour Survey Notes" ' }], stop: 'end' };
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
  let ti = 0;
  for (const part of p.parts) {
    if (part.sleep !== undefined) {
      await sleep(part.sleep);
      if (res.destroyed) return false;
    } else if (part.text !== undefined) {
      for (const t of pieces(part.text, 7)) { chunk({ content: t }); text += t; }
    } else {
      const tc = part.tool;
      const idx = tc.index !== undefined ? tc.index : ti; // the provider's index, as planned
      chunk({ tool_calls: [{ index: idx, id: tc.id, type: 'function', function: { name: tc.name, arguments: '' } }] });
      for (const a of pieces(tc.args, 3)) chunk({ tool_calls: [{ index: idx, function: { arguments: a } }] });
      ti++;
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
  chunk({}, p.stop === 'tool' ? 'tool_calls' : p.stop === 'length' ? 'length' : 'stop');
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
  sseWrite(res, 'message_delta', { type: 'message_delta', delta: { stop_reason: p.stop === 'tool' ? 'tool_use' : p.stop === 'length' ? 'max_tokens' : 'end_turn', stop_sequence: null }, usage: { output_tokens: 21 } });
  sseWrite(res, 'message_stop', { type: 'message_stop' });
  return true;
}

function errorBody(wire, status, message) {
  if (wire === 'anthropic') return { type: 'error', error: { type: status === 429 ? 'rate_limit_error' : 'overloaded_error', message } };
  return { error: { message, type: status === 429 ? 'rate_limit_exceeded' : 'server_error' } };
}

// The h-* scenarios: the raw wire of a broken provider. Returns true when it handled the request.
async function hostile(scenario, arg, wire, model, res, entry) {
  if (!scenario.startsWith('h-')) return false;
  const sse = () => res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  const base = { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model };
  const chunk = (delta, finish) => sseWrite(res, null, { ...base, choices: [{ index: 0, delta, finish_reason: finish || null }] });
  const forever = async (ms, what) => {
    while (!res.destroyed) { res.write(what()); await sleep(ms); }
  };
  if (scenario === 'h-badutf8') {
    sse();
    const head = wire === 'anthropic'
      ? 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"caf'
      : 'data: {"choices":[{"index":0,"delta":{"content":"caf';
    res.write(Buffer.concat([Buffer.from(head), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}}]}\n\n')]));
  } else if (scenario === 'h-namegrow') {
    sse();
    chunk({ tool_calls: [{ index: 0, id: 'call_g1', type: 'function', function: { name: 'execute_command', arguments: '' } }] });
    const n = Number(arg || 64);
    for (let i = 0; i < n && !res.destroyed; i++) {
      chunk({ tool_calls: [{ index: 0, function: { name: (i % 2 ? 'b' : 'a').repeat(1 << 20) } }] });
      await sleep(1);
    }
    if (res.destroyed) return true;
    chunk({}, 'tool_calls');
    sseWrite(res, null, '[DONE]');
  } else if (scenario === 'h-done-linger') {
    sse();
    const p = { parts: [{ text: 'Complete, then lingering.' }], stop: 'end' };
    if (wire === 'anthropic') await streamAnthropic(res, model, p, {});
    else await streamOpenAI(res, model, p, {});
    entry.finished = true; // the answer is whole; the connection is not closed
    if (arg === 'silent') await new Promise((r) => res.on('close', r));
    else await forever(200, () => ': ping\n\n');
    return true;
  } else if (scenario === 'h-argsgrow') {
    sse();
    const k = Number(arg || 1024);
    chunk({ tool_calls: [{ index: 0, id: 'call_ag1', type: 'function', function: { name: 'execute_command', arguments: '{"command": "echo ' } }] });
    const piece = 'x'.repeat(k - 1) + '}';
    for (let sent = 0; sent < 4.5 * (1 << 20) && !res.destroyed; sent += k) {
      const ok = res.write(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: piece } }] }, finish_reason: null }] })}\n\n`);
      if (!ok) await new Promise((r) => res.once('drain', r));
    }
    if (res.destroyed) return true;
    chunk({}, 'tool_calls');
    sseWrite(res, null, '[DONE]');
  } else if (scenario === 'h-errbody') {
    res.writeHead(500, { 'Content-Type': 'text/plain' });
    await forever(50, () => 'x'.repeat(65536));
    return true;
  } else if (scenario === 'h-bigjson') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.write('{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"');
    const mb = 'x'.repeat(1 << 20);
    await forever(5, () => mb);
    return true;
  } else if (scenario === 'h-json') { // a whole chat.completion of arg MiB of text, ended
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ id: 'chatcmpl-fake', object: 'chat.completion', model,
      choices: [{ index: 0, message: { role: 'assistant', content: 'x'.repeat((Number(arg) || 1) << 20) }, finish_reason: 'stop' }] }));
    return true;
  } else if (scenario === 'h-html') {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n<body><h1>Please sign in</h1></body></html>\n');
    entry.finished = true;
    return true;
  } else if (scenario === 'h-hugeline') {
    sse();
    res.write('data: {"choices":[{"index":0,"delta":{"content":"');
    const mb = Buffer.alloc(1 << 20, 'x');
    for (let i = 0; i < Number(arg || 16) && !res.destroyed; i++) {
      if (!res.write(mb)) await new Promise((r) => res.once('drain', r));
    }
  } else if (scenario === 'h-pings') {
    sse();
    chunk({ role: 'assistant', content: '' });
    await forever(Number(arg || 100), () => ': ping\n\n');
    return true;
  } else {
    res.writeHead(404, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: { message: `no hostile scenario ${scenario}` } }));
    return true;
  }
  if (!res.destroyed) { entry.finished = true; res.end(); }
  return true;
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
  if (scenario === 'fail500' || scenario === 'title-fail') return sendError(wire === 'anthropic' ? 529 : 500, 'the fake is down');
  if (scenario === 'big' && entry.bytes > Number(arg || 200000)) {
    res.writeHead(400, { 'Content-Type': 'application/json' });
    return res.end(JSON.stringify({ error: { message: `This model's maximum context length is exceeded: the request has ${entry.bytes} bytes`, type: 'invalid_request_error', code: 'context_length_exceeded' } }));
  }
  if (scenario === 'nohead') return; // never answers
  if (await hostile(scenario, arg, wire, body.model, res, entry)) return;
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  const opts = {};
  if (scenario === 'cut') opts.cut = true;
  if (scenario === 'silent') opts.silent = true;
  if (scenario === 'error-event') opts.errorEvent = true;
  if (scenario === 'steady') { opts.intervalMs = Number(arg || 100); opts.count = Number(model.split(':')[2] || 10); }
  const p = plan(scenario, wire, body, n, arg);
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
    entry.bytes = Buffer.concat(chunks).length;
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
