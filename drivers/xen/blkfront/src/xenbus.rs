//! The xenstore nodes of a virtual block device, as data.
//!
//! The kernel's xenbus code does the reading, writing and state transitions; this module says
//! which nodes, and what their strings mean (`io/blkif.h`, "Feature and Parameter
//! Negotiation"). The backend's nodes are untrusted input like its ring indices: a value that
//! is not what the header allows is an error, never a default, because a wrong sector size or
//! disk size would turn into misaddressed I/O.

use core::fmt;

use ringbolt_xen_abi::EvtchnPort;
use ringbolt_xen_abi::grant_table::GrantRef;
use ringbolt_xen_abi::io::blkif::SECTOR_SIZE;

/// `XEN_IO_PROTO_ABI_X86_64` (`io/protocols.h`): the request layout we put on the ring.
pub const PROTOCOL_X86_64: &str = "x86_64-abi";

/// What the backend publishes about the disk and its features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// `sectors`: disk size in 512-byte units, whatever `sector_size` is.
    pub sectors: u64,
    /// `sector-size`: the logical block size in bytes, a power of two of at least 512. Requests
    /// must start and end on it.
    pub sector_size: u32,
    /// `physical-sector-size`: a multiple of `sector_size` (default: equal to it).
    pub physical_sector_size: u32,
    /// `feature-flush-cache`: `BLKIF_OP_FLUSH_DISKCACHE` is worth trying.
    pub flush_cache: bool,
    /// `feature-barrier`: `BLKIF_OP_WRITE_BARRIER` is worth trying. Reported, not used.
    pub barrier: bool,
    /// `feature-persistent`: the backend can keep grants mapped. Reported, not used: we write
    /// `feature-persistent = 0` (see [`FrontendKeys`]).
    pub persistent: bool,
    /// `feature-max-indirect-segments`: segments one `BLKIF_OP_INDIRECT` request may carry;
    /// 0 if the backend does not take indirect requests.
    pub max_indirect_segments: u32,
}

/// A backend node that is missing or does not say what `blkif.h` allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
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
            ConfigError::Missing(key) => write!(f, "backend node {key} missing"),
            ConfigError::Invalid { key, why } => write!(f, "backend node {key}: {why}"),
        }
    }
}

impl core::error::Error for ConfigError {}

impl BackendInfo {
    /// The backend nodes [`parse`](Self::parse) reads, relative to the backend's directory.
    pub const KEYS: [&'static str; 7] = [
        "sectors",
        "sector-size",
        "physical-sector-size",
        "feature-flush-cache",
        "feature-barrier",
        "feature-persistent",
        "feature-max-indirect-segments",
    ];

