// A GraphQL subscription server written with npm's `graphql-ws` (6.x, protocol
// `graphql-transport-ws`) on `ws`, not by c1m: the library's own handshake, subscribe and
// complete handling, plus a strict protocol-level keep-alive.
//
//   node graphql_ws_server.js [--port 0] [--every-ms 100] [--duration 15] [--silence-ms 2000]
//
// ws://127.0.0.1:PORT/graphql, subprotocol `graphql-transport-ws` (a connection without it is
// closed 4406 by the library). Schema:
//   type Query { hello: String }  type Subscription { tick: Tick }
//   type Tick { seq: Int, ts: Float }
// The client sends {"type":"connection_init"}, gets {"type":"connection_ack"}, then
// {"id":"1","type":"subscribe","payload":{"query":"subscription { tick { seq ts } }"}}; every
// --every-ms one {seq, ts} is published to all active subscriptions and arrives as
// {"id":"1","type":"next","payload":{"data":{"tick":{"seq":N,"ts":MS}}}}.
// Keep-alive: every silence-ms/2 the server sends {"type":"ping"} to each connection and
// closes (4000 "no pong") one that has not sent {"type":"pong"} since the previous ping.
// (The library's own WebSocket-level ping frames are turned off.) A connection that sends no
// connection_init within 3 s is closed 4408 by the library.
//
// Prints `listening PORT` once bound and, after --duration seconds, `stats {json}` and exits.
const { WebSocketServer } = require('ws');
const { useServer } = require('graphql-ws/use/ws');
const {
  GraphQLSchema, GraphQLObjectType, GraphQLString, GraphQLInt, GraphQLFloat,
} = require('graphql');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
}
const port = Number(arg('port', 0));
const everyMs = Number(arg('every-ms', 100));
const duration = Number(arg('duration', 15));
const silenceMs = Number(arg('silence-ms', 2000));

const stats = {
  accepted: 0, subscribed: 0, subscriptions: 0, closed_for_silence: 0, pushed: 0,
  pings: 0, pongs: 0, close_codes: {},
};

// A minimal pub/sub: each subscription is an async iterator fed by publish().
const listeners = new Set();
function publish(value) { for (const push of listeners) push(value); }
function ticks() {
  const queue = [];
  let wake = null;
  let done = false;
  const push = (v) => { queue.push(v); if (wake) { wake(); wake = null; } };
  listeners.add(push);
  return {
    [Symbol.asyncIterator]() { return this; },
    async next() {
      while (!queue.length && !done) await new Promise((r) => { wake = r; });
      return done ? { value: undefined, done: true } : { value: queue.shift(), done: false };
    },
    async return() {
      done = true;
      listeners.delete(push);
      if (wake) wake();
      return { value: undefined, done: true };
    },
  };
}

const Tick = new GraphQLObjectType({
  name: 'Tick',
  fields: { seq: { type: GraphQLInt }, ts: { type: GraphQLFloat } },
});
const schema = new GraphQLSchema({
  query: new GraphQLObjectType({
    name: 'Query',
    fields: { hello: { type: GraphQLString, resolve: () => 'world' } },
  }),
  subscription: new GraphQLObjectType({
    name: 'Subscription',
    fields: {
      tick: {
        type: Tick,
        subscribe: (_root, _args, ctx) => {
          const socket = ctx.extra.socket;
          if (!socket.c1mSubscribed) { socket.c1mSubscribed = true; stats.subscribed += 1; }
          stats.subscriptions += 1;
          return ticks();
        },
        resolve: (payload) => payload,
      },
    },
  }),
});

const wss = new WebSocketServer({
  host: '127.0.0.1', port, path: '/graphql', perMessageDeflate: false,
});
wss.on('connection', (socket) => {
  stats.accepted += 1;
  socket.c1mAwaitingPong = false;
  socket.on('close', (code) => { stats.close_codes[code] = (stats.close_codes[code] || 0) + 1; });
});
useServer(
  {
    schema,
    context: (ctx) => ctx,
    onNext: () => { stats.pushed += 1; },
    onPong: (ctx) => { stats.pongs += 1; ctx.extra.socket.c1mAwaitingPong = false; },
  },
  wss,
  0, // no WebSocket-level ping frames: the keep-alive under test is the protocol's own
);

const keepAlive = setInterval(() => {
  for (const socket of wss.clients) {
    if (socket.readyState !== socket.OPEN) continue;
    if (socket.c1mAwaitingPong) {
      stats.closed_for_silence += 1;
      socket.close(4000, 'no pong');
      continue;
    }
    socket.c1mAwaitingPong = true;
    stats.pings += 1;
    socket.send(JSON.stringify({ type: 'ping' }));
  }
}, Math.floor(silenceMs / 2));

let seq = 0;
const ticker = setInterval(() => {
  seq += 1;
  publish({ seq, ts: Date.now() });
}, everyMs);

wss.on('listening', () => process.stdout.write(`listening ${wss.address().port}\n`));

setTimeout(() => {
  clearInterval(ticker);
  clearInterval(keepAlive);
  const line = `stats ${JSON.stringify(stats)}\n`;
  process.stdout.write(line, () => process.exit(0));
}, duration * 1000);
