//! Source addresses for the client. One source IP has only as many ports as
//! `ip_local_port_range` allows towards one destination, so a large test spreads its
//! connections over several; on loopback 127.0.0.2, 127.0.0.3 … need no set-up.

use crate::stats::ErrorClass;
use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The ephemeral port range, `(low, high)` inclusive.
pub fn local_port_range() -> (u16, u16) {
    // Linux's default range when /proc cannot be read.
    crate::sys::limits::read_port_range().unwrap_or((32768, 60999))
}

pub fn ports_per_source() -> u64 {
    let (lo, hi) = local_port_range();
    u64::from(hi.saturating_sub(lo)) + 1
}

/// Share of an address's ephemeral ports the default plan uses. Linux's connect() looks for a
/// free port among the even ones first and searches the range linearly once they run short, so
/// past half the range every connect pays for a scan: measured here, the ramp fell from about
/// 30,000 to 1,500 connections/s when 4 addresses of 28,232 ports each reached 14,000
/// connections apiece, and 10 addresses held 100,000 at 36,000/s.
pub const PORT_SHARE: f64 = 0.40;

/// Source addresses the default plan uses for `conns` connections to one destination: enough to
/// keep each below [`PORT_SHARE`] of its ports.
pub fn auto_count(conns: u64) -> usize {
    let usable = ((ports_per_source() as f64 * PORT_SHARE) as u64).max(1);
    conns.div_ceil(usable).max(1) as usize
}

/// Parses `--source-ips`: a comma list of addresses, or one CIDR block (its host addresses).
pub fn parse_list(spec: &str) -> Result<Vec<IpAddr>> {
    let spec = spec.trim();
    if let Some((net, bits)) = spec.split_once('/') {
        let net: Ipv4Addr = net
            .parse()
            .with_context(|| format!("--source-ips {spec:?}: {net:?} is not an IPv4 address"))?;
        let bits: u32 = bits
            .parse()
            .ok()
            .filter(|b| (8..=32).contains(b))
            .with_context(|| format!("--source-ips {spec:?}: prefix must be 8..=32"))?;
        let base = u32::from(net) & (u32::MAX.checked_shl(32 - bits).unwrap_or(0));
        let size = 1u64 << (32 - bits);
        // Skip the network and broadcast addresses of blocks larger than /31.
        let (first, last) = if size > 2 {
            (1, size - 2)
        } else {
            (0, size - 1)
        };
        return Ok((first..=last)
            .map(|i| IpAddr::V4(Ipv4Addr::from(base + i as u32)))
            .collect());
    }
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        out.push(
            part.parse()
                .with_context(|| format!("--source-ips: {part:?} is not an IP address"))?,
        );
    }
    if out.is_empty() {
        bail!("--source-ips {spec:?} names no address");
    }
    Ok(out)
}

/// The source addresses for a run: explicit ones, or `count` loopback addresses from 127.0.0.2
/// when the target is on IPv4 loopback. `None` in the result means "let the kernel choose".
pub fn plan(
    target: SocketAddr,
    count: usize,
    explicit: Option<&str>,
) -> Result<Vec<Option<IpAddr>>> {
    if let Some(spec) = explicit {
        let ips = parse_list(spec)?;
        for ip in &ips {
            if ip.is_ipv4() != target.is_ipv4() {
                bail!("--source-ips: {ip} and the target {target} are not the same IP version");
            }
        }
        return Ok(ips.into_iter().map(Some).collect());
    }
    match target.ip() {
        IpAddr::V4(v4) if v4.is_loopback() => {
            if count > 65_000 {
                bail!("--ips {count}: at most 65000 loopback source addresses");
            }
            Ok((0..count)
                .map(|i| {
                    let n = u32::from(Ipv4Addr::new(127, 0, 0, 2)) + i as u32;
                    Some(IpAddr::V4(Ipv4Addr::from(n)))
                })
                .collect())
        }
        _ if count <= 1 => Ok(vec![None]),
        _ => bail!(
            "--ips {count}: several source addresses are chosen automatically only for an IPv4 \
             loopback target; for {target} list them with --source-ips (they must be configured \
             on an interface, e.g. `ip addr add 10.0.0.11/24 dev eth0`)"
        ),
    }
}

/// Opens a non-blocking socket bound to `source` and starts connecting to `dest`.
/// IP_BIND_ADDRESS_NO_PORT defers the port choice to connect(), so a port is unique per
/// 4-tuple instead of per source address: a source IP then serves every destination fully.
pub fn connect(
    source: Option<IpAddr>,
    dest: SocketAddr,
) -> Result<mio::net::TcpStream, (ErrorClass, io::Error)> {
    // Non-blocking from socket() on: every syscall saved here is one per connection.
    let socket = Socket::new(
        Domain::for_address(dest),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )
    .map_err(|e| (ErrorClass::from_io(&e), e))?;
    if let Some(ip) = source {
        set_bind_address_no_port(&socket).map_err(|e| (ErrorClass::Bind, e))?;
        socket
            .bind(&SocketAddr::new(ip, 0).into())
            .map_err(|e| (ErrorClass::Bind, e))?;
    }
    match socket.connect(&dest.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err((ErrorClass::from_io(&e), e)),
    }
    Ok(mio::net::TcpStream::from_std(socket.into()))
}

/// socket2 has no setter for this option.
fn set_bind_address_no_port(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    crate::sys::setsockopt(
        socket.as_raw_fd(),
        libc::IPPROTO_IP,
        libc::IP_BIND_ADDRESS_NO_PORT,
        &one,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_sources_start_at_127_0_0_2() {
        let t: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let s = plan(t, 3, None).unwrap();
        let s: Vec<String> = s.iter().map(|i| i.unwrap().to_string()).collect();
        assert_eq!(s, ["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    }

    #[test]
    fn cidr_skips_network_and_broadcast() {
        let s = parse_list("127.0.1.0/30").unwrap();
        let s: Vec<String> = s.iter().map(|i| i.to_string()).collect();
        assert_eq!(s, ["127.0.1.1", "127.0.1.2"]);
    }

    #[test]
    fn several_sources_for_a_remote_target_need_a_list() {
        let t: SocketAddr = "10.1.2.3:80".parse().unwrap();
        let err = plan(t, 4, None).unwrap_err().to_string();
        assert!(err.contains("--source-ips"), "{err}");
        assert_eq!(plan(t, 1, None).unwrap(), vec![None]);
    }

    #[test]
    fn bad_list_entries_are_named() {
        let err = parse_list("127.0.0.2,nope").unwrap_err().to_string();
        assert!(err.contains("\"nope\""), "{err}");
    }
}
