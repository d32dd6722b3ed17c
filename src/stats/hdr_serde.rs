//! Histograms in serde: HdrHistogram's V2 serialized form, base64-encoded, so a histogram that
//! crosses a process boundary (a worker's delta, a saved report) merges exactly as one recorded
//! here. Used as `#[serde(with = "…")]` on the fields of [`super::ShardDelta`].

/// `Histogram<u64>` as base64 of its V2 serialization (serde `with` module).
pub mod histogram {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use hdrhistogram::Histogram;
    use hdrhistogram::serialization::{Deserializer as HdrDe, Serializer as _, V2Serializer};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn encode(h: &Histogram<u64>) -> String {
        let mut buf = Vec::new();
        V2Serializer::new()
            .serialize(h, &mut buf)
            .expect("serializing into a Vec cannot fail");
        STANDARD.encode(buf)
    }

    pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
        let bytes = STANDARD.decode(text).map_err(|e| e.to_string())?;
        let mut h: Histogram<u64> = HdrDe::new()
            .deserialize(&mut &bytes[..])
            .map_err(|e| format!("{e:?}"))?;
        // The aggregator's histograms auto-resize; give the decoded one the same range rules.
        // Not by copying it into a fresh one: after a 1M broadcast the parents spent a quarter
        // of their CPU allocating and zeroing histograms here.
        h.auto(true);
        Ok(h)
    }

    /// For `skip_serializing_if`: an empty histogram stays off the wire (the field's default
    /// brings it back), since most of a delta's histograms are empty most of the time.
    pub fn is_empty(h: &Histogram<u64>) -> bool {
        h.is_empty()
    }

    pub fn serialize<S: Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        decode(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// `Vec<(seq, Histogram)>`: per-broadcast latencies (serde `with` module).
pub mod latencies {
    use hdrhistogram::Histogram;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[(u64, Histogram<u64>)], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|(seq, h)| (*seq, super::histogram::encode(h)))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(u64, Histogram<u64>)>, D::Error> {
        Vec::<(u64, String)>::deserialize(d)?
            .into_iter()
            .map(|(seq, text)| super::histogram::decode(&text).map(|h| (seq, h)))
            .collect::<Result<_, _>>()
            .map_err(serde::de::Error::custom)
    }
}
