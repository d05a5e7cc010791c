#!/usr/bin/env node
// fake-web.js — fake web APIs for the web tools' tests, on 127.0.0.1, speaking their real wire
// formats:
//   POST /search      Tavily: {"query", "max_results", ...} with Authorization: Bearer <key>
//                     (or "api_key" in the body) -> {"query", "follow_up_questions", "answer",
//                     "images": [url], "results": [{"title", "url", "content", "score",
//                     "raw_content"}], "response_time"}
//   POST /v1/scrape   Firecrawl: {"url", "formats": ["markdown"]} with Authorization: Bearer
//                     <key> -> {"success": true, "data": {"markdown", "metadata": {"title",
//                     "description", "language", "sourceURL", "url", "statusCode"}}}
//   GET  /_log        every request so far: [{path, auth, body, at_ms}]
//
//   node fake-web.js PORT KEY
//
// A wrong or missing key is answered 401 as the services do. What else happens is chosen by
// words in the query (Tavily) or the URL (Firecrawl), so concurrent test cases never share
// state:
//   hang          the request is never answered (the connection stays open)
//   fail500       HTTP 500 with the service's error body
//   slow-MS       the answer comes after MS milliseconds
//   empty         Tavily: no results
//   big-N         Firecrawl: markdown of N bytes
//   nomarkdown    Firecrawl: 200 {"success": false, "error": ...}
// Otherwise the results are made from the query or URL (so tests can recognise them).
'use strict';
const http = require('http');

const port = Number(process.argv[2] || process.env.PORT);
const key = process.argv[3] || process.env.FAKE_WEB_KEY || 'test-key';
const log = [];

function send(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function word(text, re) {
  const m = re.exec(text);
  return m ? m[1] : null;
}

function tavily(body, res) {
  const q = String(body.query || '');
  const n = Math.max(0, Math.min(Number(body.max_results || 5), 20));
  if (/fail500/.test(q)) return send(res, 500, { detail: { error: 'Internal server error' } });
  const results = [];
  if (!/empty/.test(q)) {
    for (let i = 0; i < n; i++) {
      results.push({
        title: `Result ${i + 1} for ${q}`,
        url: `https://example.com/${i + 1}?q=${encodeURIComponent(q)}`,
        content: `Snippet ${i + 1} about ${q}.`,
        score: 0.9 - i * 0.01,
        raw_content: null,
      });
    }
  }
  send(res, 200, {
    query: q,
    follow_up_questions: null,
    answer: results.length ? `The answer about ${q}.` : null,
    images: results.length ? ['https://example.com/image.png'] : [],
    results,
    response_time: 0.42,
  });
}

function firecrawl(body, res) {
  const url = String(body.url || '');
  if (!url) return send(res, 400, { success: false, error: 'url is required' });
  if (/fail500/.test(url)) return send(res, 500, { success: false, error: 'Internal server error: scrape failed' });
  if (/nomarkdown/.test(url)) return send(res, 200, { success: false, error: 'Failed to scrape the page' });
  const big = word(url, /big-(\d+)/);
  const markdown = big ? 'x'.repeat(Number(big)) : `# Page ${url}\n\nThe content of ${url}.`;
  send(res, 200, {
    success: true,
    data: {
      markdown,
      metadata: { title: `Title of ${url}`, description: 'A page', language: 'en', sourceURL: url, url, statusCode: 200 },
    },
  });
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const text = Buffer.concat(chunks).toString('utf8');
    if (req.method === 'GET' && req.url === '/_log') return send(res, 200, log);
    let body = {};
    try {
      body = text ? JSON.parse(text) : {};
    } catch (e) {
      return send(res, 400, { error: 'the body is not JSON' });
    }
    const auth = req.headers.authorization || '';
    log.push({ path: req.url, auth, body, at_ms: Date.now() });
    if (auth !== `Bearer ${key}` && body.api_key !== key) {
      return send(res, 401, req.url === '/search' ? { detail: { error: 'Unauthorized: missing or invalid API key.' } }
        : { success: false, error: 'Unauthorized: Invalid token' });
    }
    const subject = req.url === '/search' ? String(body.query || '') : String(body.url || '');
    if (/hang/.test(subject)) return; // never answered
    const handle = req.url === '/search' ? tavily : req.url === '/v1/scrape' ? firecrawl : null;
    if (!handle) return send(res, 404, { error: `no route ${req.method} ${req.url}` });
    const slow = Number(word(subject, /slow-(\d+)/) || 0);
    if (slow > 0) setTimeout(() => handle(body, res), slow);
    else handle(body, res);
  });
});
server.keepAliveTimeout = 60000;
server.listen(port, '127.0.0.1', () => console.log(`fake-web listening on 127.0.0.1:${port}`));
