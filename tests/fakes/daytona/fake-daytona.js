#!/usr/bin/env node
// fake-daytona.js — a fake Daytona API for the sandbox-broker's daytona provider tests, on
// 127.0.0.1, speaking the subset of Daytona's REST wire format that the broker uses
// (services/sandbox-broker/daytona.c and daytona_ops.c list it):
//   POST   /sandbox                          {snapshot, target, labels, env, cpu, memory, disk,
//                                            autoStopInterval, autoArchiveInterval, public}
//                                            -> Sandbox, state "creating" (then "started")
//   GET    /sandbox?labels=<json>            [Sandbox] whose labels contain all those given
//   GET    /sandbox/:id                      Sandbox
//   POST   /sandbox/:id/start                Sandbox, state "starting" (then "started")
//   POST   /sandbox/:id/stop | /archive      Sandbox, state "stopped" | "archived"
//   DELETE /sandbox/:id                      200, no body
//   GET    /sandbox/:id/ports/:port/preview-url   {sandboxId, url, token}
//   POST   /toolbox/:id/toolbox/process/execute   {command, cwd, timeout} -> {exitCode, result}
//   GET    /toolbox/:id/toolbox/files?path=        [FileInfo{name, isDir, size, mode,
//                                                   permissions, modTime}]
//   GET    /toolbox/:id/toolbox/files/info?path=   FileInfo
//   GET    /toolbox/:id/toolbox/files/download?path=  the bytes
//   POST   /toolbox/:id/toolbox/files/upload?path=    multipart/form-data, part "file"
//   DELETE /toolbox/:id/toolbox/files?path=[&recursive=true]
//   POST   /toolbox/:id/toolbox/process/session          {sessionId} (409 when it exists)
//   GET    /toolbox/:id/toolbox/process/session          [Session{sessionId, commands}]
//   GET    /toolbox/:id/toolbox/process/session/:s       Session{sessionId, commands: [Command{id,
//                                                        command, exitCode}]}
//   POST   /toolbox/:id/toolbox/process/session/:s/exec  {command, runAsync} -> {cmdId} (async),
//                                                        {cmdId, output, exitCode} (not)
//   GET    /toolbox/:id/toolbox/process/session/:s/command/:c/logs   text/plain
//   DELETE /toolbox/:id/toolbox/process/session/:s       kills its commands
// Sandbox: {id, organizationId, snapshot, user, env, labels, public, target, cpu, gpu, memory,
// disk, state, autoStopInterval, autoArchiveInterval, createdAt, updatedAt}. Errors are
// NestJS-shaped: {statusCode, message, error}.
//
// "exec" really runs the command (/bin/sh -c) in a temporary directory per sandbox that stands
// for its /workspace ("/workspace/x" in cwd and paths maps to <dir>/x); no jail: test use only.
// A sandbox needs state "started" for the toolbox (409 otherwise). Transient states last
// TRANSIENT_MS (default 150) and end at the next GET after that (never while the route that
// began them, create or start, is in mode "stuck").
//
// Test control (no key needed):
//   POST /_mode {"route": R, "mode": M}  R: create list get start stop archive delete exec
//                                        files preview session, or "*"; M: ok | hang | slow-MS | 500 |
//                                        401 | stuck (start/create: the state never settles)
//   GET  /_log                            every request so far: [{method, path, auth, body}]
//   GET  /_state                          {sandboxes: [Sandbox]}
//
//   node fake-daytona.js PORT KEY
'use strict';
const http = require('http');
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { execFile, spawn } = require('child_process');

const port = Number(process.argv[2] || process.env.PORT);
const key = process.argv[3] || process.env.FAKE_DAYTONA_KEY || 'test-key';
const TRANSIENT_MS = Number(process.env.TRANSIENT_MS || 150);
const log = [];
const modes = {};
const sandboxes = new Map(); // id -> {sb, dir, settleAt, settleTo}

