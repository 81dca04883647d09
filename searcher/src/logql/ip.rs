//! LogQL's `ip("…")` matcher, for label filters (`| addr = ip("10.0.0.0/8")`)
//! and line filters (`|= ip("192.168.4.5-192.168.4.20")`): one address, an
//! inclusive range, or a CIDR block, IPv4 or IPv6. An address only matches
//! a pattern of its own family.

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpPattern {
    Single(IpAddr),
    /// Inclusive, both ends of one family.
    Range(IpAddr, IpAddr),
    /// A network and its prefix length.
    Cidr(IpAddr, u8),
}

/// An address as a number, and its width in bits.
fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v) => (u32::from(v) as u128, 32),
        IpAddr::V6(v) => (u128::from(v), 128),
    }
}

impl IpPattern {
    pub fn parse(text: &str) -> Result<IpPattern, String> {
        let bad = || {
            format!("invalid ip() pattern {text:?}: give an address, a range a-b or a CIDR block")
        };
        let text = text.trim();
        if let Some((net, len)) = text.split_once('/') {
            let net: IpAddr = net.parse().map_err(|_| bad())?;
            let len: u8 = len.parse().map_err(|_| bad())?;
            if len > bits(net).1 {
                return Err(bad());
            }
            return Ok(IpPattern::Cidr(net, len));
        }
        if let Some((a, b)) = text.split_once('-') {
            let (a, b): (IpAddr, IpAddr) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if a.is_ipv4() != b.is_ipv4() || bits(a).0 > bits(b).0 {
                return Err(bad());
            }
            return Ok(IpPattern::Range(a, b));
        }
        text.parse().map(IpPattern::Single).map_err(|_| bad())
    }

    pub fn matches(&self, ip: IpAddr) -> bool {
        let (n, width) = bits(ip);
        match *self {
            IpPattern::Single(a) => a == ip,
            IpPattern::Range(a, b) => {
                a.is_ipv4() == ip.is_ipv4() && bits(a).0 <= n && n <= bits(b).0
            }
            IpPattern::Cidr(net, len) => {
                if net.is_ipv4() != ip.is_ipv4() {
                    return false;
                }
                let shift = (width - len) as u32;
                let high = |x: u128| x.checked_shr(shift).unwrap_or(0);
                high(bits(net).0) == high(n)
            }
        }
    }

    /// Whether a label's value is an address the pattern matches.
    pub fn matches_text(&self, value: &str) -> bool {
        value.trim().parse().is_ok_and(|ip| self.matches(ip))
    }

    /// Whether any address written in `line` matches: each run of
    /// characters an address can hold is read as one, or, for
    /// `10.0.0.1:8080`, without its port.
    pub fn in_line(&self, line: &str) -> bool {
        line.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
            .filter(|run| run.len() >= 2 && (run.contains('.') || run.contains(':')))
            .any(|run| {
                let run = run.trim_matches('.');
                if let Ok(ip) = run.parse::<IpAddr>() {
                    return self.matches(ip);
                }
                // An IPv4 address with a port.
                run.rsplit_once(':')
                    .filter(|(host, _)| host.contains('.'))
                    .and_then(|(host, _)| host.parse::<IpAddr>().ok())
                    .is_some_and(|ip| self.matches(ip))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_range_and_cidr_as_loki_documents_them() {
        let p = |s: &str| IpPattern::parse(s).unwrap();
        assert!(p("192.168.4.5").matches_text("192.168.4.5"));
        assert!(!p("192.168.4.5").matches_text("192.168.4.6"));
        let range = p("192.168.4.5-192.168.4.20");
        assert!(range.matches_text("192.168.4.5") && range.matches_text("192.168.4.20"));
        assert!(!range.matches_text("192.168.4.21") && !range.matches_text("192.168.4.4"));
        let cidr = p("192.168.4.0/24");
        assert!(cidr.matches_text("192.168.4.255") && !cidr.matches_text("192.168.5.0"));
        assert!(p("0.0.0.0/0").matches_text("8.8.8.8"));
        let v6 = p("2001:db8::/32");
        assert!(v6.matches_text("2001:db8:1::7") && !v6.matches_text("2001:db9::1"));
        assert!(!v6.matches_text("10.0.0.1"), "families never mix");
        assert!(!p("10.0.0.0/8").matches_text("not an ip"));
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.9-10.0.0.1",
            "10.0.0.1-::1",
            "x.y",
        ] {
            assert!(IpPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn addresses_are_found_anywhere_in_a_line() {
        let p = IpPattern::parse("10.0.0.0/8").unwrap();
        assert!(p.in_line("GET /cart from 10.1.2.3 in 5ms"));
        assert!(p.in_line("client=10.1.2.3:51234 ok"));
        assert!(p.in_line("[10.1.2.3]."));
        assert!(!p.in_line("from 192.168.0.1 v1.2.3 at 12:30:01"));
        let v6 = IpPattern::parse("::1").unwrap();
        assert!(v6.in_line("listening on [::1]:8080"));
    }
}
