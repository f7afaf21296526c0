//! Xenbus, frontend side: finding a class of devices in xenstore and the state handshake with
//! their backends (`xen/include/public/io/xenbus.h`), for every frontend alike.
//!
//! The toolstack puts each device of ours under `device/<class>/<id>` (relative to our home in
//! the store) with `backend` (the backend's directory) and `backend-id` (its domain), and both
//! ends in `Initialising`. The handshake, as a frontend runs it:
//!
//! 1. wait for the backend's `InitWait`: it has published its features;
//! 2. allocate the ring and event channel, and [`publish`](Frontend::publish) them with our
//!    state `Initialised`, in one transaction;
//! 3. wait for the backend's `Connected`: it has mapped the ring and published the device's
//!    details, which the frontend reads; then [`switch`](Frontend::switch) to `Connected`.
//!
//! Everything the backend and toolstack write is untrusted: a node that does not parse is an
//! error naming the node, a backend that closes or never gets there ends the wait with an
//! error naming the state it was in.

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;
use core::time::Duration;

use ringbolt_xen_abi::DomId;
use ringbolt_xen_abi::io::xenbus::{
    XENBUS_STATE_CLOSED, XENBUS_STATE_CLOSING, XENBUS_STATE_INITIALISED, XenbusState,
};
use ringbolt_xen_xenstore::{TxId, XsError};

use super::store::{Client, text};

/// How long a backend may take to reach a state. dom0's hotplug scripts under TCG take
/// seconds; a backend that is not there after this is not coming.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a frontend could not talk to its backend.
#[derive(Debug)]
pub(crate) enum XenbusError {
    /// A store operation on `path` failed.
    Store { path: String, error: XsError },
    /// The node at `path` holds something xenbus does not allow.
    Invalid { path: String, value: String },
    /// The backend is closing or closed: it gave up on the device.
    BackendClosed { backend: String, state: XenbusState },
    /// The backend did not reach state `wanted` within [`BACKEND_TIMEOUT`]; `last` is the
    /// state it was last seen in.
    Timeout {
        backend: String,
        wanted: XenbusState,
        last: Option<XenbusState>,
    },
}

impl fmt::Display for XenbusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XenbusError::Store { path, error } => write!(f, "xenstore {path:?}: {error}"),
            XenbusError::Invalid { path, value } => {
                write!(
                    f,
                    "xenstore {path:?} holds {value:?}, which xenbus does not allow"
                )
            }
            XenbusError::BackendClosed { backend, state } => {
                write!(f, "backend {backend:?} is {} ({state})", state_name(*state))
            }
            XenbusError::Timeout {
                backend,
                wanted,
                last,
            } => {
                write!(
                    f,
                    "backend {backend:?} did not become {} within {} s; ",
                    state_name(*wanted),
                    BACKEND_TIMEOUT.as_secs()
                )?;
                match last {
                    Some(last) => write!(f, "it is {} ({last})", state_name(*last)),
                    None => f.write_str("it has no state node"),
                }
            }
        }
    }
}

/// `xenbus.h`'s name for a state.
fn state_name(state: XenbusState) -> &'static str {
    const NAMES: [&str; 9] = [
        "Unknown",
        "Initialising",
        "InitWait",
        "Initialised",
        "Connected",
        "Closing",
        "Closed",
        "Reconfiguring",
        "Reconfigured",
    ];
    NAMES.get(state as usize).copied().unwrap_or("undefined")
}

/// The ids of our devices of `class` (`vbd`, `vif`): the names under `device/<class>`.
pub(crate) async fn find(client: &Client, class: &str) -> Result<Vec<String>, XenbusError> {
    let path = format!("device/{class}");
    match client.directory(TxId::NONE, &path).await {
        Ok(ids) => Ok(ids),
        Err(XsError::NoEnt) => Ok(Vec::new()),
        Err(error) => Err(XenbusError::Store { path, error }),
    }
}

/// Our end of one device.
#[derive(Debug)]
pub(crate) struct Frontend {
    client: Rc<Client>,
    /// `device/<class>/<id>`.
    path: String,
    /// The backend's directory, absolute.
    backend: String,
    backend_id: DomId,
}

impl Frontend {
    /// Device `id` of `class`, with its backend as the toolstack recorded it.
    pub(crate) async fn open(
        client: Rc<Client>,
        class: &str,
        id: &str,
    ) -> Result<Self, XenbusError> {
        let path = format!("device/{class}/{id}");
        let backend = read(&client, &format!("{path}/backend")).await?;
        let id_path = format!("{path}/backend-id");
        let backend_id = read(&client, &id_path).await?;
        let backend_id = parse(&id_path, backend_id)?;
        Ok(Frontend {
            client,
            path,
            backend,
            backend_id,
        })
    }

    pub(crate) fn backend_id(&self) -> DomId {
        self.backend_id
    }

