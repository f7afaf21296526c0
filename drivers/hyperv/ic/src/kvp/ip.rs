//! GET_IP_INFO and SET_IP_INFO: an adapter's IP configuration (`struct hv_kvp_ip_msg`).
//!
//! These two operations do not use `hv_kvp_msg`'s layout: after the operation and pool bytes
//! comes `hv_kvp_ipaddr_value` directly, all UTF-16LE strings with a terminating NUL in fixed
//! fields, lists separated by `;`:
//!
//! ```text
//!    0 operation  1 pool  2 adapter_id[128 u16]  258 addr_family (u8)  259 dhcp_enabled (u8)
//!  260 ip_addr[1024 u16]  2308 sub_net[1024 u16]  4356 gate_way[512 u16]
//! 5380 dns_addr[1024 u16]                                                      (7428 bytes)
//! ```
//!
//! For GET_IP_INFO the host names the adapter by its MAC address (`00:15:5D:...`) and the
//! guest fills in the rest the way Linux's KVP daemon does: addresses, then one subnet per
//! address (an IPv4 netmask, or `/prefix` for IPv6), gateways, DNS servers, and the families
//! present. For SET_IP_INFO (failover IP injection) the host names the adapter by its VMBus
//! instance GUID and supplies everything.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};

use crate::error::{Error, Field};
use crate::kvp::wire::{decode, encode, field_mut};
use crate::wire::{Reader, put};

/// Bytes of a GET_IP_INFO or SET_IP_INFO message.
pub const IP_MESSAGE_SIZE: usize = 2 + 256 + 2 + 2048 + 2048 + 1024 + 2048;

/// The string fields: which, where, and how many bytes.
type StringField = (Field, usize, usize);
const ADAPTER_ID: StringField = (Field::AdapterId, 2, 256);
const ADDRESSES: StringField = (Field::Addresses, 260, 2048);
const SUBNETS: StringField = (Field::Subnets, 2308, 2048);
const GATEWAYS: StringField = (Field::Gateways, 4356, 1024);
const DNS_SERVERS: StringField = (Field::DnsServers, 5380, 2048);
const ADDRESS_FAMILY: usize = 258;
const DHCP_ENABLED: usize = 259;

/// `addr_family` bits (Linux's `ADDR_FAMILY_*`).
pub mod address_family {
    pub const NONE: u8 = 0;
    pub const IPV4: u8 = 1;
    pub const IPV6: u8 = 2;
}

/// An adapter's IP configuration as the wire carries it: strings, lists separated by `;`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpSettings {
    /// A MAC address (GET_IP_INFO) or a VMBus instance GUID (SET_IP_INFO).
    pub adapter_id: String,
    /// [`address_family`] bits.
    pub address_family: u8,
    pub dhcp_enabled: bool,
    pub addresses: String,
    /// One per address: an IPv4 netmask (`255.255.255.0`) or an IPv6 prefix (`/64`).
    pub subnets: String,
    pub gateways: String,
    pub dns_servers: String,
}

impl IpSettings {
    fn strings(&self) -> [(&str, StringField); 5] {
        [
            (&self.adapter_id, ADAPTER_ID),
            (&self.addresses, ADDRESSES),
            (&self.subnets, SUBNETS),
            (&self.gateways, GATEWAYS),
            (&self.dns_servers, DNS_SERVERS),
        ]
    }

    /// Reads a whole message's settings; every string must be terminated within its field.
    pub fn read(payload: &[u8]) -> Result<IpSettings, Error> {
        let r = Reader::new(payload);
        r.require(IP_MESSAGE_SIZE)?;
        let string = |(field, at, len): StringField| -> Result<String, Error> {
            // The size of a fixed field is the field.
            Ok(decode(r.slice(at, len)?, len as u32, field)?)
        };
        Ok(IpSettings {
            adapter_id: string(ADAPTER_ID)?,
            address_family: r.u8(ADDRESS_FAMILY)?,
            dhcp_enabled: r.u8(DHCP_ENABLED)? != 0,
            addresses: string(ADDRESSES)?,
            subnets: string(SUBNETS)?,
            gateways: string(GATEWAYS)?,
            dns_servers: string(DNS_SERVERS)?,
        })
    }

    /// The adapter id of a message, the only field GET_IP_INFO reads.
    pub(crate) fn read_adapter_id(payload: &[u8]) -> Result<String, Error> {
        let (field, at, len) = ADAPTER_ID;
        Ok(decode(
            Reader::new(payload).slice(at, len)?,
            len as u32,
            field,
        )?)
    }

    /// Writes the settings into a message (operation and pool untouched).
    pub fn write(&self, payload: &mut [u8]) -> Result<(), Error> {
        Reader::new(payload).require(IP_MESSAGE_SIZE)?;
        for (s, (field, at, len)) in self.strings() {
            encode(s, field_mut(payload, at, len)?, field)?;
        }
        put(payload, ADDRESS_FAMILY, &[self.address_family]);
        put(payload, DHCP_ENABLED, &[u8::from(self.dhcp_enabled)]);
        Ok(())
    }
}

/// An address and its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address {
    pub ip: IpAddr,
    pub prefix_len: u8,
}