function send(res, status, obj) {
  const body = obj === undefined ? '' : JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
function error(res, status, message) {
  const names = { 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 409: 'Conflict', 500: 'Internal Server Error' };
  send(res, status, { statusCode: status, message, error: names[status] || 'Error' });
}

function settle(rec) {
  if (rec.settleTo && Date.now() >= rec.settleAt && modes[rec.via] !== 'stuck') {
    rec.sb.state = rec.settleTo;
    rec.settleTo = null;
    rec.sb.updatedAt = new Date().toISOString();
  }
  return rec.sb;
}

function setState(rec, state, then) {
  rec.sb.state = state;
  rec.sb.updatedAt = new Date().toISOString();
  rec.settleTo = then || null;
  rec.settleAt = Date.now() + TRANSIENT_MS;
}

// "/workspace/a/b" -> <dir>/a/b, refusing anything that leaves the directory.
function local(rec, p) {
  const rel = String(p || '/workspace').replace(/^\/workspace\/?/, '');
  const full = path.resolve(rec.dir, rel);
  if (full !== rec.dir && !full.startsWith(rec.dir + path.sep)) return null;
  return full;
}

function fileInfo(full, name) {
  const st = fs.lstatSync(full);
  return {
    name,
    isDir: st.isDirectory(),
    size: st.size,
    mode: (st.isDirectory() ? 'd' : '-') + 'rw-r--r--',
    permissions: '0' + (st.mode & 0o777).toString(8),
    modTime: st.mtime.toISOString(),
    owner: 'daytona',
    group: 'daytona',
  };
}

// A single-part multipart body: the part's bytes.
function multipartFile(req, body) {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/.exec(req.headers['content-type'] || '');
  if (!m) return null;
  const boundary = Buffer.from('--' + (m[1] || m[2]));
  const start = body.indexOf(boundary);
  const headEnd = body.indexOf('\r\n\r\n', start);
  const end = body.indexOf(Buffer.concat([Buffer.from('\r\n'), boundary]), headEnd);
  if (start < 0 || headEnd < 0 || end < 0) return null;
  return body.subarray(headEnd + 4, end);
}

function endSessions(rec) {
  for (const sess of (rec.sessions || new Map()).values()) {
    for (const c of sess.commands) if (c.exitCode === null) try { process.kill(-c.child.pid, 'SIGKILL'); } catch (e) { /* gone */ }
  }
  rec.sessions = new Map();
}

function routeOf(method, p) {
  if (p === '/sandbox') return method === 'POST' ? 'create' : 'list';
  let m = /^\/sandbox\/[^/]+$/.exec(p);
  if (m) return method === 'DELETE' ? 'delete' : 'get';
  m = /^\/sandbox\/[^/]+\/(start|stop|archive)$/.exec(p);
  if (m) return m[1];
  if (/^\/sandbox\/[^/]+\/ports\/\d+\/preview-url$/.test(p)) return 'preview';
  if (/\/toolbox\/process\/execute$/.test(p)) return 'exec';
  if (/\/toolbox\/files/.test(p)) return 'files';
  if (/\/toolbox\/process\/session/.test(p)) return 'session';
  return 'other';
}

function handle(req, res, body, url) {
  const p = url.pathname;
  const method = req.method;
  let m;
  if (p === '/sandbox' && method === 'POST') {
    let rq;
    try { rq = JSON.parse(body.toString() || '{}'); } catch (e) { return error(res, 400, 'body is not JSON'); }
    if (!rq.snapshot) return error(res, 400, 'snapshot is required');
    const id = crypto.randomUUID();
    const now = new Date().toISOString();
    const sb = {
      id, organizationId: 'org-fake', snapshot: rq.snapshot, user: 'daytona', env: rq.env || {},
      labels: rq.labels || {}, public: !!rq.public, target: rq.target || 'us', cpu: rq.cpu || 1,
      gpu: 0, memory: rq.memory || 1, disk: rq.disk || 3, state: 'creating',
      autoStopInterval: rq.autoStopInterval ?? 15, autoArchiveInterval: rq.autoArchiveInterval ?? 10080,
      createdAt: now, updatedAt: now,
    };
    const rec = { sb, dir: fs.mkdtempSync(path.join(os.tmpdir(), 'fake-daytona-')), via: 'create' };
    sandboxes.set(id, rec);
    setState(rec, 'creating', 'started');
    return send(res, 200, sb);
  }
  if (p === '/sandbox' && method === 'GET') {
    let want = {};
    try { want = JSON.parse(url.searchParams.get('labels') || '{}'); } catch (e) { return error(res, 400, 'labels is not JSON'); }
    const out = [];
    for (const rec of sandboxes.values()) {
      if (Object.entries(want).every(([k, v]) => rec.sb.labels[k] === v)) out.push(settle(rec));
    }
    return send(res, 200, out);
  }
  if ((m = /^\/sandbox\/([^/]+)(\/.*)?$/.exec(p))) {
    const rec = sandboxes.get(m[1]);
    if (!rec) return error(res, 404, `Sandbox with ID ${m[1]} not found`);
    const rest = m[2] || '';
    if (rest === '' && method === 'GET') return send(res, 200, settle(rec));
    if (rest === '' && method === 'DELETE') {
      endSessions(rec);
      sandboxes.delete(m[1]);
      fs.rmSync(rec.dir, { recursive: true, force: true });
      return send(res, 200);
    }
    if (rest === '/start' && method === 'POST') {
      settle(rec);
      if (rec.sb.state === 'started') return send(res, 200, rec.sb);
      rec.via = 'start';
      setState(rec, 'starting', 'started');
      return send(res, 200, rec.sb);
    }
    if (rest === '/stop' && method === 'POST') { endSessions(rec); setState(rec, 'stopped'); return send(res, 200, rec.sb); }
    if (rest === '/archive' && method === 'POST') { setState(rec, 'archived'); return send(res, 200, rec.sb); }
    const pm = /^\/ports\/(\d+)\/preview-url$/.exec(rest);
    if (pm && method === 'GET') {
      return send(res, 200, {
        sandboxId: m[1],
        url: `https://${pm[1]}-${m[1]}.proxy.daytona.example`,
        token: crypto.createHash('sha256').update(m[1]).digest('hex').slice(0, 32),
      });
    }
    return error(res, 404, `Cannot ${method} ${p}`);
  }
  if ((m = /^\/toolbox\/([^/]+)\/toolbox\/(.*)$/.exec(p))) {
    const rec = sandboxes.get(m[1]);
    if (!rec) return error(res, 404, `Sandbox with ID ${m[1]} not found`);
    if (settle(rec).state !== 'started') return error(res, 409, 'Sandbox is not started');
    const what = m[2];
    if (what === 'process/execute' && method === 'POST') {
      let rq;
      try { rq = JSON.parse(body.toString() || '{}'); } catch (e) { return error(res, 400, 'body is not JSON'); }
      const cwd = local(rec, rq.cwd);
      if (!rq.command || cwd === null) return error(res, 400, 'command is required');
      fs.mkdirSync(cwd, { recursive: true });
      const timeout = (rq.timeout || 10) * 1000;
      execFile('/bin/sh', ['-c', rq.command], { cwd, timeout, maxBuffer: 64 << 20 }, (err, so, se) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        send(res, 200, { exitCode: code, result: String(so) + String(se) });
      });
      return;
    }
    if (what.startsWith('process/session')) return session(rec, what.slice('process/session'.length), method, body, res);
    const full = local(rec, url.searchParams.get('path'));
    if (full === null) return error(res, 400, 'path is outside the workspace');
    try {
      if (what === 'files' && method === 'GET') {
        return send(res, 200, fs.readdirSync(full).map((n) => fileInfo(path.join(full, n), n)));
      }
      if (what === 'files/info' && method === 'GET') return send(res, 200, fileInfo(full, path.basename(full)));
      if (what === 'files/download' && method === 'GET') {
        const data = fs.readFileSync(full);
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': data.length });
        return res.end(data);
      }
      if (what === 'files/upload' && method === 'POST') {
        const data = multipartFile(req, body);
        if (data === null) return error(res, 400, 'expected multipart/form-data with a part "file"');
        fs.mkdirSync(path.dirname(full), { recursive: true });
        fs.writeFileSync(full, data);
        return send(res, 200);
      }
      if (what === 'files' && method === 'DELETE') {
        const st = fs.lstatSync(full);
        if (st.isDirectory() && url.searchParams.get('recursive') !== 'true') return error(res, 400, 'directory: recursive is required');
        fs.rmSync(full, { recursive: true, force: false });
        return send(res, 200);
      }
    } catch (e) {
      if (e.code === 'ENOENT') return error(res, 404, 'file not found');
      return error(res, 400, String(e.message));
    }
    return error(res, 404, `Cannot ${method} ${p}`);
  }
  return error(res, 404, `Cannot ${method} ${p}`);
}

