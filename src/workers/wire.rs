//! What parent and worker processes say to each other: one JSON object per line, on the
//! worker's stdin (commands down) and stdout (deltas and events up). Histograms travel in
//! HdrHistogram's V2 serialized form, base64-encoded (`stats::hdr_serde`), so the parent merges
//! exactly what the worker recorded; a few hundred lines a second at most, so JSON's cost does not matter and
//! the stream stays readable when debugging.

use crate::engine::client::ClientConfig;
use crate::engine::server::ServerConfig;
use crate::stats::ShardDelta;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The first line a worker reads: what to run.
#[derive(Debug, Serialize, Deserialize)]
pub enum Start {
    Server(ServerConfig),
    Client(Box<ClientConfig>),
    /// A coordinator to an agent: an idle client that will be asked for up to `share`
    /// connections, which the agent lays out over worker processes of its own when one
    /// process cannot hold them.
    Agent {
        cfg: Box<ClientConfig>,
        share: u64,
    },
}

/// Parent → worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum Down {
    /// Server: write this payload to every connection under this sequence number.
    Broadcast {
        seq: u64,
        #[serde(with = "bytes")]
        payload: Vec<u8>,
        /// The send time inside the payload (µs since the epoch), for the send lag.
        stamp_us: i64,
    },
    /// Client: hold this many connections.
    Target(u64),
    /// Client: open this many per second (0 = unlimited).
    Rate(f64),
    Paused(bool),
    /// Clock exchange (agents): answer at once with `Up::Clock`; `t0_us` is the coordinator's
    /// send time on its own clock.
    Clock {
        t0_us: i64,
    },
    /// Client: this machine's clock runs `us` ahead of the coordinator's; time against its
    /// clock from now on.
    ClockOffset {
        us: i64,
    },
    /// Close every connection, send the last deltas and `Bye`, exit.
    Stop,
}

/// Worker → parent.
#[derive(Debug, Serialize, Deserialize)]
pub enum Up {
    /// Started: the server's listening address (None for a client), its shard count and its
    /// process id (on its own machine).
    Ready {
        local_addr: Option<SocketAddr>,
        shards: usize,
        #[serde(default)]
        pid: u32,
    },
    /// Counters, histograms and broadcast parts, as a shard in the parent would send them.
    Delta(Box<ShardDelta>),
    /// Once a second: what the worker costs, measured by itself (the parent may not be able to
    /// look: a remote agent's /proc is not the parent's).
    Usage {
        rss_bytes: Option<u64>,
        /// CPU seconds used since it started, user and system.
        #[serde(default)]
        cpu_s: Option<f64>,
    },
    /// The answer to `Down::Clock`: the coordinator's send time, and this machine's times of
    /// receiving it and of answering (NTP's t0, t1, t2).
    Clock { t0_us: i64, t1_us: i64, t2_us: i64 },
    /// Stopped cleanly; the panic messages of shard threads that crashed.
    Bye { panics: Vec<String> },
}

/// One message as a line, newline included.
pub fn line<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec(msg).expect("wire messages always serialize");
    out.push(b'\n');
    out
}

