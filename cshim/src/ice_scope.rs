//! Which remote candidates a peer bound to one address can pair with.
//!
//! A peer bound to a loopback address gets every answer to its checks from a loopback
//! source, so a check it sends to a remote LAN address (which the remote, bound to all
//! interfaces, also owns) always fails as non-symmetric; likewise the other way round, and
//! across address families. Each such pair still costs ICE a paced check slot (libjuice:
//! 50 ms each) before the pair that works, which measured as ~100 ms on 1 connect in 5
//! against the dev server (bound to 127.0.0.1) on a loaded machine. So those candidates
//! are never handed to ICE. With no bind address (or a wildcard one) every candidate is
//! kept.
use std::net::IpAddr;

/// The address a peer is bound to, when it restricts the pairs that can work.
#[derive(Debug, Clone, Copy)]
pub struct Scope(Option<IpAddr>);

impl Scope {
    pub fn new(bind_address: Option<&str>) -> Scope {
        Scope(bind_address.and_then(|a| a.parse::<IpAddr>().ok()).filter(|ip| !ip.is_unspecified()))
    }

    /// Whether a candidate (`candidate:…` or `a=candidate:…`) can form a working pair. A
    /// candidate we cannot read is kept (ICE reports what is wrong with it).
    pub fn admits(&self, candidate: &str) -> bool {
        let Some(bind) = self.0 else { return true };
        let Some(addr) = candidate.split_ascii_whitespace().nth(4) else { return true };
        match addr.parse::<IpAddr>() {
            Ok(remote) => remote.is_loopback() == bind.is_loopback() && remote.is_ipv4() == bind.is_ipv4(),
            // A host name (mDNS) never resolves to a loopback address.
            Err(_) => !bind.is_loopback(),
        }
    }

    /// The SDP without the candidate lines that cannot pair.
    pub fn filter_sdp(&self, sdp: &str) -> String {
        if self.0.is_none() {
            return sdp.to_string();
        }
        sdp.split_inclusive('\n')
            .filter(|line| !line.starts_with("a=candidate:") || self.admits(line))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAN: &str = "candidate:1 1 UDP 2122317823 192.0.2.2 48504 typ host";
    const LO: &str = "candidate:3 1 UDP 2122317567 127.0.0.1 48504 typ host";
    const V6: &str = "a=candidate:2 1 UDP 2130706175 fd00::2 48504 typ host";
    const MDNS: &str = "candidate:4 1 UDP 2122317823 2d1b.local 48504 typ host";

    #[test]
    fn loopback_bound_peers_keep_only_loopback_candidates() {
        let s = Scope::new(Some("127.0.0.1"));
        assert!(s.admits(LO));
        assert!(!s.admits(LAN) && !s.admits(V6) && !s.admits(MDNS));
        let sdp = format!("v=0\r\na={LAN}\r\na={LO}\r\n{V6}\r\na=end-of-candidates\r\n");
        assert_eq!(s.filter_sdp(&sdp), format!("v=0\r\na={LO}\r\na=end-of-candidates\r\n"));
    }

    #[test]
    fn lan_bound_peers_drop_loopback_and_other_families() {
        let s = Scope::new(Some("192.0.2.2"));
        assert!(s.admits(LAN) && s.admits(MDNS));
        assert!(!s.admits(LO) && !s.admits(V6));
    }

    #[test]
    fn unbound_peers_keep_everything() {
        for bind in [None, Some("0.0.0.0"), Some("::"), Some("not an address")] {
            let s = Scope::new(bind);
            assert!([LAN, LO, V6, MDNS, "garbage"].iter().all(|c| s.admits(c)), "{bind:?}");
        }
        assert!(Scope::new(Some("127.0.0.1")).admits("candidate:short"));
    }
}
