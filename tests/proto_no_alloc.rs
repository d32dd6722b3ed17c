//! The per-message paths must not allocate: a million connections share the allocator.
//!
//! `#[global_allocator]` is per binary, so this check lives in its own test file.

use c1m::proto::frame::{Decoder, Event, Limits, OP_BINARY, OP_PING, OP_TEXT, Role, encode_frame};
use c1m::proto::payload::{self, Format};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // Per thread, so the test harness's own threads do not disturb the count.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn per_message_paths_do_not_allocate() {
    let mut json = Vec::new();
    payload::encode(Format::Json, 7, 1_764_000_000_123_456, 64, &mut json);
    let mut seed = Vec::new();
    payload::encode(Format::Seed, 7, 1_764_000_000_123_456, 0, &mut seed);
    let foreign = br#"{"type":"tick","data":{"a":[1,2]},"time":"1764000000.123456","seq":3}"#;

    let key = Some([1, 2, 3, 4]);
    let mut client_frames = Vec::new();
    encode_frame(OP_TEXT, &json, key, &mut client_frames);
    encode_frame(OP_PING, b"ping", key, &mut client_frames);
    encode_frame(OP_BINARY, &[0; 70_000], key, &mut client_frames);
    let mut server_frames = Vec::new();
    encode_frame(OP_TEXT, &seed, None, &mut server_frames);
    encode_frame(OP_TEXT, &json, None, &mut server_frames);
    let limits = Limits {
        max_frame: 1 << 20,
        max_message: 1 << 20,
    };
    let mut server = Decoder::new();
    let mut client = Decoder::new();

    let mut events = 0;
    let mut stamps = 0;
    let count = allocations_during(|| {
        for _ in 0..100 {
            assert!(payload::parse(&json).is_ok());
            assert!(payload::parse(&seed).is_ok());
            assert!(payload::parse(foreign).is_ok());
        }
        server
            .feed(&mut client_frames, Role::Server, &limits, |_| events += 1)
            .unwrap();
        client
            .feed(&mut server_frames, Role::Client, &limits, |event| {
                if let Event::Text(text) = event {
                    stamps += usize::from(payload::parse(text).is_ok());
                }
            })
            .unwrap();
    });
    assert_eq!(count, 0);
    // The counter itself works.
    assert_eq!(
        allocations_during(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(8)))),
        1
    );
    assert_eq!((events, stamps), (3, 2));
    assert_eq!(server.buffered() + client.buffered(), 0);
}

#[test]
fn finding_the_time_and_writing_templates_do_not_allocate() {
    use c1m::proto::payload::Unit;
    use c1m::proto::reader::{Reader, ReaderSpec};
    use c1m::proto::template::{Template, Vars};

    let spec = |ts_path: Option<&str>, ts_regex: Option<&str>| ReaderSpec {
        ts_path: ts_path.map(Into::into),
        seq_path: Some("payload.data.tick.seq".into()).filter(|_| ts_path.is_some()),
        ts_regex: ts_regex.map(Into::into),
        ts_unit: Unit::Ms,
    };
    let mut by_path = Reader::new(&spec(Some("payload.data.tick.ts"), None)).unwrap();
    let mut by_regex = Reader::new(&spec(None, Some(r#"^42\["[^"]*",\{.*"ts":(\d+)"#))).unwrap();
    let mut auto = Reader::new(&ReaderSpec::default()).unwrap();
    let graphql =
        br#"{"id":"1","type":"next","payload":{"data":{"tick":{"seq":3,"ts":1764000000123}}}}"#;
    let socketio = br#"42["tick",{"seq":3,"ts":1764000000123}]"#;
    let iso = br#"{"ts":"2026-11-29T15:00:00.123Z"}"#;
    // Warm the regex's cache: its first search sizes it.
    assert!(by_regex.read(socketio).unwrap().is_some());

    let template = Template::parse(r#"{"id":"{i}","t":"{token}","u":"{uuid}","at":{now_ms}}"#);
    let tokens: Vec<Box<str>> = vec!["tok".into()];
    let mut out = Vec::with_capacity(256);
    // The thread's random generator ({uuid}) is set up on first use.
    let _: u128 = rand::random();

    let count = allocations_during(|| {
        for i in 0..100 {
            assert!(by_path.read(graphql).unwrap().is_some());
            assert!(by_path.read(br#"{"type":"ping"}"#).unwrap().is_none());
            assert!(by_regex.read(socketio).unwrap().is_some());
            assert!(by_regex.read(b"2").unwrap().is_none());
            assert!(auto.read(iso).unwrap().is_some());
            out.clear();
            let vars = Vars {
                i,
                worker: 0,
                tokens: &tokens,
            };
            template.render(&vars, &mut out);
        }
    });
    assert_eq!(count, 0);
}

/// permessage-deflate's receiving path: once a shard's window and output buffer have served a
/// first message, inflating more through the frame decoder allocates nothing, whether the
/// window is reset per message (`--compression shared`) or kept (`context`).
#[test]
fn inflating_compressed_messages_does_not_allocate() {
    use c1m::proto::deflate::{Inflate, Window};
    use c1m::proto::frame::encode_deflated;
    let mut json = Vec::new();
    payload::encode(Format::Json, 7, 1_764_000_000_123_456, 900, &mut json);
    let mut frame = Vec::new();
    encode_deflated(OP_TEXT, &json, None, &mut frame);
    let limits = Limits {
        max_frame: 1 << 20,
        max_message: 1 << 20,
    };
    for takeover in [false, true] {
        let (mut window, mut out) = (Window::default(), Vec::new());
        let mut decoder = Decoder::new();
        let mut feed = |stamps: &mut usize| {
            let mut wire = frame.clone();
            let inflate = Inflate {
                window: &mut window,
                out: &mut out,
                takeover,
            };
            decoder
                .feed_inflating(&mut wire, Role::Client, &limits, Some(inflate), |e| {
                    if let Event::Text(text) = e {
                        *stamps += usize::from(payload::parse(text).is_ok());
                    }
                })
                .unwrap();
        };
        let mut stamps = 0;
        feed(&mut stamps);
        // The wire copy is the test's own allocation: one per message, nothing else.
        let count = allocations_during(|| {
            for _ in 0..100 {
                feed(&mut stamps);
            }
        });
        assert_eq!(stamps, 101, "takeover {takeover}");
        assert_eq!(count, 100, "takeover {takeover}: inflating allocated");
    }
}
