// A push server written with Node's `ws`, not by c1m: the side-by-side reference for
// bench/engine.sh. It broadcasts {"seq":N,"ts":MICROS} to every client on SIGUSR1 and
// logs `broadcast seq=N sent to M connections in X ms` like c1m's server.
//   node ws_server.js PORT [CERT.pem KEY.pem] [--deflate]
// With a certificate: wss://, Node's https. --deflate: permessage-deflate on, every message
// compressed (threshold 0), context takeover unless the client asks otherwise (ws's default).
const { WebSocketServer } = require('ws');
const port = Number(process.argv[2] || 8090);
const rest = process.argv.slice(3);
const perMessageDeflate = rest.includes('--deflate') ? { threshold: 0 } : false;
const [cert, key] = rest.filter((a) => a !== '--deflate');
let wss;
if (cert) {
  const fs = require('fs');
  const server = require('https').createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) });
  wss = new WebSocketServer({ server, perMessageDeflate });
  server.listen({ host: '127.0.0.1', port, backlog: 65535 }, () => console.log(`listening ${server.address().port}`));
} else {
  wss = new WebSocketServer({ host: '127.0.0.1', port, backlog: 65535, perMessageDeflate });
  wss.on('listening', () => console.log(`listening ${wss.address().port}`));
}
let seq = 0;
wss.on('connection', (ws) => ws.on('error', () => {}));
process.on('SIGUSR1', () => {
  seq += 1;
  const t0 = performance.now();
  const ts = Math.round((performance.timeOrigin + performance.now()) * 1000);
  const msg = JSON.stringify({ seq, ts });
  let n = 0;
  for (const ws of wss.clients) { ws.send(msg); n += 1; }
  console.log(`broadcast seq=${seq} sent to ${n} connections in ${(performance.now() - t0).toFixed(1)} ms`);
});
process.on('SIGTERM', () => process.exit(0));
