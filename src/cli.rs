//! The command line. Every flag names its unit and default; `--help` is the manual.

use crate::proto::payload::{Format, Unit};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "c1m",
    version,
    args_override_self = true,
    about = "Hold a million WebSocket connections and push to all of them (the C1000K test).",
    long_about = "Hold a million WebSocket connections and push to all of them (the C1000K test).\n\n\
        `c1m server` holds connections and broadcasts its clock to every one of them; \
        `c1m client` opens N connections from several source addresses and measures each \
        message's latency (receive time - the timestamp inside it) against c1m's server or any \
        server that sends a timestamp.",
    after_help = "Example, on one machine:\n  c1m server --listen 127.0.0.1:8080 --every 10s\n  \
        c1m client --url ws://127.0.0.1:8080/ --conns 10000 --ips 2 --rate 20000 --duration 60s"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// One value per run, parsed at start-up: its size costs nothing, and boxing the console's
// arguments would only add noise where they are used.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Wait for a coordinator (`c1m client --agents`) and run its share of the connections on
    /// this machine.
    Agent(AgentArgs),
    /// Accept WebSocket connections and broadcast the time to all of them.
    Server(ServerArgs),
    /// Open N connections to a WebSocket server and measure the latency of what it pushes.
    Client(ClientArgs),
    /// The live console: watch and steer a server, a client, or both on loopback.
    Tui(TuiArgs),
    /// Check the kernel limits a target needs and print the exact commands that lift them.
    Doctor(DoctorArgs),
    /// Render a saved JSON report (`--json`) as the HTML report `--html` writes, or merge the
    /// reports of one run's slices into one (`--merge`).
    Report(ReportArgs),
    /// Set two runs' JSON reports side by side: each figure's change and verdict, and exit
    /// status 1 when B is worse than A past --threshold (for CI).
    Compare(CompareArgs),
    /// List the built-in test scenarios (`--preset NAME`).
    Presets,
    /// List the built-in colour themes (`--theme NAME`).
    Themes,
    /// Internal: one worker process of a run split by --workers; reads its task on stdin.
    #[command(hide = true)]
    Worker,
}

/// Which side(s) the console runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TuiMode {
    /// A push server (c1m server's flags apply).
    Server,
    /// A load client against --url (c1m client's flags apply).
    Client,
    /// A server and a client in one process on loopback: the demo.
    Local,
}

#[derive(Args, Debug, Clone)]
pub struct TuiArgs {
    /// Which side(s) to run.
    #[arg(long, value_enum, default_value_t = TuiMode::Local)]
    pub mode: TuiMode,

    #[command(flatten)]
    pub server: ServerOpts,

    #[command(flatten)]
    pub client: ClientOpts,

    #[command(flatten)]
    pub compression: CompressionArg,

    #[command(flatten)]
    pub message: MessageArg,

    #[command(flatten)]
    pub echo: EchoArg,

    #[command(flatten)]
    pub io: IoArg,

    /// Stop after this long and print the report [default: run until `q`].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Connections added or removed by `+` / `-` [default: 10 % of --conns].
    #[arg(long, value_name = "CONNS", value_parser = at_least_one_u64)]
    pub step: Option<u64>,

    /// Colour theme: a built-in name (see `c1m themes`) or a TOML file. NO_COLOR selects `mono`.
    #[arg(long, value_name = "NAME|PATH", default_value = "default")]
    pub theme: String,

    /// Skip the start-up check of kernel limits (see `c1m doctor`).
    #[arg(long)]
    pub force: bool,

    /// Client mode: the server's control endpoint, so that `b` can trigger a broadcast
    /// (e.g. http://127.0.0.1:9100), with --control-token if the server wants one [default:
    /// none; `b` then explains why nothing happens].
    #[arg(long, value_name = "URL")]
    pub control_url: Option<String>,

    /// Run a scenario file: a built-in name (see `c1m presets`) or a TOML file; flags given on
    /// the command line override its values [default: local-demo in --mode local, else none].
    #[arg(long, value_name = "NAME|PATH")]
    pub preset: Option<String>,

    #[command(flatten)]
    pub out: Output,
}

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// Connections the machine must hold (per side).
    #[arg(long, value_name = "CONNS", default_value_t = 1_000_000)]
    pub target: u64,

    /// Source addresses the client spreads them over [default: as many as the target needs].
    #[arg(long, value_name = "COUNT", value_parser = at_least_one)]
    pub ips: Option<usize>,

    /// Which side(s) will run on this machine: server, client, or local (both).
    #[arg(long, value_enum, default_value_t = TuiMode::Local)]
    pub side: TuiMode,

    /// As root: apply the kernel settings (sysctls) this target needs, for this boot only, and
    /// print each change and the lines that keep it across reboots. Values are only ever raised.
    /// Without root nothing is changed: it prints the commands instead.
    #[arg(long)]
    pub apply: bool,
}

/// `--compression`: permessage-deflate (RFC 7692).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// Offer (or take) nothing: messages go as they are.
    #[default]
    Off,
    /// No compression state kept per connection: the client offers no context takeover either
    /// way, so one inflater per shard reads every connection; the server takes offers,
    /// compresses each broadcast once and writes that frame to every connection that agreed.
    Shared,
    /// Client only: offer what browsers offer (the server may keep its window between
    /// messages; each connection then keeps an inflate window of its own, ≈ 40 KiB).
    Context,
}

