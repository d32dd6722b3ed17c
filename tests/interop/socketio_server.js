// A Socket.IO push server written with npm's `socket.io` (4.8), not by c1m: the protocol's own
// server, so c1m's client is tested against the real Engine.IO/Socket.IO handshake and heartbeat.
//
//   node socketio_server.js [--port 0] [--every-ms 100] [--duration 15] [--silence-ms 2000]
//                           [--path /socket.io/]
//
// A client connects straight to `ws://127.0.0.1:PORT/socket.io/?EIO=4&transport=websocket`
// (no HTTP long-polling first), receives the Engine.IO open packet `0{"sid":...}`, sends `40`
// to join the default namespace and gets `40{"sid":"..."}`. Every --every-ms the server
// broadcasts `42["tick",{"seq":N,"ts":MS}]` with io.emit, which reaches only sockets that
// joined the namespace. Heartbeat: the server sends `2` every silence-ms/2 and drops (reason
// "ping timeout") a connection that has not answered `3` within another silence-ms/2.
//
// Prints `listening PORT` once bound and, after --duration seconds, `stats {json}` and exits.
const http = require('http');
const { Server } = require('socket.io');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
}
const port = Number(arg('port', 0));
const everyMs = Number(arg('every-ms', 100));
const duration = Number(arg('duration', 15));
const silenceMs = Number(arg('silence-ms', 2000));
const path = arg('path', '/socket.io/');

const stats = {
  accepted: 0, subscribed: 0, closed_for_silence: 0, pushed: 0, pongs: 0, close_reasons: {},
};
const httpServer = http.createServer();
const io = new Server(httpServer, {
  path,
  pingInterval: Math.floor(silenceMs / 2),
  pingTimeout: Math.ceil(silenceMs / 2),
  serveClient: false,
  perMessageDeflate: false,
});

// Engine.IO level: every upgrade, whether or not it ever joins the namespace.
io.engine.on('connection', (raw) => {
  stats.accepted += 1;
  raw.on('packet', (p) => { if (p.type === 'pong') stats.pongs += 1; });
  raw.on('close', (reason) => {
    stats.close_reasons[reason] = (stats.close_reasons[reason] || 0) + 1;
    if (reason === 'ping timeout') stats.closed_for_silence += 1;
  });
});
// Socket.IO level: the client sent `40` and joined the default namespace.
io.on('connection', () => { stats.subscribed += 1; });

let seq = 0;
const ticker = setInterval(() => {
  seq += 1;
  stats.pushed += io.of('/').sockets.size;
  io.emit('tick', { seq, ts: Date.now() });
}, everyMs);

httpServer.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${httpServer.address().port}\n`);
});

setTimeout(() => {
  clearInterval(ticker);
  const line = `stats ${JSON.stringify(stats)}\n`;
  io.close();
  process.stdout.write(line, () => process.exit(0));
}, duration * 1000);