/// A network adapter as the kernel describes it for GET_IP_INFO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adapter {
    pub mac: [u8; 6],
    pub dhcp_enabled: bool,
    pub addresses: Vec<Address>,
    pub gateways: Vec<IpAddr>,
    pub dns_servers: Vec<IpAddr>,
}

impl Adapter {
    /// The adapter as GET_IP_INFO reports it. Entries that do not fit their fields are left
    /// out, as Linux's daemon stops adding them (an address goes with its subnet or not at
    /// all).
    pub(crate) fn settings(&self, adapter_id: String) -> IpSettings {
        let mut s = IpSettings {
            adapter_id,
            dhcp_enabled: self.dhcp_enabled,
            ..IpSettings::default()
        };
        for a in &self.addresses {
            let (ip, subnet) = (a.ip.to_string(), subnet(a));
            if fits(&s.addresses, &ip, ADDRESSES) && fits(&s.subnets, &subnet, SUBNETS) {
                push(&mut s.addresses, &ip);
                push(&mut s.subnets, &subnet);
                s.address_family |= match a.ip {
                    IpAddr::V4(_) => address_family::IPV4,
                    IpAddr::V6(_) => address_family::IPV6,
                };
            }
        }
        for (list, ips, field) in [
            (&mut s.gateways, &self.gateways, GATEWAYS),
            (&mut s.dns_servers, &self.dns_servers, DNS_SERVERS),
        ] {
            for ip in ips.iter().map(IpAddr::to_string) {
                if fits(list, &ip, field) {
                    push(list, &ip);
                }
            }
        }
        s
    }
}

/// How Linux's daemon writes an address's subnet: the netmask for IPv4, `/prefix` for IPv6.
fn subnet(a: &Address) -> String {
    match a.ip {
        IpAddr::V4(_) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(a.prefix_len.min(32)))
                .unwrap_or(0);
            Ipv4Addr::from(mask).to_string()
        }
        IpAddr::V6(_) => format!("/{}", a.prefix_len.min(128)),
    }
}

/// Whether `list` with `item` appended still fits `field` with its NUL.
fn fits(list: &str, item: &str, (_, _, len): StringField) -> bool {
    let separator = usize::from(!list.is_empty());
    let units = list.encode_utf16().count() + separator + item.encode_utf16().count();
    (units + 1) * 2 <= len
}

fn push(list: &mut String, item: &str) {
    if !list.is_empty() {
        list.push(';');
    }
    list.push_str(item);
}

/// The MAC address in a GET_IP_INFO adapter id: six hex pairs separated by `:` or `-`, in
/// either case.
pub(crate) fn parse_mac(id: &str) -> Option<[u8; 6]> {
    let mut mac = [0; 6];
    let mut parts = id.split([':', '-']);
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv6Addr;

    #[test]
    fn parses_mac_addresses_in_either_case_and_separator() {
        let mac = Some([0x00, 0x15, 0x5d, 0xab, 0x0c, 0xef]);
        assert_eq!(parse_mac("00:15:5D:AB:0C:EF"), mac);
        assert_eq!(parse_mac("00-15-5d-ab-0c-ef"), mac);
        for bad in [
            "",
            "00:15:5D:AB:0C",
            "00:15:5D:AB:0C:EF:01",
            "0:15:5D:AB:0C:EF",
            "zz:15:5D:AB:0C:EF",
            "+1:15:5D:AB:0C:EF",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn writes_subnets_like_the_linux_daemon() {
        let v4 = |prefix_len| Address {
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 4)),
            prefix_len,
        };
        assert_eq!(subnet(&v4(24)), "255.255.255.0");
        assert_eq!(subnet(&v4(0)), "0.0.0.0");
        assert_eq!(subnet(&v4(32)), "255.255.255.255");
        assert_eq!(subnet(&v4(99)), "255.255.255.255");
        let v6 = Address {
            ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
            prefix_len: 64,
        };
        assert_eq!(subnet(&v6), "/64");
    }

    #[test]
    fn leaves_out_what_does_not_fit() {
        // 200 IPv6 addresses of up to 39 characters cannot all fit 1023 units.
        let addresses = (0..200u16)
            .map(|i| Address {
                ip: IpAddr::V6(Ipv6Addr::new(0xfd00, i, i, i, i, i, i, 0xffff)),
                prefix_len: 64,
            })
            .collect();
        let adapter = Adapter {
            mac: [0; 6],
            dhcp_enabled: true,
            addresses,
            gateways: alloc::vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)); 100],
            dns_servers: Vec::new(),
        };
        let s = adapter.settings("id".into());
        let count = s.addresses.split(';').count();
        assert!(count > 10 && count < 200, "{count}");
        assert_eq!(s.subnets.split(';').count(), count);
        assert!(s.addresses.len() < 1024 && s.gateways.len() < 512);
        assert_eq!(s.address_family, address_family::IPV6);
        let mut payload = alloc::vec![0; IP_MESSAGE_SIZE];
        s.write(&mut payload).unwrap();
        assert_eq!(IpSettings::read(&payload).unwrap(), s);
    }
}