#[derive(Args, Debug, Clone, Copy)]
pub struct CompressionArg {
    /// permessage-deflate: `off`; `shared` (client: offer no context takeover, so one inflater
    /// per shard serves every connection; server: take offers and compress each broadcast once
    /// for every connection that agreed); `context` (client: offer what browsers offer, a window
    /// per connection). The report says how many connections agreed.
    #[arg(long, value_enum, value_name = "off|shared|context", default_value_t)]
    pub compression: Compression,
}

/// `--echo`: one flag, so that `c1m tui` takes it once for whichever side it runs.
#[derive(Args, Debug, Clone, Default)]
pub struct EchoArg {
    /// Write every text and binary message the peer sends back to it, whole. A server: an echo
    /// server (what Autobahn|Testsuite's fuzzing client needs, and a round-trip test's far
    /// end). A client: every pushed message goes back to the server (the fuzzing server's
    /// test), except c1m's own {rtt} messages coming back, which are timed as round trips. The
    /// message limit rises to 16 MiB unless --max-message says otherwise. In `c1m tui --mode
    /// local` the server echoes and the client does not [default: off].
    #[arg(long)]
    pub echo: bool,
}

/// `--io-uring`, for the sides that have another I/O path.
#[derive(Args, Debug, Clone, Default)]
pub struct IoArg {
    /// Server: write each broadcast through one io_uring per shard, in batches of 512 sends
    /// (one io_uring_enter per batch instead of a write() per connection). Each send still
    /// refuses a full socket at once, so what is dropped is what the default path drops.
    /// Linux 5.6 or later. Client (ws:// only): every open connection keeps one multishot
    /// receive in its shard's io_uring, reading into 1 MiB of buffers the shard shares, so
    /// no epoll_wait and read() is paid per message; Linux 6.1 or later. How each compares is
    /// in BENCHMARKS.md [default: off: epoll, write() and read()].
    #[arg(long)]
    pub io_uring: bool,
}

/// `--max-message`, for every side a command runs.
#[derive(Args, Debug, Clone, Default)]
pub struct MessageArg {
    /// The largest frame and message taken from the peer (4096, 64KiB, 16MiB); a bigger one is
    /// closed with 1009 and counted as a protocol error [default: a server takes frames of
    /// 1 KiB and messages of 4 KiB, 16 MiB with --echo; a client 1 MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_message: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct Output {
    /// Also write the final report as JSON to this file (layout: schema/report.schema.json).
    /// In `c1m tui --mode local` the server's report goes to PATH.server.json [default: no
    /// JSON file; the human report always goes to stdout].
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Also write the latencies as an HdrHistogram interval log (one interval a second, µs),
    /// as HdrHistogram's HistogramLogProcessor and plotting tools read it. The client logs
    /// message latency; the server logs its send lag (payload stamp to the write of each frame).
    /// In `c1m tui --mode local` the server's log goes to PATH.server.hdr [default: no log].
    #[arg(long, value_name = "PATH")]
    pub hdr_log: Option<PathBuf>,

    /// Also write the final report as one self-contained HTML page (charts as inline SVG,
    /// nothing fetched), rendered from the JSON report at the end; in `c1m tui --mode local`
    /// the server's goes to PATH.server.html [default: none].
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,

    /// Exit with status 1 when more than this many errors were counted.
    #[arg(long, value_name = "COUNT", default_value_t = 0)]
    pub max_errors: u64,

    /// Stop printing the one-line-a-second status (the final report is still printed).
    #[arg(long, short)]
    pub quiet: bool,

    /// Shard threads per process that hold the connections [default: one per core, shared
    /// out among worker processes].
    #[arg(long, value_name = "THREADS", value_parser = at_least_one)]
    pub shards: Option<usize>,

    #[command(flatten)]
    pub scale: Scale,
}

/// Splitting a side over worker processes, for targets past one process's descriptor limit.
#[derive(Args, Debug, Clone, Default)]
pub struct Scale {
    /// Worker processes per side, each holding part of the connections; the parent shows and
    /// reports them as one. 0 runs everything in this process [default: one process when the
    /// connections fit in its file-descriptor limit, else enough workers of --worker-conns
    /// each; a server alone (no --conns) runs in one process].
    #[arg(long, value_name = "COUNT")]
    pub workers: Option<usize>,

    /// Most connections one process holds, for choosing the worker count [default: the hard
    /// RLIMIT_NOFILE less 100; c1m raises the soft limit itself].
    #[arg(long, value_name = "CONNS", value_parser = at_least_one_u64)]
    pub worker_conns: Option<u64>,
}

impl ServerOpts {
    /// The address to listen on: `--listen`, else `default`.
    pub fn listen_or(&self, default: SocketAddr) -> SocketAddr {
        self.listen.unwrap_or(default)
    }
}

/// Where `c1m server` listens unless told otherwise.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

impl Scale {
    /// The per-process connection cap in force.
    pub fn cap(&self) -> u64 {
        self.worker_conns
            .unwrap_or_else(crate::sys::per_process_conns)
    }
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    #[command(flatten)]
    pub opts: ServerOpts,

    #[command(flatten)]
    pub compression: CompressionArg,

    #[command(flatten)]
    pub message: MessageArg,

