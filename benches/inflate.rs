//! What permessage-deflate costs the client per message: inflating bench/tick.json (1 KiB of
//! market-data JSON, compressed as c1m's server sends it) with one shared window reset after
//! each message (`--compression shared`), and with a window kept per connection (`context`),
//! next to decoding the same message uncompressed; and what a window kept per connection costs
//! in memory (VmRSS over 10,000 windows), after one message and once 40 KiB have gone through
//! it. Prints the figures and appends them to BENCHMARKS.md.
//!
//!     cargo bench --bench inflate
use c1m::proto::deflate::{self, Inflate, Window};
use c1m::proto::frame::{self, Decoder, Event, Limits, OP_TEXT, Role};
use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

const MESSAGES: u32 = 200_000;
const LIMITS: Limits = Limits {
    max_frame: 1 << 20,
    max_message: 1 << 20,
};

fn tick() -> Vec<u8> {
    let text = include_str!("../bench/tick.json").trim_end();
    text.replace("{seq}", "4211")
        .replace("{ts_us}", "1764000000123456")
        .into_bytes()
}

/// ns per message, best of five, decoding `wire` (one frame) `MESSAGES` times.
fn run(wire: &[u8], mode: Option<bool>) -> f64 {
    let mut best = f64::MAX;
    let (mut window, mut out) = (Window::default(), Vec::new());
    let mut buf = wire.to_vec();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..MESSAGES {
            buf.copy_from_slice(wire);
            let inflate = mode.map(|takeover| Inflate {
                window: &mut window,
                out: &mut out,
                takeover,
            });
            let mut n = 0;
            Decoder::new()
                .feed_inflating(&mut buf, Role::Client, &LIMITS, inflate, |e| {
                    if let Event::Text(t) = e {
                        n += t.len();
                    }
                })
                .unwrap();
            black_box(n);
        }
        best = best.min(t.elapsed().as_nanos() as f64 / f64::from(MESSAGES));
    }
    best
}

fn rss_kib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// KiB per window kept (as `--compression context` keeps one per connection): after one
/// message, and after `stream` messages of one compressed stream have filled it.
fn window_kib(msg: &[u8]) -> (f64, f64) {
    const WINDOWS: usize = 10_000;
    let mut z = flate2::Compress::new(flate2::Compression::default(), false);
    let mut wire = Vec::new();
    // 40 messages of one stream with context: their output fills a 32 KiB window.
    for i in 0..40 {
        let text = String::from_utf8_lossy(msg).replace("4211", &i.to_string());
        let mut frame = Vec::with_capacity(text.len() + 64);
        z.compress_vec(text.as_bytes(), &mut frame, flate2::FlushCompress::Sync)
            .unwrap();
        frame.truncate(frame.len() - 4);
        wire.push(frame);
    }
    let before = rss_kib();
    let mut windows: Vec<Box<Window>> = (0..WINDOWS).map(|_| Box::default()).collect();
    let mut out = Vec::new();
    let mut feed = |windows: &mut [Box<Window>], frames: &[Vec<u8>]| {
        for w in windows.iter_mut() {
            for f in frames {
                let mut inflate = Inflate {
                    window: w,
                    out: &mut out,
                    takeover: true,
                };
                inflate.message(f, 1 << 20).unwrap();
            }
        }
    };
    feed(&mut windows, &wire[..1]);
    let one = (rss_kib() - before) / WINDOWS as f64;
    feed(&mut windows, &wire[1..]);
    let full = (rss_kib() - before) / WINDOWS as f64;
    black_box(&windows);
    (one, full)
}

fn main() {
    let msg = tick();
    let mut plain = Vec::new();
    frame::encode_frame(OP_TEXT, &msg, None, &mut plain);
    let mut shared = Vec::new();
    frame::encode_deflated(OP_TEXT, &msg, None, &mut shared);
    // With context takeover every message after the first refers back to the one before: a
    // stream of the same message, as a server keeping its window sends it.
    let mut z = Vec::new();
    deflate::deflate_message(&msg, &mut z);
    let rows = [
        ("plain (--compression off)", plain.len(), run(&plain, None)),
        (
            "shared window, reset per message",
            shared.len(),
            run(&shared, Some(false)),
        ),
        (
            "own window, kept (first message's bytes)",
            shared.len(),
            run(&shared, Some(true)),
        ),
    ];
    let mut table = String::from(
        "| decoding a 1 KiB JSON message | bytes on the wire | ns/message |\n|---|---|---|\n",
    );
    for (name, bytes, ns) in rows {
        table += &format!("| {name} | {bytes} | {ns:.0} |\n");
    }
    let (one, full) = window_kib(&msg);
    table += &format!(
        "\nA 32 KiB window kept per connection (`--compression context`, the server saying no \
         server_max_window_bits): {one:.1} KiB after one \
         message, {full:.1} KiB once 40 KiB have been inflated through it (10,000 windows).\n"
    );
    print!("{table}");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open("BENCHMARKS.md")
        .unwrap();
    writeln!(
        f,
        "\n### inflate: {} bytes of bench/tick.json, best of 5 × {MESSAGES} — `cargo bench --bench inflate`\n\n{table}",
        msg.len()
    )
    .unwrap();
}
