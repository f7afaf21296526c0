//! The xenstore nodes of a virtual network interface, as data.
//!
//! The kernel's xenbus code does the reading, writing and state transitions; this module says
//! which nodes, and what their strings mean (`io/netif.h`, and Linux's netfront and netback,
//! which define the nodes the header only mentions). The backend's nodes are untrusted input
//! like its ring indices: a value that is not what the protocol allows is an error, never a
//! default.
//!
//! # Order
//!
//! Netback writes its `feature-*` nodes when it probes the device, before it reaches
//! `XenbusStateInitWait`, so [`BackendFeatures::parse`] runs then: a backend that cannot copy
//! received frames into our pages is refused before anything is granted. The `mac` node is in
//! the **frontend's** directory (the toolstack writes it there; Linux reads it there too).

use core::fmt;

use ringbolt_xen_abi::EvtchnPort;
use ringbolt_xen_abi::grant_table::GrantRef;

/// What the backend publishes about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendFeatures {
    /// `feature-sg`: the backend takes a transmitted packet spread over several requests, so
    /// frames larger than a page can be sent.
    pub sg: bool,
    /// `feature-gso-tcpv4`: the backend segments large TCP packets. Reported, not used: smoltcp
    /// segments itself.
    pub gso_tcpv4: bool,
    /// Not `feature-no-csum-offload`: the backend would fill in checksums we leave blank.
    /// Reported, not used: smoltcp computes every checksum (see the crate documentation).
    pub csum_offload: bool,
    /// `multi-queue-max-queues` (1 if absent): queue pairs the backend could serve. We use one;
    /// multiple queues are not implemented.
    pub max_queues: u32,
}

/// A node that is missing, malformed, or says the backend cannot serve us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The backend does not offer `feature-rx-copy`. Without it a backend transfers received
    /// frames by swapping page ownership ("flipping"), which no current backend does and this
    /// frontend does not implement.
    RxCopyRequired,
    /// A required node is absent.
    Missing(&'static str),
    /// A node's value is malformed or out of range; `why` says how.
    Invalid {
        key: &'static str,
        why: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::RxCopyRequired => write!(
                f,
                "backend does not offer feature-rx-copy: it cannot copy received frames into \
                 granted pages, the only receive mode netfront supports"
            ),
            ConfigError::Missing(key) => write!(f, "node {key} missing"),
            ConfigError::Invalid { key, why } => write!(f, "node {key}: {why}"),
        }
    }
}

impl core::error::Error for ConfigError {}

impl BackendFeatures {
    /// The backend nodes [`parse`](Self::parse) reads, relative to the backend's directory.
    pub const KEYS: [&'static str; 5] = [
        "feature-rx-copy",
        "feature-sg",
        "feature-gso-tcpv4",
        "feature-no-csum-offload",
        "multi-queue-max-queues",
    ];

    /// Parses the backend's nodes; `read(key)` returns a node's value, or `None` if it does
    /// not exist. Booleans are `0` or `1` (absent is `0`); numbers are unsigned decimal.
    pub fn parse<S: AsRef<str>>(
        mut read: impl FnMut(&'static str) -> Option<S>,
    ) -> Result<Self, ConfigError> {
        let [rx_copy, sg, gso, no_csum, queues] = Self::KEYS;
        let mut flag = |key| -> Result<bool, ConfigError> {
            match read(key).as_ref().map(AsRef::as_ref) {
                None | Some("0") => Ok(false),
                Some("1") => Ok(true),
                Some(_) => Err(ConfigError::Invalid {
                    key,
                    why: "not 0 or 1",
                }),
            }
        };
        if !flag(rx_copy)? {
            return Err(ConfigError::RxCopyRequired);
        }
        let features = BackendFeatures {
            sg: flag(sg)?,
            gso_tcpv4: flag(gso)?,
            csum_offload: !flag(no_csum)?,
            max_queues: 1,
        };
        let max_queues = match read(queues) {
            None => 1,
            Some(v) => decimal(v.as_ref())
                .filter(|&n| n > 0)
                .ok_or(ConfigError::Invalid {
                    key: queues,
                    why: "not a positive 32-bit decimal number",
                })?,
        };
        Ok(BackendFeatures {
            max_queues,
            ..features
        })
    }
}

/// An unsigned decimal number that fits 32 bits, digits only.
fn decimal(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The interface's Ethernet address, from the frontend's `mac` node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    /// The node holding it, relative to the **frontend's** directory.
    pub const KEY: &'static str = "mac";

    /// Parses six colon-separated hexadecimal octets (`00:16:3e:5a:01:02`, either case; an
    /// octet may drop its leading zero). A multicast address (lowest bit of the first octet
    /// set, broadcast included) is refused: no interface may send from one, and smoltcp panics
    /// when given one.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let invalid = |why| ConfigError::Invalid {
            key: Self::KEY,
            why,
        };
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for octet in &mut mac {
            let part = parts.next().ok_or(invalid("fewer than six octets"))?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid("octet not one or two hexadecimal digits"));
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| invalid("bad octet"))?;
        }
        if parts.next().is_some() {
            return Err(invalid("more than six octets"));
        }
        if mac[0] & 1 != 0 {
            return Err(invalid("not a unicast address"));
        }
        Ok(MacAddress(mac))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl From<MacAddress> for smoltcp::wire::EthernetAddress {
    fn from(mac: MacAddress) -> Self {
        smoltcp::wire::EthernetAddress(mac.0)
    }
}