    #[command(flatten)]
    pub echo: EchoArg,

    #[command(flatten)]
    pub io: IoArg,

    /// Stop after this long (e.g. 10m) and print the report; default: run until Ctrl-C/SIGTERM.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Run a scenario file: a built-in name (see `c1m presets`) or a TOML file; flags given on
    /// the command line override its values [default: none].
    #[arg(long, value_name = "NAME|PATH")]
    pub preset: Option<String>,

    /// Skip the start-up check of kernel limits (see `c1m doctor`).
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub out: Output,
}

#[derive(Args, Debug, Clone)]
pub struct ServerOpts {
    /// Address and port to listen on [default: 127.0.0.1:8080; in `c1m tui --mode local`, a
    /// free loopback port, since its client is in the same process].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,

    /// Speak TLS (wss://) with this certificate chain (PEM); needs --tls-key [default: plain
    /// ws://].
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        help_heading = "TLS (wss://)"
    )]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key of --tls-cert (PEM) [default: none; given with --tls-cert].
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        help_heading = "TLS (wss://)"
    )]
    pub tls_key: Option<std::path::PathBuf>,

    /// Speak TLS with a certificate made at start (ECDSA P-256, for localhost, 127.0.0.1 and
    /// ::1); the banner says where its PEM is, for clients' --ca. `c1m tui --mode local --tls`
    /// runs the demo over TLS end to end.
    #[arg(
        long,
        visible_alias = "tls",
        conflicts_with = "tls_cert",
        help_heading = "TLS (wss://)"
    )]
    pub tls_self_signed: bool,

    /// Broadcast to every connection this often (e.g. 60s, 500ms, 2m); `off` broadcasts only on
    /// demand (SIGUSR1, or a line `b` on stdin).
    #[arg(long, value_name = "INTERVAL|off", default_value = "60s", value_parser = parse_every)]
    pub every: Every,

    /// What a broadcast carries.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub payload: Format,

    /// Pad every message to this many bytes (0 = no padding).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub pad: usize,

    /// Broadcast this text instead of c1m's payload, with {seq}, {ts_us} and {ts_ms} filled in
    /// each time (other braces are text), e.g. --message '{"type":"tick","seq":{seq},
    /// "ts":{ts_us},"data":…}' or @FILE: to test a message shaped like yours (its size, and
    /// how well it compresses). It must hold {ts_us} or {ts_ms} [default: --payload].
    #[arg(long, value_name = "TEXT|@FILE", value_parser = parse_text,
          conflicts_with_all = ["pad", "payload"])]
    pub message: Option<String>,

    /// Close a connection that has not completed its WebSocket upgrade in this time.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Most connections open at once; past it an upgrade is answered 503 and counted as
    /// refused. With --workers each worker takes an equal share (rounded up), so refusals may
    /// begin about 1 % early or late [default: no cap].
    #[arg(long, value_name = "CONNS", value_parser = at_least_one_u64)]
    pub max_conns: Option<u64>,

    /// What happens to a connection that has not taken the previous broadcast frame when the
    /// next one comes (it has at most one in flight): `drop` skips it for that connection and
    /// counts it in messages.dropped; `close` also closes the connection (1008, error class
    /// slow_consumer) once it has missed --slow-close-after broadcasts in a row.
    #[arg(long, value_enum, value_name = "drop|close", default_value_t = SlowPolicy::Drop)]
    pub slow_policy: SlowPolicy,

    /// With --slow-policy close: broadcasts in a row a connection may miss before it is closed.
    #[arg(long, value_name = "BROADCASTS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub slow_close_after: u32,

    /// Serve the control endpoint here: POST /broadcast, GET /stats (JSON report so far),
    /// GET /metrics (Prometheus), GET /clock (for a coordinator's --server-clock). A bare PORT
    /// means 127.0.0.1:PORT; an address other than loopback also needs --control-token
    /// [default: off].
    #[arg(long, value_name = "ADDR:PORT|PORT", value_parser = parse_control)]
    pub control: Option<SocketAddr>,

    /// Require `Authorization: Bearer TOKEN` on every control request (others get 401 and are
    /// counted as c1m_control_unauthorized_total). The console in client mode sends it to
    /// --control-url. Prefer the environment variable C1M_CONTROL_TOKEN, which keeps the token
    /// out of `ps` [default: none; the endpoint then stays on loopback].
    #[arg(
        long,
        value_name = "TOKEN",
        env = "C1M_CONTROL_TOKEN",
        hide_env_values = true
    )]
    pub control_token: Option<String>,
}

/// `--slow-policy`: what a connection that does not keep up with broadcasts costs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SlowPolicy {
    /// Skip the frame for that connection and count it; the connection stays open.
    Drop,
    /// As drop, and close the connection after --slow-close-after misses in a row.
    Close,
}

#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    #[command(flatten)]
    pub opts: ClientOpts,

    #[command(flatten)]
    pub compression: CompressionArg,

    #[command(flatten)]
    pub message: MessageArg,

    #[command(flatten)]
    pub echo: EchoArg,

    #[command(flatten)]
    pub io: IoArg,

    /// Hold the connections this long from the start of the ramp, then report and exit.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Run a scenario file: a built-in name (see `c1m presets`) or a TOML file; flags given on
    /// the command line override its values [default: none].
    #[arg(long, value_name = "NAME|PATH")]
    pub preset: Option<String>,

    /// Skip the start-up check of kernel limits (see `c1m doctor`), and start even when this
    /// process may not open --conns descriptors: those past the limit fail as fd_limit.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub out: Output,
}