mod bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::aggregate::Aggregator;
    use crate::stats::{BroadcastPart, ErrorClass, Mode, SourceDelta, new_histogram};
    use std::time::Instant;

    fn through_the_wire(d: &ShardDelta) -> ShardDelta {
        let text = line(&Up::Delta(Box::new(d.clone())));
        assert!(text.ends_with(b"\n") && !text[..text.len() - 1].contains(&b'\n'));
        match serde_json::from_slice::<Up>(&text).unwrap() {
            Up::Delta(d) => *d,
            other => panic!("{other:?}"),
        }
    }

    /// Values spread over six decades, as latencies from 1 µs to seconds are.
    fn values(seed: u64, n: u64) -> impl Iterator<Item = u64> {
        (0..n).map(move |i| ((i * 7919 + seed * 104_729) % 1_000_003) * (1 + i % 5) + 1)
    }

    #[test]
    fn a_histogram_split_over_workers_merges_to_the_one_recorded_whole() {
        let t0 = Instant::now();
        let mut whole = new_histogram();
        let mut merged = Aggregator::new(Mode::Client, 0, Vec::new(), t0);
        // Three workers of two shards, each shipping two deltas.
        for worker in 0..3u64 {
            for shard in 0..2u64 {
                for round in 0..2u64 {
                    let mut d = ShardDelta::empty((worker * 2 + shard) as usize);
                    for v in values(worker * 100 + shard * 10 + round, 5_000) {
                        d.latency.record(v).unwrap();
                        whole.record(v).unwrap();
                    }
                    d.counters.messages = 5_000;
                    d.counters.opened = 10 + worker;
                    d.counters.error(ErrorClass::Timeout);
                    d.active = 10 + worker;
                    merged.apply(through_the_wire(&d), t0);
                }
            }
        }
        let mut recorded_whole = Aggregator::new(Mode::Client, 0, Vec::new(), t0);
        let mut d = ShardDelta::empty(0);
        d.latency = whole.clone();
        recorded_whole.apply(d, t0);
        assert_eq!(merged.latency(), recorded_whole.latency());
        assert_eq!(merged.latency().len(), 60_000);
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                merged.latency().value_at_quantile(q),
                whole.value_at_quantile(q)
            );
        }
        let snap = merged.snapshot(t0);
        assert_eq!(snap.messages.received, 3 * 2 * 2 * 5_000);
        assert_eq!(snap.errors.by_class.get(ErrorClass::Timeout), 12);
        assert_eq!(snap.connections.established, 2 * 2 * (10 + 11 + 12));
        // `active` is a gauge per shard: the latest value of each of the six shards.
        assert_eq!(snap.connections.active, 2 * (10 + 11 + 12));
    }

    #[test]
    fn every_field_survives_the_wire() {
        let mut d = ShardDelta::empty(4);
        d.counters.opened = 3;
        d.counters.missed = 2;
        d.counters.bytes_out = 99;
        d.latency.record(1234).unwrap();
        d.active = 7;
        d.opens_us = Some((1, 2));
        d.per_source = vec![SourceDelta {
            source: 1,
            opened: 3,
            closed: 1,
            errors: 2,
        }];
        d.error_samples = vec![(ErrorClass::Bind, "127.0.0.9: cannot bind".into())];
        d.connecting = 5;
        d.peers = Some(vec![("127.0.0.2".parse().unwrap(), 7)]);
        let mut last = new_histogram();
        last.record(999).unwrap();
        d.latencies = vec![(3, last.clone())];
        d.broadcasts = vec![BroadcastPart {
            seq: 3,
            count: 7,
            dropped: 1,
            open: 8,
            first_us: 10,
            last_us: 20,
            sent_ts_us: Some(5),
            done: true,
            by_ts: true,
            bytes: 0,
        }];
        d.sample = Some("hello".into());
        d.gone = true;
        let back = through_the_wire(&d);
        assert_eq!(back.shard, 4);
        assert_eq!(back.counters, d.counters);
        assert_eq!(back.latency, d.latency);
        assert_eq!(
            (back.active, back.opens_us, back.connecting),
            (7, Some((1, 2)), 5)
        );
        assert_eq!(back.per_source, d.per_source);
        assert_eq!(back.error_samples, d.error_samples);
        assert_eq!(back.peers, d.peers);
        assert_eq!(back.latencies, vec![(3, last)]);
        assert_eq!(back.broadcasts, d.broadcasts);
        assert_eq!(back.sample, d.sample);
        assert!(back.gone);
    }

    #[test]
    fn commands_round_trip() {
        let b = line(&Down::Broadcast {
            seq: 9,
            payload: b"{\"seq\":9}\xff".to_vec(),
            stamp_us: 77,
        });
        match serde_json::from_slice::<Down>(&b).unwrap() {
            Down::Broadcast {
                seq,
                payload,
                stamp_us,
            } => assert_eq!(
                (seq, payload.as_slice(), stamp_us),
                (9, &b"{\"seq\":9}\xff"[..], 77)
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            serde_json::from_slice::<Down>(&line(&Down::Stop)).unwrap(),
            Down::Stop
        ));
    }
}
