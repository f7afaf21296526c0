//! Key-value pair exchange (`HV_KVP_GUID`, a9a0f4e7-5a45-4d96-b827-8a841e8c03e6).
//!
//! The host reads and writes string (or integer) values by key in five pools. Linux forwards
//! each request to a user-space daemon that keeps the pools in files; here the pools live in
//! memory and the driver answers at once:
//!
//! | pool | what | who writes it |
//! |---|---|---|
//! | 0 `External` | data the host pushes to the guest | host |
//! | 1 `Guest` | data the guest publishes to the host | kernel (and host) |
//! | 2 `Auto` | the guest's intrinsic data: OS name and version, FQDN, addresses ([`intrinsic`]) | kernel only |
//! | 3 `AutoExternal` | the host's intrinsic data (host name, VM name) | host |
//! | 4 `AutoInternal` | unused by Hyper-V | host |
//!
//! Operations: GET (HV_S_OK with the value, HV_S_CONT if the key is absent), SET and DELETE
//! (HV_S_OK, or HV_S_CONT for a key absent from DELETE; [`Action::KvpChanged`] tells the
//! kernel), ENUMERATE (the pool's `index`th entry in insertion order, HV_S_CONT past the end),
//! and GET_IP_INFO / SET_IP_INFO ([`ip`]). The host's status codes are Linux's daemon's.
//!
//! Every size and string is checked ([`wire`]): a malformed request, an unknown operation or a
//! pool past 4 is answered HV_E_FAIL. A pool holds at most [`POOL_CAPACITY`] keys, so a host
//! cannot make the guest allocate without bound.

pub mod ip;
pub mod wire;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use log::{debug, info};

pub use self::ip::{Adapter, Address, IpSettings};
pub use self::wire::Value;
use self::wire::{DELETE_KEY, ENUMERATE_INDEX, Exchange, op};
use crate::error::{Error, Field, KvpError};
use crate::icmsg::{MessageType, Status, Version};
use crate::service::{Action, Service};
use crate::wire::Reader;

/// The most keys a pool holds.
pub const POOL_CAPACITY: usize = 64;

/// A KVP pool (`enum hv_kvp_exchg_pool`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pool {
    External = 0,
    Guest = 1,
    Auto = 2,
    AutoExternal = 3,
    AutoInternal = 4,
}

impl Pool {
    pub const ALL: [Pool; 5] = [
        Pool::External,
        Pool::Guest,
        Pool::Auto,
        Pool::AutoExternal,
        Pool::AutoInternal,
    ];

    /// The pool numbered `index` on the wire.
    pub fn from_index(index: u8) -> Option<Pool> {
        Pool::ALL.get(usize::from(index)).copied()
    }
}

/// The keys of the guest's intrinsic data in [`Pool::Auto`], in the order Linux's daemon
/// enumerates them. The kernel sets the ones it knows.
pub mod intrinsic {
    pub const FULLY_QUALIFIED_DOMAIN_NAME: &str = "FullyQualifiedDomainName";
    pub const INTEGRATION_SERVICES_VERSION: &str = "IntegrationServicesVersion";
    /// `;`-separated.
    pub const NETWORK_ADDRESS_IPV4: &str = "NetworkAddressIPv4";
    /// `;`-separated.
    pub const NETWORK_ADDRESS_IPV6: &str = "NetworkAddressIPv6";
    pub const OS_BUILD_NUMBER: &str = "OSBuildNumber";
    pub const OS_NAME: &str = "OSName";
    pub const OS_MAJOR_VERSION: &str = "OSMajorVersion";
    pub const OS_MINOR_VERSION: &str = "OSMinorVersion";
    pub const OS_VERSION: &str = "OSVersion";
    pub const PROCESSOR_ARCHITECTURE: &str = "ProcessorArchitecture";
}

/// The KVP service and its pools; see the module documentation.
#[derive(Debug, Default)]
pub struct Kvp {
    pools: [Vec<(String, Value)>; 5],
    adapters: Vec<Adapter>,
    ip_injection: bool,
}

impl Kvp {
    /// Empty pools, no adapters, IP injection refused.
    pub fn new() -> Self {
        Kvp::default()
    }

    /// Adds `key` to `pool` or replaces its value. The key must fit the wire's key field (255
    /// UTF-16 units) and a string value its value field (1023), neither holding a NUL.
    pub fn set(&mut self, pool: Pool, key: &str, value: Value) -> Result<(), KvpError> {
        wire::check(key, wire::KEY_SIZE, Field::Key)?;
        value.check()?;
        self.insert(pool, String::from(key), value)
    }

