//! One side of a run: its engine (in this process or in worker processes), the deltas the
//! engine sends, the aggregator that merges them, what the side was configured with, and its
//! HDR interval log. Both faces hold their sides through this and nothing else.

use super::config::Echo;
use super::notes::Note;
use crate::stats::aggregate::{Aggregator, Second};
use crate::stats::hdrlog::HdrLog;
use crate::stats::{ShardDelta, Snapshot, WorkerRow};
use crate::workers::{ClientSide, ServerSide, Stopped};
use std::future::Future;
use std::path::PathBuf;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedReceiver;

/// What a side's engine must offer the run, wherever its connections live.
pub trait Engine {
    /// One row per worker process (none in one process).
    fn rows(&mut self) -> Vec<WorkerRow>;
    /// What the engine's workers said since the last call.
    fn take_notes(&mut self) -> Vec<String>;
    /// Closes every connection; the last deltas are then in the channel.
    fn stop(self) -> impl Future<Output = Stopped>;
}

impl Engine for ServerSide {
    fn rows(&mut self) -> Vec<WorkerRow> {
        ServerSide::rows(self)
    }
    fn take_notes(&mut self) -> Vec<String> {
        ServerSide::take_notes(self)
    }
    fn stop(self) -> impl Future<Output = Stopped> {
        ServerSide::stop(self)
    }
}

impl Engine for ClientSide {
    fn rows(&mut self) -> Vec<WorkerRow> {
        ClientSide::rows(self)
    }
    fn take_notes(&mut self) -> Vec<String> {
        ClientSide::take_notes(self)
    }
    fn stop(self) -> impl Future<Output = Stopped> {
        ClientSide::stop(self)
    }
}

/// An HDR interval log and where it is written.
pub struct HdrOut {
    pub log: HdrLog,
    pub path: PathBuf,
}

pub struct Side<E> {
    pub engine: E,
    rx: UnboundedReceiver<ShardDelta>,
    pub agg: Aggregator,
    pub echo: Echo,
    /// "server" or "client" when both sides run here, for notes and report titles.
    pub label: Option<&'static str>,
    hdr: Option<HdrOut>,
    /// Set when the HDR log could not be written: the run's outputs are incomplete.
    pub output_failed: bool,
}

/// A side whose engine has stopped: what its report is made of.
pub struct Stopping {
    pub agg: Aggregator,
    pub echo: Echo,
    pub label: Option<&'static str>,
    pub stopped: Stopped,
    pub output_failed: bool,
    pub notes: Vec<Note>,
}

impl<E: Engine> Side<E> {
    pub fn new(
        engine: E,
        rx: UnboundedReceiver<ShardDelta>,
        agg: Aggregator,
        echo: Echo,
        hdr: Option<HdrOut>,
    ) -> Side<E> {
        Side {
            engine,
            rx,
            agg,
            echo,
            label: None,
            hdr,
            output_failed: false,
        }
    }

    /// The next delta; cancel-safe.
    pub async fn recv(&mut self) -> Option<ShardDelta> {
        self.rx.recv().await
    }

    pub fn apply(&mut self, d: ShardDelta) {
        self.agg.apply(d, Instant::now());
    }

    /// Applies every delta waiting; whether there was any.
    pub fn drain(&mut self) -> bool {
        let mut any = false;
        while let Ok(d) = self.rx.try_recv() {
            self.apply(d);
            any = true;
        }
        any
    }

    pub fn snapshot(&mut self, now: Instant) -> Snapshot {
        let mut s = self.agg.snapshot(now);
        s.workers = self.engine.rows();
        s
    }

    /// Once a second: a point of history, and an interval of the HDR log.
    pub fn second(&mut self, now: Instant) -> Option<Note> {
        let second = self.agg.tick(now)?;
        let note = log(&mut self.hdr, second, self.label);
        self.output_failed |= note.is_some();
        note
    }

    /// What a person should read since the last call: the first error of each class, with
    /// what to do about it, and what worker processes said.
    pub fn notes(&mut self) -> Vec<Note> {
        let mut notes = first_errors(&mut self.agg, self.label);
        let label = self.label;
        notes.extend(
            self.engine
                .take_notes()
                .into_iter()
                .map(|w| Note::new(w).on(label)),
        );
        notes
    }

    /// Stops the engine, takes its last deltas and closes the HDR log's last interval.
    pub async fn stop(self) -> Stopping {
        let Side {
            engine,
            mut rx,
            mut agg,
            echo,
            label,
            mut hdr,
            mut output_failed,
        } = self;
        let stopped = engine.stop().await;
        while let Ok(d) = rx.try_recv() {
            agg.apply(d, Instant::now());
        }
        let mut notes = first_errors(&mut agg, label);
        if let Some(second) = agg.tick_final(Instant::now())
            && let Some(n) = log(&mut hdr, second, label)
        {
            output_failed = true;
            notes.push(n);
        }
        Stopping {
            agg,
            echo,
            label,
            stopped,
            output_failed,
            notes,
        }
    }
}

/// Writes one interval; a log that cannot be written is closed, and a note says so.
fn log(hdr: &mut Option<HdrOut>, second: Second, label: Option<&'static str>) -> Option<Note> {
    let out = hdr.as_mut()?;
    let e = out
        .log
        .write_interval(&second.latency, second.start, second.length)
        .err()?;
    let text = format!(
        "cannot write the HDR log {} ({e}); it stops here",
        out.path.display()
    );
    *hdr = None;
    Some(Note::new(text).on(label))
}

fn first_errors(agg: &mut Aggregator, label: Option<&'static str>) -> Vec<Note> {
    let mode = agg.mode();
    agg.take_new_error_samples()
        .into_iter()
        .map(|(class, text)| Note::first_error(mode, class, &text).on(label))
        .collect()
}
