//! Asking a server's control endpoint for a broadcast: the console's `b` in client mode. HTTP
//! is hyper's client; this says what the answers mean to the user.

use anyhow::{Context, Result, bail};
use axum::http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// Connecting and the whole exchange must each finish within this.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Asks `url` (`http://HOST:PORT[/…]`) for a broadcast, with the bearer token when there is
/// one; returns the broadcast's sequence number.
pub async fn request_broadcast(url: &str, token: Option<&str>) -> Result<u64> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--control-url {url}: must start with http://"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let mut req = Request::post(format!("http://{authority}/broadcast"));
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .with_context(|| format!("--control-url {url}: not a usable address"))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let exchange = async {
        let resp = client.request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .with_context(|| format!("{url}: no answer within {}s", TIMEOUT.as_secs()))?
        .with_context(|| format!("{url}: cannot reach the control endpoint"))?;
    let text = String::from_utf8_lossy(&body);
    match (status, token) {
        (StatusCode::ACCEPTED, _) => {}
        (StatusCode::UNAUTHORIZED, None) => bail!(
            "{url}: the server wants a bearer token: give it with --control-token (or \
             C1M_CONTROL_TOKEN)"
        ),
        (StatusCode::UNAUTHORIZED, Some(_)) => {
            bail!("{url}: the server refused this --control-token")
        }
        _ => bail!("{url}: the server answered {status}: {}", text.trim()),
    }
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_default();
    v["seq"]
        .as_u64()
        .with_context(|| format!("{url}: unexpected answer {text:?}"))
}