    /// Parses the backend's nodes; `read(key)` returns a node's value, or `None` if it does
    /// not exist. Called when the backend reaches `XenbusStateConnected`, when all of them are
    /// final.
    ///
    /// Numbers are unsigned decimal without sign, spaces or leading `+`; booleans are `0` or
    /// `1`. Optional nodes default as the header says.
    pub fn parse<S: AsRef<str>>(
        mut read: impl FnMut(&'static str) -> Option<S>,
    ) -> Result<Self, ConfigError> {
        let [
            sectors,
            sector_size,
            physical,
            flush,
            barrier,
            persistent,
            indirect,
        ] = Self::KEYS;
        let mut number = |key| -> Result<Option<u64>, ConfigError> {
            read(key)
                .map(|v| {
                    decimal(v.as_ref()).ok_or(ConfigError::Invalid {
                        key,
                        why: "not an unsigned decimal number",
                    })
                })
                .transpose()
        };
        let sectors_value = number(sectors)?.ok_or(ConfigError::Missing(sectors))?;
        let sector_size_value = number(sector_size)?.ok_or(ConfigError::Missing(sector_size))?;
        let physical_value = number(physical)?.unwrap_or(sector_size_value);
        let flush = boolean(flush, number(flush)?)?;
        let barrier = boolean(barrier, number(barrier)?)?;
        let persistent = boolean(persistent, number(persistent)?)?;
        let indirect_value = number(indirect)?.unwrap_or(0);

        let sector_size_value = u32::try_from(sector_size_value)
            .ok()
            .filter(|&s| s.is_power_of_two() && s as usize >= SECTOR_SIZE)
            .ok_or(ConfigError::Invalid {
                key: sector_size,
                why: "not a power of two of at least 512",
            })?;
        let physical_value = u32::try_from(physical_value)
            .ok()
            .filter(|&p| p != 0 && p.is_multiple_of(sector_size_value))
            .ok_or(ConfigError::Invalid {
                key: physical,
                why: "not a multiple of sector-size",
            })?;
        let bytes = sectors_value
            .checked_mul(SECTOR_SIZE as u64)
            .ok_or(ConfigError::Invalid {
                key: sectors,
                why: "disk size overflows 64 bits",
            })?;
        if !bytes.is_multiple_of(u64::from(sector_size_value)) {
            return Err(ConfigError::Invalid {
                key: sectors,
                why: "disk size not a multiple of sector-size",
            });
        }
        let max_indirect_segments =
            u32::try_from(indirect_value).map_err(|_| ConfigError::Invalid {
                key: indirect,
                why: "larger than 32 bits",
            })?;
        Ok(BackendInfo {
            sectors: sectors_value,
            sector_size: sector_size_value,
            physical_sector_size: physical_value,
            flush_cache: flush,
            barrier,
            persistent,
            max_indirect_segments,
        })
    }
}

/// A `0`/`1` node; absent is `false`.
fn boolean(key: &'static str, value: Option<u64>) -> Result<bool, ConfigError> {
    match value {
        None | Some(0) => Ok(false),
        Some(1) => Ok(true),
        Some(_) => Err(ConfigError::Invalid {
            key,
            why: "not 0 or 1",
        }),
    }
}

/// An unsigned decimal number that fits 64 bits, digits only.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// What the frontend publishes in its own directory before switching to
/// `XenbusStateInitialised`: where the ring is, how to signal it, and the ABI of its slots.
///
/// `feature-persistent` is written as `0`: we grant the caller's own buffer pages for each
/// request and end access when it completes, so the caller gets its pages back and a backend
/// never keeps a mapping of memory we reuse. A persistent-grant backend keeps its mappings
/// until disconnect, which only works with a fixed pool of bounce pages we would copy through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontendKeys {
    pub ring_ref: GrantRef,
    pub event_channel: EvtchnPort,
}

/// A frontend node's value; `Display` gives the string to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeValue {
    Number(u32),
    Text(&'static str),
}

impl fmt::Display for NodeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeValue::Number(n) => write!(f, "{n}"),
            NodeValue::Text(s) => f.write_str(s),
        }
    }
}

