//! The host name records carry, and the `%s` of this host's etcd key: the
//! configured `[agent] host`, else the outbound IP as the seed found it (the
//! local address of a UDP socket "connected" to a public address; no packet
//! is sent), else the first non-loopback interface address, else 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

pub fn detect(configured: Option<&str>) -> String {
    if let Some(h) = configured {
        return h.to_string();
    }
    outbound_ip().or_else(first_interface_ip).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)).to_string()
}

/// The source address the kernel picks for a public destination: IPv4
/// first (the seed's keys are IPv4), then IPv6. `connect` on UDP only
/// chooses the route; nothing is sent.
fn outbound_ip() -> Option<IpAddr> {
    [("0.0.0.0:0", "8.8.8.8:80"), ("[::]:0", "[2001:4860:4860::8888]:80")].into_iter().find_map(|(bind, to)| {
        let s = UdpSocket::bind(bind).ok()?;
        s.connect(to).ok()?;
        let ip = s.local_addr().ok()?.ip();
        (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
    })
}

fn first_interface_ip() -> Option<IpAddr> {
    let ifs = if_addrs::get_if_addrs().ok()?;
    pick(ifs.into_iter().map(|i| i.ip()))
}

/// The best of a host's addresses for naming it: not loopback or
/// unspecified; IPv4 before IPv6, and a routable IPv6 before a link-local
/// one (fe80::/10); otherwise the first in interface order.
fn pick(ips: impl IntoIterator<Item = IpAddr>) -> Option<IpAddr> {
    let rank = |ip: &IpAddr| match ip {
        IpAddr::V4(_) => 0,
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) != 0xfe80 => 1,
        IpAddr::V6(_) => 2,
    };
    ips.into_iter().filter(|ip| !ip.is_loopback() && !ip.is_unspecified()).min_by_key(rank)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_host_wins_and_detection_gives_an_ip() {
        assert_eq!(detect(Some("web-1")), "web-1");
        let ip: IpAddr = detect(None).parse().unwrap();
        assert!(!ip.is_unspecified());
    }

    #[test]
    fn interface_fallback_order() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // (addresses in interface order, the pick)
        let table: &[(&[&str], Option<&str>)] = &[
            (&[], None),
            (&["127.0.0.1", "::1"], None),
            (&["0.0.0.0"], None),
            (&["127.0.0.1", "10.0.0.5"], Some("10.0.0.5")),
            (&["fe80::1", "2001:db8::5", "10.0.0.5", "192.168.1.2"], Some("10.0.0.5")),
            (&["fe80::1", "2001:db8::5"], Some("2001:db8::5")),
            (&["fe80::1"], Some("fe80::1")),
        ];
        for &(ips, want) in table {
            assert_eq!(pick(ips.iter().map(|s| ip(s))), want.map(ip), "{ips:?}");
        }
    }
}