#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// WebSocket URL of the server: ws://, or wss:// for TLS (verified against this machine's
    /// roots; see --ca and --insecure).
    #[arg(long, value_name = "URL", default_value = "ws://127.0.0.1:8080/")]
    pub url: String,

    /// Run the connections on these `c1m agent`s instead of here (this process coordinates:
    /// it splits the target, rate and source addresses, merges what they measure and corrects
    /// their clocks): HOST:PORT,... [default: none, connections run here].
    #[arg(
        long,
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        help_heading = "Agents (several machines)"
    )]
    pub agents: Vec<String>,

    /// The agents' --token. Prefer the environment variable C1M_AGENT_TOKEN, which keeps it
    /// out of `ps` [default: none, for agents on loopback without a token].
    #[arg(
        long,
        value_name = "TOKEN",
        env = "C1M_AGENT_TOKEN",
        hide_env_values = true,
        help_heading = "Agents (several machines)"
    )]
    pub agent_token: Option<String>,

    /// Speak TLS to the agents, and check each one's certificate (`c1m agent --tls-cert`)
    /// against this CA (PEM; repeatable), for the name in --agents (HOST, or the dns: NAME)
    /// [default: plain TCP, authenticated by the token only].
    #[arg(long, value_name = "FILE", help_heading = "Agents (several machines)")]
    pub agent_ca: Vec<PathBuf>,

    /// Wait until this many agents have answered (resolving dns: names again and retrying
    /// silent agents, for up to --expect-timeout), then run on those; the error names the
    /// missing [default: every agent --agents names must answer at once].
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(usize),
        help_heading = "Agents (several machines)"
    )]
    pub expect_agents: Option<usize>,

    /// How long --expect-agents waits (pods being scheduled, images pulled).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "2m",
        value_parser = parse_duration,
        help_heading = "Agents (several machines)"
    )]
    pub expect_timeout: Duration,

    /// Open only slice I of N of --conns (I from 0), as one of N copies started without a
    /// coordinator: this copy holds its share, takes its share of --rate, and numbers `{i}`
    /// from the start of its slice, so the slices never overlap [default: all of --conns].
    #[arg(
        long,
        value_name = "I/N",
        value_parser = parse_segment,
        conflicts_with = "segments",
        help_heading = "Agents (several machines)"
    )]
    pub segment: Option<Segment>,

    /// Like --segment I/N, with I from JOB_COMPLETION_INDEX (the index a Kubernetes Indexed Job
    /// gives each pod) [default: none].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Agents (several machines)")]
    pub segments: Option<u64>,

    /// The server's clock, which agents time against: http://HOST:PORT measures it through a
    /// c1m server's --control endpoint (token from C1M_CONTROL_TOKEN); an offset such as +3ms
    /// gives it (the server's clock ahead of this one); `none` takes it to be this machine's.
    /// The report says which [default: none].
    #[arg(
        long,
        value_name = "URL|OFFSET|none",
        default_value = "none",
        help_heading = "Agents (several machines)"
    )]
    pub server_clock: String,

    /// With a segment: the whole target this copy's --conns is a slice of.
    #[arg(skip)]
    pub segment_of: u64,

    /// With wss://: trust the certificates in this PEM file too, besides the system's roots
    /// (repeatable), e.g. the one `c1m server --tls-self-signed` writes [default: none].
    #[arg(long, value_name = "FILE", help_heading = "TLS (wss://)")]
    pub ca: Vec<std::path::PathBuf>,

    /// With wss://: do not verify the server's certificate at all (any certificate, any name).
    /// The banner and the report say so [default: verify].
    #[arg(long, help_heading = "TLS (wss://)")]
    pub insecure: bool,

    /// With wss://: never resume a TLS session, so every handshake is a full one, as new
    /// visitors' are: the server's worst case [default: resume where the server gave a ticket;
    /// the report counts connections.tls_resumed].
    #[arg(long, help_heading = "TLS (wss://)")]
    pub tls_no_resume: bool,

    /// Connections to open.
    #[arg(long, value_name = "COUNT", default_value_t = 1000)]
    pub conns: u64,

    /// Add a header to every upgrade request, e.g. -H 'Authorization: Bearer TOKEN'
    /// (repeatable); a User-Agent replaces c1m's. The headers c1m writes itself (Host, Upgrade,
    /// Connection, Sec-WebSocket-Key, Sec-WebSocket-Version) cannot be set; Origin and
    /// Sec-WebSocket-Protocol have flags of their own [default: none].
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header)]
    pub headers: Vec<String>,

    /// Offer this WebSocket subprotocol (repeatable, in order of preference), e.g.
    /// graphql-transport-ws. The server must choose one of those offered, or the connection
    /// fails as handshake_failed, saying what the server chose [default: none offered].
    #[arg(long = "subprotocol", value_name = "NAME", value_parser = parse_token)]
    pub subprotocols: Vec<String>,

    /// Send this Origin header with every upgrade (browsers always send one, and some servers
    /// refuse upgrades without it) [default: none].
    #[arg(long, value_name = "URL", value_parser = parse_header_value)]
    pub origin: Option<String>,

    /// Send this text message right after the upgrade (repeatable, sent in order), e.g. a
    /// subscribe: --send '{"type":"subscribe","channel":"ticks"}'. @FILE reads the text from a
    /// file. Every text (and the URL and header values) may hold {i} (the connection's number,
    /// unique over workers), {worker}, {uuid}, {now_ms}, {token} (see --tokens) and {rtt}
    /// (c1m's mark and the time in µs: a message carrying it that an echo server returns is
    /// timed as a round trip, into echo_rtt_us); other braces are sent as they are [default:
    /// nothing].
    #[arg(long = "send", value_name = "TEXT|@FILE", value_parser = parse_text,
          help_heading = "Talking to the server")]
    pub send: Vec<String>,

    /// Send TEXT on each connection every INTERVAL, e.g. --heartbeat '25s={"type":"ping"}' for
    /// a server that closes silent clients. Connections take turns over the interval, so a
    /// million do not send at once [default: off].
    #[arg(long, value_name = "INTERVAL=TEXT", value_parser = parse_heartbeat,
          help_heading = "Talking to the server")]
    pub heartbeat: Option<(Duration, String)>,

    /// Send a WebSocket ping on each connection every INTERVAL (spread like --heartbeat) and
    /// time the pongs: their round trips go into pong_rtt_us in the report [default: off].
    #[arg(long, value_name = "INTERVAL", value_parser = parse_interval,
          help_heading = "Talking to the server")]
    pub ping: Option<Duration>,

    /// Answer a message that is exactly MATCH with TEXT (repeatable; split at the first =), e.g.
    /// --reply 2=3 for Engine.IO's ping. Answered messages are protocol, not data: they are
    /// counted as replies, never timed [default: none].
    #[arg(long = "reply", value_name = "MATCH=TEXT", value_parser = parse_reply,
          help_heading = "Talking to the server")]
    pub replies: Vec<(String, String)>,

    /// A file of tokens, one per line: {token} is line i mod n, so connection i always gets
    /// the same one [default: none].
    #[arg(long, value_name = "FILE", help_heading = "Talking to the server")]
    pub tokens: Option<std::path::PathBuf>,

    /// Where the timestamp is, as a JSON path: data.sent_at, payload[1].ts, [4].ts. Messages
    /// without it (acks, pings, welcomes) are counted as ignored, not timed [default: found
    /// without help in c1m's payload, bare numbers, RFC 3339 text, and top-level ts, time or
    /// timestamp].
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "ts_regex",
        help_heading = "Reading the server's messages"
    )]
    pub ts_path: Option<String>,

    /// Where the sequence number is, as a JSON path (see --ts-path). With one, loss is counted
    /// from gaps in it [default: a top-level seq].
    #[arg(
        long,
        value_name = "PATH",
        help_heading = "Reading the server's messages"
    )]
    pub seq_path: Option<String>,

    /// A regular expression with one capture group around the timestamp, for messages that are
    /// not JSON or hide it in a string, e.g. '^42\["tick",\{.*"ts":(\d+)' for Socket.IO.
    /// Messages it does not match are ignored, not timed [default: none].
    #[arg(
        long,
        value_name = "REGEX",
        help_heading = "Reading the server's messages"
    )]
    pub ts_regex: Option<String>,

    /// The unit of numeric timestamps; auto tells s, ms, µs and ns apart by magnitude.
    #[arg(long, value_name = "UNIT", value_enum, default_value_t = Unit::Auto,
          help_heading = "Reading the server's messages")]
    pub ts_unit: Unit,

    /// Source addresses to spread connections over; for a 127.x target they are 127.0.0.2,
    /// 127.0.0.3, … [default: enough for --conns at the machine's ip_local_port_range].
    #[arg(long, value_name = "COUNT", conflicts_with = "source_ips", value_parser = at_least_one)]
    pub ips: Option<usize>,

    /// Source addresses, as a list (10.0.0.2,10.0.0.3) or a CIDR block (10.0.1.0/28); they must
    /// be configured on this machine [default: see --ips].
    #[arg(long, value_name = "LIST|CIDR")]
    pub source_ips: Option<String>,

    /// New connections per second during the ramp (0 = as fast as --max-inflight allows).
    #[arg(long, value_name = "CONNS/S", default_value_t = 20_000.0, value_parser = parse_rate)]
    pub rate: f64,

    /// Connects and handshakes in flight at once.
    #[arg(long, value_name = "COUNT", default_value_t = 1024)]
    pub max_inflight: usize,

    /// Give up on a connect + handshake after this long (counted as a timeout).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// When a poll finds two or more sockets ready (a broadcast arriving), wait this long
    /// before polling again, so each poll takes hundreds of sockets; a lone message is still
    /// read at once. It halves the CPU per delivered message on both ends of a co-located test
    /// (a broadcast to 1,000,000 took 7.1-7.6 s with 500us, 5.9-6.2 s with 5ms), and adds at
    /// most this much to the latency of messages in a burst. 0 turns it off.
    #[arg(long, value_name = "DURATION", default_value = "5ms", value_parser = parse_duration)]
    pub batch_window: Duration,

    /// Reopen connections the server closes or resets, and retry failed attempts. Each
    /// connection waits its own delay, drawn at random below a bound that starts at 100ms,
    /// doubles per failure in a row up to MAX_BACKOFF and never exceeds half the outage so far,
    /// so a restarted server is neither hit by every connection at once nor kept waiting;
    /// `--reconnect` alone backs off up to 10s [default: off: a lost connection stays lost and
    /// is counted].
    #[arg(long, value_name = "MAX_BACKOFF", num_args = 0..=1, default_missing_value = "10s",
          value_parser = parse_duration)]
    pub reconnect: Option<Duration>,

    /// Close and reopen connections every second, as users come and go: a share of those open
    /// (10%) or a number (500). A leaving connection sends a close frame and waits up to 2 s
    /// for the server to close TCP first, as RFC 6455 asks, so TIME_WAIT falls on the server
    /// and not on the client's source ports; it is replaced at once. Counted in
    /// connections.churned, never as errors [default: none].
    #[arg(long, value_name = "RATE", value_parser = parse_churn)]
    pub churn: Option<ChurnRate>,
}

