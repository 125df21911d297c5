//! The host name records carry: the configured `[agent] host`, else the
//! outbound IP as the seed found it (the local address of a UDP socket
//! "connected" to a public address; no packet is sent), else the first
//! non-loopback interface address, else 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

pub fn detect(configured: Option<&str>) -> String {
    if let Some(h) = configured {
        return h.to_string();
    }
    outbound_ip().or_else(first_interface_ip).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)).to_string()
}

fn outbound_ip() -> Option<IpAddr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("8.8.8.8:80").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

fn first_interface_ip() -> Option<IpAddr> {
    let ifs = if_addrs::get_if_addrs().ok()?;
    let mut ips: Vec<IpAddr> = ifs.into_iter().filter(|i| !i.is_loopback()).map(|i| i.ip()).collect();
    ips.sort_by_key(|ip| !ip.is_ipv4()); // prefer IPv4, as the seed's keys do
    ips.into_iter().next()
}

#[cfg(test)]
mod tests {
    #[test]
    fn configured_host_wins_and_detection_gives_an_ip() {
        assert_eq!(super::detect(Some("web-1")), "web-1");
        let ip: std::net::IpAddr = super::detect(None).parse().unwrap();
        assert!(!ip.is_unspecified());
    }
}