    /// Our node `name`, which the toolstack wrote (a vif's `mac`).
    pub(crate) async fn read_own(&self, name: &str) -> Result<String, XenbusError> {
        read(&self.client, &format!("{}/{name}", self.path)).await
    }

    /// Waits until the backend's state is `wanted`. Fails if the backend closes, or does not
    /// get there within [`BACKEND_TIMEOUT`].
    pub(crate) async fn wait_for_backend(&self, wanted: XenbusState) -> Result<(), XenbusError> {
        let path = format!("{}/state", self.backend);
        // Unique per device and state: an earlier wait's watch may not be gone yet.
        let token = format!("{}/wait-{wanted}", self.path);
        let last = Cell::new(None);
        let wait = async {
            let mut watch = self
                .client
                .watch(&path, &token)
                .await
                .map_err(|error| store_error(&path, error))?;
            loop {
                // The first event comes at once: the state is read before any change too.
                watch
                    .next_event()
                    .await
                    .map_err(|error| store_error(&path, error))?;
                let state = match self.client.read(TxId::NONE, &path).await {
                    Ok(value) => parse(&path, text(value))?,
                    Err(XsError::NoEnt) => continue,
                    Err(error) => return Err(store_error(&path, error)),
                };
                last.set(Some(state));
                if state == wanted {
                    return Ok(());
                }
                if state == XENBUS_STATE_CLOSING || state == XENBUS_STATE_CLOSED {
                    return Err(XenbusError::BackendClosed {
                        backend: self.backend.clone(),
                        state,
                    });
                }
            }
        };
        match crate::time::timeout(BACKEND_TIMEOUT, wait).await {
            Ok(result) => result,
            Err(_) => Err(XenbusError::Timeout {
                backend: self.backend.clone(),
                wanted,
                last: last.get(),
            }),
        }
    }

    /// Writes `nodes` (name and value, relative to our directory) and our state
    /// `Initialised`, all in one transaction (started again if it conflicts).
    pub(crate) async fn publish(
        &self,
        nodes: &[(&str, impl fmt::Display)],
    ) -> Result<(), XenbusError> {
        let state = format!("{}/state", self.path);
        let initialised = format!("{XENBUS_STATE_INITIALISED}");
        self.client
            .transaction(|tx| {
                let (state, initialised) = (&state, &initialised);
                async move {
                    for (name, value) in nodes {
                        let path = format!("{}/{name}", self.path);
                        let value = format!("{value}");
                        self.client.write(tx, &path, value.as_bytes()).await?;
                    }
                    self.client.write(tx, state, initialised.as_bytes()).await
                }
            })
            .await
            .map_err(|error| store_error(&self.path, error))
    }

    /// Sets our state.
    pub(crate) async fn switch(&self, state: XenbusState) -> Result<(), XenbusError> {
        let path = format!("{}/state", self.path);
        let value = format!("{state}");
        self.client
            .write(TxId::NONE, &path, value.as_bytes())
            .await
            .map_err(|error| store_error(&path, error))
    }

    /// Gives up on the device after a failed handshake: our state `Closed`, so the backend
    /// lets go of what it has.
    pub(crate) async fn abandon(&self) {
        if let Err(e) = self.switch(XENBUS_STATE_CLOSED).await {
            log::warn!("xenbus: {}: {e}", self.path);
        }
    }

    /// The backend's nodes among `names` that exist, with their values (look one up with
    /// [`node`]).
    pub(crate) async fn read_backend(
        &self,
        names: &[&'static str],
    ) -> Result<Vec<(&'static str, String)>, XenbusError> {
        let mut nodes = Vec::new();
        for &name in names {
            let path = format!("{}/{name}", self.backend);
            match self.client.read(TxId::NONE, &path).await {
                Ok(value) => nodes.push((name, text(value))),
                Err(XsError::NoEnt) => {}
                Err(error) => return Err(store_error(&path, error)),
            }
        }
        Ok(nodes)
    }
}

/// The value of node `key` among `nodes` ([`Frontend::read_backend`]'s), if it exists.
pub(crate) fn node<'a>(nodes: &'a [(&'static str, String)], key: &str) -> Option<&'a str> {
    nodes
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, value)| value.as_str())
}

async fn read(client: &Client, path: &str) -> Result<String, XenbusError> {
    client
        .read(TxId::NONE, path)
        .await
        .map(text)
        .map_err(|error| store_error(path, error))
}

fn store_error(path: &str, error: XsError) -> XenbusError {
    XenbusError::Store {
        path: path.into(),
        error,
    }
}

/// A decimal node value.
fn parse<T: core::str::FromStr>(path: &str, value: String) -> Result<T, XenbusError> {
    value.parse().map_err(|_| XenbusError::Invalid {
        path: path.into(),
        value,
    })
}