/// `--every`: an interval or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Every {
    Off,
    Interval(Duration),
}

fn parse_every(s: &str) -> Result<Every, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Every::Off);
    }
    let d = parse_duration(s)?;
    if d < Duration::from_millis(10) {
        return Err(format!(
            "{s}: the interval must be at least 10ms (or `off`)"
        ));
    }
    Ok(Every::Interval(d))
}

/// A byte count: `4096`, `64KiB`, `16MiB`, `1GiB` (powers of 1024; `KB`, `MB` and `GB` are
/// read the same way, as tools that size buffers mean them). At least 125: a control frame's
/// payload must fit.
/// `--churn`: a share of the open connections per second, or a number per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ChurnRate {
    Share(f64),
    PerSecond(f64),
}

impl ChurnRate {
    /// The share of open connections replaced per second, for a client of `conns`.
    pub fn share_of(self, conns: u64) -> f64 {
        match self {
            ChurnRate::Share(s) => s,
            ChurnRate::PerSecond(n) => n / conns.max(1) as f64,
        }
    }
}

fn parse_churn(s: &str) -> Result<ChurnRate, String> {
    let t = s.trim().trim_end_matches("/s");
    let bad = || format!("{s:?}: a share of the connections per second (10%) or a number (500)");
    let rate = match t.strip_suffix('%') {
        Some(pct) => ChurnRate::Share(pct.trim().parse::<f64>().map_err(|_| bad())? / 100.0),
        None => ChurnRate::PerSecond(t.parse().map_err(|_| bad())?),
    };
    match rate {
        ChurnRate::Share(x) | ChurnRate::PerSecond(x) if !(x > 0.0 && x.is_finite()) => Err(bad()),
        ChurnRate::Share(x) if x > 1.0 => Err(format!(
            "{s:?}: more than all the connections a second; at most 100%"
        )),
        ok => Ok(ok),
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: a size is a number of bytes, e.g. 4096, 64KiB or 16MiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (B, KiB, MiB or GiB)"
            ));
        }
    };
    let bytes = n
        .checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes < 125 {
        return Err(format!(
            "{s:?}: at least 125 bytes, the most a ping or close may carry"
        ));
    }
    Ok(bytes)
}

