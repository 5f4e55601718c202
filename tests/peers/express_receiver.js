// Benchmark peer for tests/bench.rs: the smallest Express receiver for
// AutoPi batches that is still correct. Token or Bearer auth, JSON bodies up
// to 32 MB (body-parser inflates gzip), each batch appended to a JSON-lines
// file and fsynced before the 200, as autopi-rx does.
//
//   node express_receiver.js PORT CAPTURE TOKEN
//
// `require('express')` is found through NODE_PATH (the benchmark sets it to
// the folder express was installed in); nothing here is part of the build.
'use strict';
const express = require('express');
const fs = require('fs');

const [port, capturePath, secret] = process.argv.slice(2);
const out = fs.openSync(capturePath, 'a');
const allowed = new Set([`token ${secret}`, `Bearer ${secret}`]);

const app = express();
app.use(express.json({ limit: '32mb' }));
app.post('*', (req, res) => {
  if (!allowed.has(req.get('authorization') || '')) {
    res.status(401).end();
    return;
  }
  const line = JSON.stringify({ received: new Date().toISOString(), records: req.body });
  fs.writeSync(out, line + '\n');
  fs.fsyncSync(out);
  res.status(200).end();
});
app.listen(Number(port), '127.0.0.1', () => {
  console.error(`listening on http://127.0.0.1:${port}`);
});
