//! An HdrHistogram interval log: one V2-compressed histogram per interval, in the format the
//! HdrHistogram tools read (`HistogramLogProcessor`, hdr-plot, HdrHistogramVisualizer). Values are
//! microseconds (the max column too), so pass `-outputValueUnitRatio 1000` to HistogramLogProcessor to get
//! milliseconds (its default assumes nanoseconds).

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, IntervalLogWriterError};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The legend line the Java `HistogramLogWriter` writes; tools skip it, people read it.
const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"";

pub struct HdrLog {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
}

impl HdrLog {
    /// Create (truncate) `path` and write the header. Interval timestamps are offsets from
    /// `start`, which is both the StartTime and the BaseTime; `what` names the values in a
    /// comment line (e.g. "Message latency in microseconds").
    pub fn create(path: impl AsRef<Path>, start: SystemTime, what: &str) -> io::Result<HdrLog> {
        let mut log = HdrLog {
            out: BufWriter::new(File::create(path)?),
            serializer: V2DeflateSerializer::new(),
        };
        IntervalLogWriterBuilder::new()
            .add_comment(&format!("[Logged with c1m {}]", env!("CARGO_PKG_VERSION")))
            .add_comment("[Histogram log format version 1.3]")
            .add_comment(&format!("[{what}]"))
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut log.out, &mut log.serializer)?;
        writeln!(log.out, "{LEGEND}")?;
        log.out.flush()?;
        Ok(log)
    }

    /// Append one interval: `start_offset` from the log's start, lasting `duration`. Flushed at
    /// once, so a run that is killed keeps every interval written so far.
    pub fn write_interval(
        &mut self,
        h: &Histogram<u64>,
        start_offset: Duration,
        duration: Duration,
    ) -> io::Result<()> {
        // The crate's writer borrows its output and serializer, so it cannot live in this struct;
        // a builder with no headers writes nothing and just lends us a writer for one line. (A
        // max-value divisor would add a header line each time, so the max column stays in µs.)
        let mut writer =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        writer
            .write_histogram(h, start_offset, duration, None)
            .map_err(|e| match e {
                IntervalLogWriterError::IoError(e) => e,
                IntervalLogWriterError::SerializeError(e) => {
                    io::Error::other(format!("encoding a histogram: {e:?}"))
                }
            })?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;
    use base64::Engine as _;
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    #[test]
    fn three_intervals_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latency.hlog");
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);

        let mut written = Vec::new();
        let mut log = HdrLog::create(&path, start, "Message latency in microseconds").unwrap();
        for i in 0..3u64 {
            let mut h = new_histogram();
            for v in 1..=(100 * (i + 1)) {
                h.record(v * 1000 + i).unwrap();
            }
            log.write_interval(&h, Duration::from_secs(i), Duration::from_secs(1))
                .unwrap();
            written.push(h);
        }
        drop(log);

        let text = std::fs::read(&path).unwrap();
        let mut start_time = None;
        let mut base_time = None;
        let mut read = Vec::new();
        for entry in IntervalLogIterator::new(&text) {
            match entry.unwrap() {
                LogEntry::StartTime(t) => start_time = Some(t),
                LogEntry::BaseTime(t) => base_time = Some(t),
                LogEntry::Interval(ilh) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(ilh.encoded_histogram())
                        .unwrap();
                    let h: Histogram<u64> = Deserializer::new()
                        .deserialize(&mut bytes.as_slice())
                        .unwrap();
                    read.push((ilh.start_timestamp(), ilh.duration(), ilh.max(), h));
                }
            }
        }
        assert_eq!(start_time, Some(Duration::from_secs(1_700_000_000)));
        assert_eq!(base_time, start_time);
        assert_eq!(read.len(), 3);
        for (i, ((offset, duration, max, h), w)) in read.iter().zip(&written).enumerate() {
            assert_eq!(*offset, Duration::from_secs(i as u64));
            assert_eq!(*duration, Duration::from_secs(1));
            assert_eq!(h.len(), w.len());
            assert_eq!(h.max(), w.max());
            assert_eq!(h.value_at_quantile(0.99), w.value_at_quantile(0.99));
            assert_eq!(*max, w.max() as f64);
        }
        let header = String::from_utf8_lossy(&text);
        assert!(header.contains(LEGEND));
        assert!(header.starts_with("#[Logged with c1m"));
    }
}