/// `--control`: `ADDR:PORT`, or a bare port on loopback so that exposing the endpoint is always
/// spelled out.
fn parse_control(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse()
        .map_err(|_| format!("{s:?}: expected ADDR:PORT (e.g. 127.0.0.1:9100) or a port"))
}

/// `-H 'Name: value'`: a header c1m may add, written back as `Name: value`.
fn parse_header(s: &str) -> Result<String, String> {
    let Some((name, value)) = s.split_once(':') else {
        return Err(format!(
            "{s:?}: expected 'NAME: VALUE', e.g. 'Authorization: Bearer TOKEN'"
        ));
    };
    let name = parse_token(name.trim())?;
    let is = |h: &str| name.eq_ignore_ascii_case(h);
    if crate::proto::handshake::OWN_REQUEST_HEADERS
        .iter()
        .any(|h| is(h))
    {
        return Err(format!("{name}: c1m writes this header itself"));
    }
    // Given through their flags, c1m can check them: the server's choice of subprotocol, and
    // one Origin, not two.
    if is("Sec-WebSocket-Protocol") {
        return Err(format!(
            "{name}: offer subprotocols with --subprotocol NAME"
        ));
    }
    if is("Origin") {
        return Err(format!("{name}: set it with --origin URL"));
    }
    Ok(format!("{name}: {}", parse_header_value(value.trim())?))
}

/// `--send` text, or `@FILE`'s contents without the final line break.
fn parse_text(s: &str) -> Result<String, String> {
    let Some(file) = s.strip_prefix('@') else {
        return Ok(s.to_string());
    };
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_string())
}

/// A timer's interval: at least 100ms, so a million connections cannot be asked for ten
/// million messages a second by a typo.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    match d >= Duration::from_millis(100) {
        true => Ok(d),
        false => Err(format!("{s}: the interval must be at least 100ms")),
    }
}

fn parse_heartbeat(s: &str) -> Result<(Duration, String), String> {
    let (every, text) = s.split_once('=').ok_or_else(|| {
        format!("{s:?}: expected INTERVAL=TEXT, e.g. '25s={{\"type\":\"ping\"}}'")
    })?;
    Ok((parse_interval(every)?, text.to_string()))
}