impl FrontendKeys {
    /// The nodes to write, relative to the frontend's directory, in one transaction.
    pub fn entries(&self) -> [(&'static str, NodeValue); 4] {
        [
            ("ring-ref", NodeValue::Number(self.ring_ref)),
            ("event-channel", NodeValue::Number(self.event_channel)),
            ("protocol", NodeValue::Text(PROTOCOL_X86_64)),
            ("feature-persistent", NodeValue::Number(0)),
        ]
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    fn parse(nodes: &[(&str, &str)]) -> Result<BackendInfo, ConfigError> {
        BackendInfo::parse(|key| nodes.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
    }

    const MINIMAL: [(&str, &str); 2] = [("sectors", "2048"), ("sector-size", "512")];

    fn with(extra: (&'static str, &'static str)) -> Result<BackendInfo, ConfigError> {
        let mut nodes: Vec<_> = MINIMAL.to_vec();
        nodes.retain(|(k, _)| *k != extra.0);
        nodes.push(extra);
        parse(&nodes)
    }

    #[test]
    fn parses_a_linux_blkback_directory() {
        let info = parse(&[
            ("sectors", "16777216"),
            ("sector-size", "512"),
            ("physical-sector-size", "4096"),
            ("feature-flush-cache", "1"),
            ("feature-barrier", "0"),
            ("feature-persistent", "1"),
            ("feature-max-indirect-segments", "256"),
            ("info", "0"),
        ])
        .unwrap();
        assert_eq!(
            info,
            BackendInfo {
                sectors: 16 << 20,
                sector_size: 512,
                physical_sector_size: 4096,
                flush_cache: true,
                barrier: false,
                persistent: true,
                max_indirect_segments: 256,
            }
        );
    }

    #[test]
    fn optional_nodes_default_as_the_header_says() {
        let info = parse(&MINIMAL).unwrap();
        assert_eq!(info.physical_sector_size, 512);
        assert!(!info.flush_cache && !info.barrier && !info.persistent);
        assert_eq!(info.max_indirect_segments, 0);
    }

    #[test]
    fn required_nodes_must_exist() {
        assert_eq!(
            parse(&[("sector-size", "512")]),
            Err(ConfigError::Missing("sectors"))
        );
        assert_eq!(
            parse(&[("sectors", "8")]),
            Err(ConfigError::Missing("sector-size"))
        );
    }

    #[test]
    fn rejects_malformed_numbers() {
        for bad in [
            "",
            "-1",
            "+5",
            " 12",
            "12 ",
            "0x10",
            "1e3",
            "18446744073709551616",
            "１",
        ] {
            assert!(
                matches!(
                    with(("sectors", bad)),
                    Err(ConfigError::Invalid { key: "sectors", .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            with(("feature-max-indirect-segments", "4294967296")),
            Err(ConfigError::Invalid {
                key: "feature-max-indirect-segments",
                ..
            })
        ));
    }

    #[test]
    fn rejects_sector_sizes_blkif_does_not_allow() {
        for bad in ["0", "256", "1000", "4294967296"] {
            assert!(
                matches!(
                    with(("sector-size", bad)),
                    Err(ConfigError::Invalid {
                        key: "sector-size",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            with(("physical-sector-size", "768")),
            Err(ConfigError::Invalid {
                key: "physical-sector-size",
                ..
            })
        ));
        assert!(matches!(
            with(("physical-sector-size", "0")),
            Err(ConfigError::Invalid {
                key: "physical-sector-size",
                ..
            })
        ));
        // 4096-byte logical sectors: the disk must be whole sectors.
        assert!(matches!(
            parse(&[("sectors", "9"), ("sector-size", "4096")]),
            Err(ConfigError::Invalid { key: "sectors", .. })
        ));
        assert_eq!(
            parse(&[("sectors", "16"), ("sector-size", "4096")])
                .unwrap()
                .sector_size,
            4096
        );
        assert!(matches!(
            with(("sectors", "36028797018963968")),
            Err(ConfigError::Invalid { key: "sectors", .. })
        ));
    }

    #[test]
    fn booleans_are_zero_or_one() {
        assert!(with(("feature-flush-cache", "1")).unwrap().flush_cache);
        assert!(!with(("feature-flush-cache", "0")).unwrap().flush_cache);
        assert!(matches!(
            with(("feature-barrier", "2")),
            Err(ConfigError::Invalid {
                key: "feature-barrier",
                ..
            })
        ));
        assert!(matches!(
            with(("feature-persistent", "yes")),
            Err(ConfigError::Invalid {
                key: "feature-persistent",
                ..
            })
        ));
    }

    #[test]
    fn reads_only_the_keys_it_lists() {
        let mut asked = Vec::new();
        let _ = BackendInfo::parse(|key| {
            asked.push(key);
            MINIMAL.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
        });
        asked.sort_unstable();
        let mut keys = BackendInfo::KEYS;
        keys.sort_unstable();
        assert_eq!(asked, keys);
    }

    #[test]
    fn frontend_nodes() {
        let keys = FrontendKeys {
            ring_ref: 8,
            event_channel: 17,
        };
        let written: Vec<_> = keys
            .entries()
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        assert_eq!(
            written,
            [
                ("ring-ref", "8".to_string()),
                ("event-channel", "17".to_string()),
                ("protocol", "x86_64-abi".to_string()),
                ("feature-persistent", "0".to_string()),
            ]
        );
    }

    #[test]
    fn errors_name_the_node() {
        assert_eq!(
            ConfigError::Missing("sectors").to_string(),
            "backend node sectors missing"
        );
        assert_eq!(
            with(("feature-barrier", "2")).unwrap_err().to_string(),
            "backend node feature-barrier: not 0 or 1"
        );
    }
}
