//! The server's clock as the coordinator sees it. Agents time each message against the
//! server's timestamp, so each agent's latencies are right when its clock is set to the
//! server's: the coordinator measures every agent's offset to itself (`fleet`), and here the
//! server's, through a c1m server's control endpoint (`GET /clock`), NTP-style: the
//! lowest-delay of the last few exchanges. An agent is then told its offset to the server.
//! For a server that is not c1m's, the user gives the offset, or none (the server's clock is
//! taken to be the coordinator's), and the report says which.

use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Exchanges kept; the estimate is the lowest-delay one, so a burst of queueing on the way
/// moves it only once it outlasts them all.
const KEPT: usize = 8;

/// The last few exchanges with one clock, and the estimate they give.
#[derive(Clone, Debug, Default)]
pub struct Exchanges {
    /// (offset, round trip), µs, newest last.
    samples: Vec<(i64, i64)>,
}

impl Exchanges {
    /// One exchange (NTP's t0 and t3 on this clock, t1 and t2 on the other) joins the last
    /// [`KEPT`]; returns the estimate: the other clock ahead of this one, µs, and its
    /// uncertainty, half the round trip of the lowest-delay exchange kept.
    pub fn add(&mut self, t0: i64, t1: i64, t2: i64, t3: i64) -> (i64, u64) {
        let offset = ((t1 - t0) + (t2 - t3)) / 2;
        let rtt = (t3 - t0) - (t2 - t1);
        self.samples.push((offset, rtt));
        if self.samples.len() > KEPT {
            self.samples.remove(0);
        }
        let &(offset, rtt) = self
            .samples
            .iter()
            .min_by_key(|s| s.1)
            .expect("one was just added");
        (offset, (rtt.max(0) as u64).div_ceil(2))
    }
}
/// One exchange this often after the first five.
const EVERY: Duration = Duration::from_secs(5);

/// How the server's clock is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Measured through a c1m server's control endpoint at this URL (host:port).
    Measured { addr: String, token: Option<String> },
    /// Given by the user (`--server-clock +3ms`), µs.
    Given(i64),
    /// None: taken to be the coordinator's own.
    Assumed,
}

/// What the report says of the server's clock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Estimate {
    /// measured, given or assumed.
    pub server: &'static str,
    /// The server's clock ahead of the coordinator's, µs; `null` until measured.
    pub server_offset_us: Option<i64>,
    /// Half the round trip of the exchange the offset comes from, µs (measured only).
    pub server_uncertainty_us: Option<u64>,
}

/// The estimate, and the exchanges it comes from.
type State = (Estimate, Exchanges);

#[derive(Clone, Debug)]
pub struct ServerClock {
    state: Arc<Mutex<State>>,
}

impl ServerClock {
    /// Starts measuring when `source` says so.
    pub fn start(source: Source) -> ServerClock {
        let estimate = match &source {
            Source::Measured { .. } => Estimate {
                server: "measured",
                ..Estimate::default()
            },
            Source::Given(us) => Estimate {
                server: "given",
                server_offset_us: Some(*us),
                server_uncertainty_us: None,
            },
            Source::Assumed => Estimate {
                server: "assumed",
                server_offset_us: Some(0),
                server_uncertainty_us: None,
            },
        };
        let clock = ServerClock {
            state: Arc::new(Mutex::new((estimate, Exchanges::default()))),
        };
        if let Source::Measured { addr, token } = source {
            tokio::spawn(clock.clone().measure(addr, token));
        }
        clock
    }

    /// The server's clock ahead of the coordinator's, µs (0 until known).
    pub fn offset(&self) -> i64 {
        self.lock().0.server_offset_us.unwrap_or(0)
    }

    pub fn estimate(&self) -> Estimate {
        self.lock().0.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn measure(self, addr: String, token: Option<String>) {
        for k in 0usize.. {
            let t0 = crate::engine::now_us();
            if let Ok((t1, t2)) = ask(&addr, token.as_deref()).await {
                let t3 = crate::engine::now_us();
                let mut state = self.lock();
                let (offset, uncertainty) = state.1.add(t0, t1, t2, t3);
                state.0.server_offset_us = Some(offset);
                state.0.server_uncertainty_us = Some(uncertainty);
            }
            let pause = if k < 5 {
                Duration::from_millis(100)
            } else {
                EVERY
            };
            tokio::time::sleep(pause).await;
        }
    }
}

/// One `GET /clock` over a fresh connection: (t1, t2) of the server.
async fn ask(addr: &str, token: Option<&str>) -> anyhow::Result<(i64, i64)> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await??;
    s.set_nodelay(true)?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!("GET /clock HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut body)).await??;
    let json = body.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(json.trim())?;
    match (v["t1_us"].as_i64(), v["t2_us"].as_i64()) {
        (Some(t1), Some(t2)) => Ok((t1, t2)),
        _ => anyhow::bail!("{addr}/clock answered {:?}", body.lines().next()),
    }
}

/// `--server-clock`: `http://HOST:PORT` (a c1m server's control endpoint), an offset such as
/// `+3ms` or `-1.5ms`, or `none`.
pub fn parse(s: &str) -> Result<Source, String> {
    if s == "none" {
        return Ok(Source::Assumed);
    }
    if let Some(rest) = s.strip_prefix("http://") {
        let addr = rest.trim_end_matches('/').to_string();
        return Ok(Source::Measured { addr, token: None });
    }
    let ms = s.strip_suffix("ms").and_then(|n| n.parse::<f64>().ok());
    match ms {
        Some(ms) if ms.is_finite() => Ok(Source::Given((ms * 1000.0).round() as i64)),
        _ => Err(format!(
            "{s}: --server-clock is http://HOST:PORT (a c1m server's --control), an offset such \
             as +3ms, or none"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_the_lowest_delay_exchange_kept() {
        let mut x = Exchanges::default();
        // 1 ms each way, the other clock 250 ms ahead.
        assert_eq!(x.add(0, 251_000, 251_000, 2_000), (250_000, 1_000));
        // A queued exchange (9 ms back) does not move it.
        assert_eq!(x.add(10_000, 261_000, 261_000, 21_000), (250_000, 1_000));
        // Once the good one is out of the window, the best left is taken.
        for k in 0..KEPT as i64 {
            x.add(k, k + 250_500, k + 250_500, k + 3_000);
        }
        assert_eq!(x.add(0, 250_000, 250_000, 4_000), (249_000, 1_500));
    }

    #[test]
    fn the_three_ways_to_know_the_servers_clock() {
        assert_eq!(parse("none"), Ok(Source::Assumed));
        assert_eq!(parse("+2.5ms"), Ok(Source::Given(2500)));
        assert_eq!(parse("-3ms"), Ok(Source::Given(-3000)));
        assert_eq!(
            parse("http://10.0.0.1:9100/"),
            Ok(Source::Measured {
                addr: "10.0.0.1:9100".into(),
                token: None
            })
        );
        assert!(parse("soon").is_err());
    }
}
