// context_estimate.js — calibrates the agent-runner's tokenizer-free context estimate
// (services/agent-runner/context_budget.h: ceil(bytes * 10 / 23)) against OpenAI's o200k_base
// and cl100k_base tokenizers on texts of the kinds a thread holds. Prints, per sample, bytes per
// token and estimate / actual (>= 1 means the estimate over-counts, which keeps the budget).
// A one-off measurement, not part of the suite (the tokenizer is not a test dependency):
//   npm install --no-save --prefix /tmp/tok gpt-tokenizer@2.9.0
//   NODE_PATH=/tmp/tok/node_modules node tests/bench/context_estimate.js [repo root]
'use strict';
const fs = require('fs');
const { execSync } = require('child_process');
const enc = { o200k: require('gpt-tokenizer/cjs/encoding/o200k_base'), cl100k: require('gpt-tokenizer/cjs/encoding/cl100k_base') };
const root = process.argv[2] || require('path').resolve(__dirname, '../..');
const samples = {
  'English prose (docs/architecture.md)': fs.readFileSync(root + '/docs/architecture.md', 'utf8'),
  'English prose (agent-runner README.md)': fs.readFileSync(root + '/services/agent-runner/README.md', 'utf8'),
  'C source (run.c)': fs.readFileSync(root + '/services/agent-runner/run.c', 'utf8'),
  'JSON (tests/package.json, indented)': JSON.stringify(JSON.parse(fs.readFileSync(root + '/tests/package.json', 'utf8')), null, 2).repeat(20),
  'JSON tool result (ls -la /usr/bin as Kortix tool_execution)': JSON.stringify({ tool_execution: { function_name: 'execute_command', result: { success: true, output: { output: execSync('ls -la /usr/bin | head -400').toString(), session_name: 'session_1', cwd: '/workspace', completed: true } } } }),
  'shell listing (ps aux)': execSync('ps aux | head -200').toString(),
  'JavaScript (fake-llm.js)': fs.readFileSync(root + '/tests/fakes/llm-provider/fake-llm.js', 'utf8'),
  'repeated ASCII (yes x...)': 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n'.repeat(3000),
};
for (const [name, text] of Object.entries(samples)) {
  const bytes = Buffer.byteLength(text);
  const row = [name, bytes];
  for (const [ename, e] of Object.entries(enc)) { const t = e.encode(text).length; row.push(`${ename} ${t} tokens, ${(bytes / t).toFixed(2)} B/tok, estimate/actual ${(Math.ceil(bytes * 10 / 23) / t).toFixed(2)}`); }
  console.log(row.join(' | '));
}