fn parse_reply(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((m, text)) if !m.is_empty() => Ok((m.to_string(), text.to_string())),
        _ => Err(format!("{s:?}: expected MATCH=TEXT, e.g. 2=3")),
    }
}

/// An HTTP token: a header name or a subprotocol.
fn parse_token(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    match ok {
        true => Ok(s.to_string()),
        false => Err(format!(
            "{s:?}: not a valid HTTP token (letters, digits and !#$%&'*+-.^_`|~)"
        )),
    }
}

/// A header value: printable, no line breaks.
fn parse_header_value(s: &str) -> Result<String, String> {
    match s
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
    {
        true => Ok(s.to_string()),
        false => Err(format!(
            "{s:?}: a header value cannot hold line breaks or control bytes"
        )),
    }
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?}: expected a whole number, 1 or more")),
    }
}

fn at_least_one_u64(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?}: expected a whole number, 1 or more")),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r >= 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!(
            "{s:?}: expected connections per second, 0 (unlimited) or more"
        )),
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration like 60s, 500ms or 5m: {e}"))
}

/// `c1m report`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// A JSON report written by `--json`; with --merge, the reports of each slice of one run.
    #[arg(value_name = "RUN.json", required = true, num_args = 1..)]
    pub reports: Vec<PathBuf>,
    /// Merge the client reports of one run's slices (`c1m client --segment I/N` on several
    /// machines, or the pods of an Indexed Job) into one: counts added up, the latency
    /// histograms merged exactly, broadcasts by sequence number, the history by wall-clock
    /// second. Prints a summary; --json and --html write the merged report.
    #[arg(long)]
    pub merge: bool,
    /// Where to write the HTML page [default: none; required without --merge].
    #[arg(long, value_name = "OUT.html", required_unless_present = "merge")]
    pub html: Option<PathBuf>,
    /// With --merge: where to write the merged JSON report [default: none, the summary only].
    #[arg(long, value_name = "OUT.json", requires = "merge")]
    pub json: Option<PathBuf>,
}

/// `c1m compare`.
#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// The baseline: a JSON report (`--json`) of c1m server or c1m client.
    #[arg(value_name = "A.json")]
    pub a: PathBuf,
    /// The run to judge against it, of the same side.
    #[arg(value_name = "B.json")]
    pub b: PathBuf,
    /// Exit with status 1 when B is worse than A by more than this on any latency, broadcast
    /// or memory figure (and the change is outside the runs' noise), e.g. 10% or 0.1.
    #[arg(long, value_name = "PERCENT", default_value = "10%", value_parser = parse_threshold)]
    pub threshold: f64,
    /// Also write the comparison as one self-contained HTML page: the table, both latency
    /// spectra on one chart, and each broadcast's time in both runs (by default the table is
    /// printed only).
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
}

pub(crate) fn parse_threshold(s: &str) -> Result<f64, String> {
    let (num, scale) = match s.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (s, 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v / scale),
        _ => Err(format!(
            "{s}: a threshold is a percentage (10%) or a fraction (0.1)"
        )),
    }
}

/// `c1m agent`.
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Where to wait for the coordinator; a port of 0 picks one (the banner says which).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7070")]
    pub listen: std::net::SocketAddr,

    /// The coordinator must present this (its --agent-token); required off loopback. Prefer the
    /// environment variable C1M_AGENT_TOKEN [default: none, loopback only].
    #[arg(
        long,
        value_name = "TOKEN",
        env = "C1M_AGENT_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Exit after one run instead of waiting for the next coordinator (a Kubernetes Job's pod).
    #[arg(long)]
    pub once: bool,

    /// Most connections one process holds here; a share past it runs as worker processes of
    /// this agent [default: the hard RLIMIT_NOFILE less 100].
    #[arg(long, value_name = "CONNS", value_parser = at_least_one_u64)]
    pub worker_conns: Option<u64>,

    /// Open this agent's connections from these addresses of its own machine, as a list
    /// (10.0.0.2,10.0.0.3) or a CIDR block (10.0.1.0/28), instead of the coordinator's
    /// --source-ips: each machine has its own [default: the coordinator's choice].
    #[arg(long, value_name = "LIST|CIDR")]
    pub source_ips: Option<String>,

    /// Serve this agent's own figures at http://ADDR:PORT/metrics (Prometheus text format:
    /// connections, messages, errors, the latency histogram, memory) for as long as a run
    /// lasts, so that Prometheus scrapes every agent and adds them up. It only reads, so it
    /// needs no token; a bare port is on loopback [default: off].
    #[arg(long, value_name = "ADDR:PORT|PORT", value_parser = parse_control)]
    pub metrics: Option<SocketAddr>,

    /// Speak TLS to coordinators and present this certificate chain (PEM); coordinators check
    /// it with --agent-ca. With --tls-key [default: plain TCP].
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM) [default: none; required with --tls-cert].
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// One slice of a target split over copies started apart (`--segment I/N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Segment {
    pub index: u64,
    pub count: u64,
}