/// What the frontend publishes in its own directory, in one transaction, before switching to
/// `XenbusStateConnected` (netback connects when the frontend is `Connected`, not
/// `Initialised`).
///
/// One queue, so the flat `tx-ring-ref`/`rx-ring-ref`/`event-channel` nodes and no
/// `multi-queue-num-queues` (netback then assumes one), and one event channel for both rings
/// (no `feature-split-event-channels`). The features we announce:
///
/// - `request-rx-copy = 1`: the backend copies received frames into our granted pages;
/// - `feature-rx-notify = 1`: we notify the backend when we post receive buffers it asked for,
///   so it may queue frames while the ring is empty;
/// - `feature-sg = 1`: we reassemble a received frame spread over several slots;
/// - `feature-no-csum-offload = 1`: the backend must fill in checksums before handing us a
///   frame (smoltcp verifies every checksum, and a blank one would fail). No
///   `feature-gso-tcpv4`: we take no segmentation-offloaded packets either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontendKeys {
    pub tx_ring_ref: GrantRef,
    pub rx_ring_ref: GrantRef,
    pub event_channel: EvtchnPort,
}

impl FrontendKeys {
    /// The nodes to write, relative to the frontend's directory, with their decimal values.
    pub fn entries(&self) -> [(&'static str, u32); 7] {
        [
            ("tx-ring-ref", self.tx_ring_ref),
            ("rx-ring-ref", self.rx_ring_ref),
            ("event-channel", self.event_channel),
            ("request-rx-copy", 1),
            ("feature-rx-notify", 1),
            ("feature-sg", 1),
            ("feature-no-csum-offload", 1),
        ]
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    fn parse(nodes: &[(&str, &str)]) -> Result<BackendFeatures, ConfigError> {
        BackendFeatures::parse(|key| nodes.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
    }

    #[test]
    fn parses_a_linux_netback_directory() {
        let features = parse(&[
            ("feature-sg", "1"),
            ("feature-gso-tcpv4", "1"),
            ("feature-gso-tcpv6", "1"),
            ("feature-ipv6-csum-offload", "1"),
            ("feature-rx-copy", "1"),
            ("feature-rx-flip", "0"),
            ("feature-multicast-control", "1"),
            ("feature-split-event-channels", "1"),
            ("multi-queue-max-queues", "4"),
            ("mac", "00:16:3e:00:00:01"),
        ])
        .unwrap();
        assert_eq!(
            features,
            BackendFeatures {
                sg: true,
                gso_tcpv4: true,
                csum_offload: true,
                max_queues: 4,
            }
        );
    }

    #[test]
    fn optional_nodes_default_as_netback_reads_them() {
        let features = parse(&[("feature-rx-copy", "1")]).unwrap();
        assert_eq!(
            features,
            BackendFeatures {
                sg: false,
                gso_tcpv4: false,
                csum_offload: true,
                max_queues: 1,
            }
        );
        assert!(
            !parse(&[("feature-rx-copy", "1"), ("feature-no-csum-offload", "1")])
                .unwrap()
                .csum_offload
        );
    }

    #[test]
    fn refuses_a_backend_without_rx_copy() {
        assert_eq!(parse(&[]), Err(ConfigError::RxCopyRequired));
        assert_eq!(
            parse(&[("feature-rx-copy", "0"), ("feature-sg", "1")]),
            Err(ConfigError::RxCopyRequired)
        );
        assert!(
            ConfigError::RxCopyRequired
                .to_string()
                .contains("feature-rx-copy")
        );
    }

    #[test]
    fn rejects_malformed_values() {
        for (key, value) in [
            ("feature-rx-copy", "yes"),
            ("feature-sg", "2"),
            ("feature-gso-tcpv4", ""),
            ("feature-no-csum-offload", " 1"),
            ("multi-queue-max-queues", "0"),
            ("multi-queue-max-queues", "-1"),
            ("multi-queue-max-queues", "4294967296"),
            ("multi-queue-max-queues", "0x4"),
        ] {
            let mut nodes = vec![("feature-rx-copy", "1")];
            nodes.retain(|(k, _)| *k != key);
            nodes.push((key, value));
            assert!(
                matches!(parse(&nodes), Err(ConfigError::Invalid { key: k, .. }) if k == key),
                "{key} = {value:?}"
            );
        }
        assert_eq!(
            parse(&[("feature-rx-copy", "1"), ("feature-sg", "on")])
                .unwrap_err()
                .to_string(),
            "node feature-sg: not 0 or 1"
        );
    }

    #[test]
    fn reads_only_the_keys_it_lists() {
        let mut asked = Vec::new();
        let _ = BackendFeatures::parse(|key| {
            asked.push(key);
            Some("1")
        });
        asked.sort_unstable();
        let mut keys = BackendFeatures::KEYS;
        keys.sort_unstable();
        assert_eq!(asked, keys);
    }

    #[test]
    fn parses_mac_addresses() {
        assert_eq!(
            MacAddress::parse("00:16:3e:5a:0B:c2"),
            Ok(MacAddress([0x00, 0x16, 0x3E, 0x5A, 0x0B, 0xC2]))
        );
        assert_eq!(
            MacAddress::parse("0:16:3e:5:b:c"),
            Ok(MacAddress([0, 0x16, 0x3E, 5, 0x0B, 0x0C]))
        );
        let mac = MacAddress([0x02, 0, 0xAB, 1, 2, 0xFF]);
        assert_eq!(mac.to_string(), "02:00:ab:01:02:ff");
        assert_eq!(MacAddress::parse(&mac.to_string()), Ok(mac));
        assert_eq!(
            smoltcp::wire::EthernetAddress::from(mac),
            smoltcp::wire::EthernetAddress([0x02, 0, 0xAB, 1, 2, 0xFF])
        );
    }

    #[test]
    fn rejects_malformed_mac_addresses() {
        for (bad, why) in [
            ("", "octet not one or two hexadecimal digits"),
            ("00:16:3e:00:00", "fewer than six octets"),
            ("00:16:3e:00:00:01:02", "more than six octets"),
            ("00:16:3e:00:00:", "octet not one or two hexadecimal digits"),
            (
                "00:16:3e:000:00:01",
                "octet not one or two hexadecimal digits",
            ),
            (
                "00-16-3e-00-00-01",
                "octet not one or two hexadecimal digits",
            ),
            (
                "00:16:3e:0g:00:01",
                "octet not one or two hexadecimal digits",
            ),
            (
                "00:16:3e:+1:00:01",
                "octet not one or two hexadecimal digits",
            ),
            (
                " 00:16:3e:00:00:01",
                "octet not one or two hexadecimal digits",
            ),
            ("01:00:5e:00:00:01", "not a unicast address"),
            ("ff:ff:ff:ff:ff:ff", "not a unicast address"),
        ] {
            assert_eq!(
                MacAddress::parse(bad),
                Err(ConfigError::Invalid { key: "mac", why }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn frontend_nodes() {
        let keys = FrontendKeys {
            tx_ring_ref: 8,
            rx_ring_ref: 9,
            event_channel: 17,
        };
        assert_eq!(
            keys.entries(),
            [
                ("tx-ring-ref", 8),
                ("rx-ring-ref", 9),
                ("event-channel", 17),
                ("request-rx-copy", 1),
                ("feature-rx-notify", 1),
                ("feature-sg", 1),
                ("feature-no-csum-offload", 1),
            ]
        );
    }
}