    pub fn get(&self, pool: Pool, key: &str) -> Option<&Value> {
        self.entries(pool).find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn remove(&mut self, pool: Pool, key: &str) -> Option<Value> {
        let entries = &mut self.pools[pool as usize];
        let at = entries.iter().position(|(k, _)| k == key)?;
        Some(entries.remove(at).1)
    }

    /// The pool's entries in insertion order, the order ENUMERATE reports them in.
    pub fn entries(&self, pool: Pool) -> impl Iterator<Item = (&str, &Value)> {
        self.pools[pool as usize]
            .iter()
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The adapters GET_IP_INFO reports on.
    pub fn set_adapters(&mut self, adapters: Vec<Adapter>) {
        self.adapters = adapters;
    }

    /// Whether SET_IP_INFO is accepted (and becomes [`Action::SetIpInfo`]) or refused with
    /// `HV_ERROR_NOT_SUPPORTED`. Refused unless the kernel can apply a configuration.
    pub fn accept_ip_injection(&mut self, accept: bool) {
        self.ip_injection = accept;
    }

    fn insert(&mut self, pool: Pool, key: String, value: Value) -> Result<(), KvpError> {
        let entries = &mut self.pools[pool as usize];
        if let Some(entry) = entries.iter_mut().find(|(k, _)| *k == key) {
            entry.1 = value;
        } else if entries.len() < POOL_CAPACITY {
            entries.push((key, value));
        } else {
            return Err(KvpError::PoolFull(pool));
        }
        Ok(())
    }

    /// A pool the host may write.
    fn writable(pool: Pool) -> Result<Pool, KvpError> {
        match pool {
            Pool::Auto => Err(KvpError::ReadOnlyPool(pool)),
            other => Ok(other),
        }
    }
}

/// The pool a request names.
fn pool(r: &Reader<'_>) -> Result<Pool, Error> {
    let index = r.u8(1)?;
    Ok(Pool::from_index(index).ok_or(KvpError::BadPool(index))?)
}

impl Service for Kvp {
    const NAME: &'static str = "KVP";
    const MESSAGE_TYPE: MessageType = MessageType::KVP_EXCHANGE;
    /// Linux's `kvp_versions`: Windows 8, 7 and Server 2008.
    const VERSIONS: &'static [Version] =
        &[Version::new(4, 0), Version::new(3, 0), Version::new(1, 0)];

    fn handle(
        &mut self,
        _version: Version,
        payload: &mut [u8],
    ) -> Result<(Status, Option<Action>), Error> {
        let r = Reader::new(payload);
        let operation = r.u8(0)?;
        match operation {
            op::GET => {
                r.require(wire::GET_SET_SIZE)?;
                let pool = pool(&r)?;
                let key = Exchange::GET_SET.read_key(payload)?;
                let Some(value) = self.get(pool, &key) else {
                    debug!("KVP IC: GET {pool:?} {key:?}: absent");
                    return Ok((Status::CONT, None));
                };
                Exchange::GET_SET.write_value(payload, value)?;
                Ok((Status::OK, None))
            }
            op::SET => {
                r.require(wire::GET_SET_SIZE)?;
                let pool = Kvp::writable(pool(&r)?)?;
                let key = Exchange::GET_SET.read_key(payload)?;
                let value = Exchange::GET_SET.read_value(payload)?;
                info!("KVP IC: host sets {pool:?} {key:?} = {value:?}");
                self.insert(pool, key, value)?;
                Ok((Status::OK, Some(Action::KvpChanged { pool })))
            }
            op::DELETE => {
                r.require(wire::DELETE_SIZE)?;
                let pool = Kvp::writable(pool(&r)?)?;
                let (size_at, key_at) = DELETE_KEY;
                let key = wire::read_string(payload, size_at, key_at, wire::KEY_SIZE, Field::Key)?;
                if self.remove(pool, &key).is_none() {
                    return Ok((Status::CONT, None));
                }
                info!("KVP IC: host deletes {pool:?} {key:?}");
                Ok((Status::OK, Some(Action::KvpChanged { pool })))
            }
            op::ENUMERATE => {
                r.require(wire::ENUMERATE_SIZE)?;
                let pool = pool(&r)?;
                let index = r.u32(ENUMERATE_INDEX)?;
                let entry = usize::try_from(index)
                    .ok()
                    .and_then(|i| self.pools[pool as usize].get(i));
                let Some((key, value)) = entry else {
                    return Ok((Status::CONT, None));
                };
                let exchange = Exchange::ENUMERATE;
                exchange.clear(payload);
                exchange.write_key(payload, key)?;
                exchange.write_value(payload, value)?;
                Ok((Status::OK, None))
            }
            op::GET_IP_INFO => {
                r.require(ip::IP_MESSAGE_SIZE)?;
                let id = IpSettings::read_adapter_id(payload)?;
                let adapter = ip::parse_mac(&id)
                    .and_then(|mac| self.adapters.iter().find(|a| a.mac == mac))
                    .ok_or(KvpError::UnknownAdapter)?;
                adapter.settings(id).write(payload)?;
                Ok((Status::OK, None))
            }
            op::SET_IP_INFO => {
                let settings = IpSettings::read(payload)?;
                if !self.ip_injection {
                    return Err(KvpError::IpInjectionRefused.into());
                }
                info!("KVP IC: host configures {settings:?}");
                Ok((Status::OK, Some(Action::SetIpInfo(Box::new(settings)))))
            }
            other => Err(KvpError::UnknownOperation(other).into()),
        }
    }
}