impl Segment {
    /// `--segment`, or `--segments N` with the index from JOB_COMPLETION_INDEX.
    pub fn given(
        segment: Option<Segment>,
        segments: Option<u64>,
    ) -> Result<Option<Segment>, String> {
        let Some(count) = segments else {
            return Ok(segment);
        };
        let index = std::env::var("JOB_COMPLETION_INDEX").map_err(|_| {
            "--segments N takes this copy's index from JOB_COMPLETION_INDEX, which is not set \
             (a Kubernetes Indexed Job sets it; elsewhere give --segment I/N)"
                .to_string()
        })?;
        parse_segment(&format!("{index}/{count}")).map(Some)
    }

    /// This slice's connections of `total`, and the first `{i}` of the slice.
    pub fn slice(self, total: u64) -> (u64, u64) {
        let conns = crate::engine::client::share(total, self.count, self.index);
        (conns, self.index * total.div_ceil(self.count))
    }
}

fn parse_segment(s: &str) -> Result<Segment, String> {
    let bad = || format!("{s}: a segment is I/N with 0 <= I < N, e.g. 0/4");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (index, count) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if count == 0 || index >= count {
        return Err(bad());
    }
    Ok(Segment { index, count })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn churn_is_a_share_or_a_number_a_second() {
        assert_eq!(parse_churn("10%").unwrap(), ChurnRate::Share(0.1));
        assert_eq!(parse_churn("500/s").unwrap(), ChurnRate::PerSecond(500.0));
        assert_eq!(parse_churn("500").unwrap().share_of(100_000), 0.005);
        for bad in ["0", "-5%", "150%", "lots", "NaN%"] {
            assert!(parse_churn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_accepts_off_and_durations() {
        assert_eq!(parse_every("off").unwrap(), Every::Off);
        assert_eq!(
            parse_every("90s").unwrap(),
            Every::Interval(Duration::from_secs(90))
        );
        assert!(parse_every("1ms").is_err());
        assert!(parse_every("soon").unwrap_err().contains("60s"));
    }

    #[test]
    fn talk_texts_and_timers_parse_or_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub.json");
        std::fs::write(&file, "{\"op\":\"sub\"}\r\n").unwrap();
        let at = format!("@{}", file.display());
        assert_eq!(parse_text(&at).unwrap(), "{\"op\":\"sub\"}");
        assert_eq!(parse_text("40").unwrap(), "40");
        assert!(
            parse_text("@/nonexistent/x")
                .unwrap_err()
                .contains("cannot read")
        );
        assert_eq!(
            parse_heartbeat("25s={\"t\":1}").unwrap(),
            (Duration::from_secs(25), "{\"t\":1}".to_string())
        );
        assert!(
            parse_heartbeat("10ms=x")
                .unwrap_err()
                .contains("at least 100ms")
        );
        assert!(
            parse_heartbeat("ping")
                .unwrap_err()
                .contains("INTERVAL=TEXT")
        );
        assert_eq!(
            parse_reply("{}={}").unwrap(),
            ("{}".to_string(), "{}".to_string())
        );
        assert!(parse_reply("=3").is_err());
    }

    #[test]
    fn headers_are_checked_before_anything_connects() {
        assert_eq!(
            parse_header("Authorization:  Bearer x ").unwrap(),
            "Authorization: Bearer x"
        );
        assert!(
            parse_header("no colon")
                .unwrap_err()
                .contains("NAME: VALUE")
        );
        assert!(parse_header("Host: evil").unwrap_err().contains("itself"));
        assert!(parse_header("host: evil").unwrap_err().contains("itself"));
        let offer = parse_header("Sec-WebSocket-Protocol: graphql-ws").unwrap_err();
        assert!(offer.contains("--subprotocol"), "{offer}");
        assert!(parse_header("Origin: x").unwrap_err().contains("--origin"));
        assert!(
            parse_header("X-A: b\r\nX-B: c")
                .unwrap_err()
                .contains("line breaks")
        );
        assert!(parse_token("graphql-transport-ws").is_ok());
        assert!(parse_token("two words").is_err());
    }

    #[test]
    fn sizes_read_as_users_write_them() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("16 mb"), Ok(16 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        for bad in ["", "MiB", "12 parsecs", "100", "-1", "99999999999GiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_bare_control_port_is_on_loopback() {
        assert_eq!(
            parse_control("9100").unwrap(),
            "127.0.0.1:9100".parse().unwrap()
        );
        assert_eq!(
            parse_control("[::1]:9100").unwrap(),
            "[::1]:9100".parse().unwrap()
        );
        assert!(
            parse_control("localhost")
                .unwrap_err()
                .contains("ADDR:PORT")
        );
    }

    #[test]
    fn segments_cover_the_target_once() {
        for (total, n) in [(1_000_000u64, 4u64), (1000, 3), (5, 7), (0, 2)] {
            let slices: Vec<(u64, u64)> = (0..n)
                .map(|index| Segment { index, count: n }.slice(total))
                .collect();
            assert_eq!(slices.iter().map(|s| s.0).sum::<u64>(), total);
            // Each slice's {i} starts past the previous slice's last.
            for w in slices.windows(2) {
                assert!(w[0].1 + w[0].0 <= w[1].1, "{slices:?}");
            }
        }
        assert_eq!(parse_segment("2/4"), Ok(Segment { index: 2, count: 4 }));
        assert!(parse_segment("4/4").is_err() && parse_segment("1/0").is_err());
        assert!(parse_segment("x").is_err());
    }
}