// Process sessions: one shell per command here (cwd and environment are not kept between
// commands: the broker sends "cd <folder> && <command>").
function sessionJson(id, sess) {
  return { sessionId: id, commands: sess.commands.map((c) => ({ id: c.id, command: c.command, exitCode: c.exitCode })) };
}
function session(rec, rest, method, body, res) {
  rec.sessions = rec.sessions || new Map();
  if (rest === '' && method === 'POST') {
    let rq;
    try { rq = JSON.parse(body.toString() || '{}'); } catch (e) { return error(res, 400, 'body is not JSON'); }
    if (!rq.sessionId) return error(res, 400, 'sessionId is required');
    if (rec.sessions.has(rq.sessionId)) return error(res, 409, `session ${rq.sessionId} already exists`);
    rec.sessions.set(rq.sessionId, { commands: [] });
    return send(res, 201);
  }
  if (rest === '' && method === 'GET') return send(res, 200, [...rec.sessions].map(([id, s]) => sessionJson(id, s)));
  const m = /^\/([^/]+)(\/.*)?$/.exec(rest);
  const sess = m && rec.sessions.get(m[1]);
  if (!sess) return error(res, 404, `session ${m ? m[1] : ''} not found`);
  const tail = m[2] || '';
  if (tail === '' && method === 'GET') return send(res, 200, sessionJson(m[1], sess));
  if (tail === '' && method === 'DELETE') {
    for (const c of sess.commands) if (c.exitCode === null) try { process.kill(-c.child.pid, 'SIGKILL'); } catch (e) { /* gone */ }
    rec.sessions.delete(m[1]);
    return send(res, 200);
  }
  if (tail === '/exec' && method === 'POST') {
    let rq;
    try { rq = JSON.parse(body.toString() || '{}'); } catch (e) { return error(res, 400, 'body is not JSON'); }
    if (!rq.command) return error(res, 400, 'command is required');
    // "/workspace" in the command stands for the sandbox's directory here
    const command = String(rq.command).split('/workspace').join(rec.dir);
    const c = { id: crypto.randomUUID(), command: rq.command, exitCode: null, log: '' };
    c.child = spawn('/bin/sh', ['-c', command], { cwd: rec.dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    c.child.stdout.on('data', (d) => { c.log += d; });
    c.child.stderr.on('data', (d) => { c.log += d; });
    sess.commands.push(c);
    const done = new Promise((resolve) => c.child.on('close', (code, sig) => { c.exitCode = code === null ? 128 + 9 : code; resolve(); }));
    if (rq.runAsync || rq.async) return send(res, 200, { cmdId: c.id });
    done.then(() => send(res, 200, { cmdId: c.id, output: c.log, exitCode: c.exitCode }));
    return;
  }
  const lm = /^\/command\/([^/]+)\/logs$/.exec(tail);
  if (lm && method === 'GET') {
    const c = sess.commands.find((x) => x.id === lm[1]);
    if (!c) return error(res, 404, `command ${lm[1]} not found`);
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(c.log) });
    return res.end(c.log);
  }
  return error(res, 404, 'no such session route');
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const url = new URL(req.url, 'http://fake');
    if (url.pathname === '/_log') return send(res, 200, log);
    if (url.pathname === '/_state') return send(res, 200, { sandboxes: [...sandboxes.values()].map((r) => r.sb) });
    if (url.pathname === '/_mode' && req.method === 'POST') {
      let rq;
      try { rq = JSON.parse(body.toString()); } catch (e) { return error(res, 400, 'body is not JSON'); }
      if (rq.route === '*') for (const k of Object.keys(modes)) delete modes[k];
      if (rq.mode === 'ok') delete modes[rq.route]; else modes[rq.route] = rq.mode;
      return send(res, 200, modes);
    }
    const ctype = req.headers['content-type'] || '';
    log.push({
      method: req.method, path: req.url, auth: req.headers.authorization || '',
      body: ctype.startsWith('application/json') ? body.toString() : `<${body.length} bytes ${ctype.split(';')[0]}>`,
    });
    if (req.headers.authorization !== `Bearer ${key}`) return error(res, 401, 'Invalid API key');
    const route = routeOf(req.method, url.pathname);
    const mode = modes[route] || modes['*'] || 'ok';
    if (mode === 'hang') return; // never answered; the connection stays open
    if (mode === '500') return error(res, 500, 'Internal server error');
    if (mode === '401') return error(res, 401, 'Invalid API key');
    const slow = /^slow-(\d+)$/.exec(mode);
    if (slow) return setTimeout(() => handle(req, res, body, url), Number(slow[1]));
    handle(req, res, body, url);
  });
});
server.listen(port, '127.0.0.1', () => console.log(`fake-daytona on 127.0.0.1:${port}`));
// The sandboxes' directories go with the fake.
process.on('SIGTERM', () => {
  for (const rec of sandboxes.values()) {
    endSessions(rec);
    fs.rmSync(rec.dir, { recursive: true, force: true });
  }
  process.exit(0);
});
