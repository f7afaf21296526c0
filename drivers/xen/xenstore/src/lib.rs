//! The xenstore client: our end of the store ring (`xen/include/public/io/xs_wire.h`).
//!
//! Xenstore is the hierarchical key-value store through which a Xen guest learns its devices
//! (`device/vbd/768/backend`, ...), negotiates with backends and is told to shut down. The
//! guest reaches xenstored through one shared page holding two 1 KiB byte rings (`req` to the
//! server, `rsp` back) and an event channel; the page and the channel come from `start_info`
//! (PV) or `HVM_PARAM_STORE_PFN` / `_EVTCHN` (PVH). The kernel maps the page, hands it over
//! as a [`SharedMemory`](ringbolt_shmem::SharedMemory) and implements [`Notify`] with
//! `EVTCHNOP_send`; this crate does the rest.
//!
//! # Layers
//!
//! - **The ring** (private `ring` module) moves bytes: free-running `u32` indices masked by the
//!   ring size, our data published before our index behind a write barrier, the server's index
//!   read once per call and validated (`prod - cons` never more than a ring) before any byte is
//!   copied. It knows nothing of messages.
//! - **The protocol core** (private `protocol` and `wire` modules) is sans-I/O: it turns requests
//!   into header-plus-payload bytes for the ring, reassembles replies from whatever the ring
//!   gave it (a message may span several trips round the 1 KiB ring, up to 16 + 4096 bytes),
//!   matches replies to requests by `req_id` (many may be in flight, completed in any order),
//!   and routes `XS_WATCH_EVENT`s to watches by token.
//! - **The async front**, [`Xenstore`], owns both behind a `RefCell` (one CPU, and none of this
//!   runs in interrupt context) and gives each operation as a future. It depends on no executor:
//!   the kernel calls [`Xenstore::process`] when the store's event channel fires (and may on
//!   every executor poll), which moves bytes both ways and wakes the futures whose replies
//!   arrived.
//!
//! # A server we do not trust
//!
//! xenstored runs in another domain. Nothing it writes may panic us, make us read or write
//! outside the page, or allocate without bound. What it can get wrong falls in two classes:
//!
//! - **The message stream is still framed**: a reply to a `req_id` not in flight, an event for a
//!   token we never registered, a malformed payload (no NUL, not UTF-8, wrong reply type). The
//!   message is dropped with a log record, or fails only its own request with
//!   [`XsError::Malformed`]; the connection carries on.
//! - **Framing is lost**: an index more than a ring away from ours, a header whose `len` exceeds
//!   `XENSTORE_PAYLOAD_MAX`, the server's own `error` field set. We can no longer tell where
//!   the next message starts, so the connection is **broken** for good: every request in flight
//!   and every later one fails with [`XsError::Broken`], every watch reports it after its queued
//!   events, and the page is never touched again. Recovering is the kernel's decision (the ring
//!   reconnection feature, or giving up on xenstore); it sees the cause in
//!   [`Xenstore::broken`].
//!
//! A `len` that overstates a payload by up to `XENSTORE_PAYLOAD_MAX` cannot be told from a slow
//! server: we wait, and the next message's bytes complete the liar's payload. The damage stays
//! bounded: that request gets a garbled reply (a typed error when the payload does not parse),
//! the request whose reply was swallowed stays pending until its caller's timeout, and the
//! misframed tail is caught as one of the cases above.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod client;
mod protocol;
mod ring;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
#[cfg(test)]
mod tests;
mod wire;

use alloc::string::String;
use core::fmt;

use ringbolt_shmem::OutOfBounds;
use ringbolt_xen_abi::DomId;

pub use crate::client::{TRANSACTION_ATTEMPTS, Watch, Xenstore};

/// How the client tells xenstored that the ring changed: the kernel sends an event on the
/// store's event channel (`EVTCHNOP_send`). Any `Fn()` is one, which suits tests.
pub trait Notify {
    fn notify(&self);
}

impl<F: Fn()> Notify for F {
    fn notify(&self) {
        self()
    }
}

/// A transaction, as xenstored numbered it; [`TxId::NONE`] outside any transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxId(pub(crate) u32);

impl TxId {
    /// Not in a transaction: the operation applies to the store directly.
    pub const NONE: TxId = TxId(0);

    /// The id on the wire (the header's `tx_id`).
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A watch firing: `path` changed (was written, created, removed, or its permissions
/// changed), or the watch was just registered (then `path` is the watched path itself).
/// Watches may fire spuriously; the event says only "look again".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The changed path, relative if the watch was registered with a relative path.
    pub path: String,
}

/// One entry of a node's permissions (`GET_PERMS`): the first names the owner, who always has
/// full access, and its flags apply to every domain without an entry of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permission {
    pub domid: DomId,
    pub read: bool,
    pub write: bool,
}

/// Why a xenstore operation failed.
///
/// The variants from `Inval` to `Perm` are the errno names of `xsd_errors` that xenstored
/// sends in an `XS_ERROR` reply. `Inval` and `TooBig` are also what the client itself answers,
/// without sending anything, for a path or token containing NUL and for a request over
/// `XENSTORE_PAYLOAD_MAX` (which xenstored would punish by dropping the connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XsError {
    /// `EINVAL`: a malformed path or request.
    Inval,
    /// `EACCES`: the node's permissions deny us.
    Access,
    /// `EEXIST`: e.g. a watch with this path and token exists.
    Exist,
    /// `EISDIR`.
    IsDir,
    /// `ENOENT`: no such node (or transaction, or watch).
    NoEnt,
    /// `ENOMEM`.
    NoMem,
    /// `ENOSPC`: a quota is exhausted.
    NoSpc,
    /// `EIO`.
    Io,
    /// `ENOTEMPTY`.
    NotEmpty,
    /// `ENOSYS`: the server does not implement the request type.
    NoSys,
    /// `EROFS`.
    RoFs,
    /// `EBUSY`.
    Busy,
    /// `EAGAIN`: the transaction conflicted with another change; start it again.
    Again,
    /// `EISCONN`.
    IsConn,
    /// `E2BIG`: a request or reply over the payload limit.
    TooBig,
    /// `EPERM`.
    Perm,
    /// An `XS_ERROR` naming an errno outside the table (a newer server's).
    Other(String),
    /// The reply to this request does not parse; the connection is fine.
    Malformed(Malformed),
    /// The connection is unusable; see the crate documentation.
    Broken(Broken),
}

impl XsError {
    /// The error for an `XS_ERROR` reply's errno name (`"ENOENT"`).
    pub fn from_name(name: &str) -> XsError {
        match name {
            "EINVAL" => XsError::Inval,
            "EACCES" => XsError::Access,
            "EEXIST" => XsError::Exist,
            "EISDIR" => XsError::IsDir,
            "ENOENT" => XsError::NoEnt,
            "ENOMEM" => XsError::NoMem,
            "ENOSPC" => XsError::NoSpc,
            "EIO" => XsError::Io,
            "ENOTEMPTY" => XsError::NotEmpty,
            "ENOSYS" => XsError::NoSys,
            "EROFS" => XsError::RoFs,
            "EBUSY" => XsError::Busy,
            "EAGAIN" => XsError::Again,
            "EISCONN" => XsError::IsConn,
            "E2BIG" => XsError::TooBig,
            "EPERM" => XsError::Perm,
            other => XsError::Other(String::from(other)),
        }
    }

    /// The errno name xenstored would send for this error, if it is one of its errors.
    pub fn name(&self) -> Option<&str> {
        Some(match self {
            XsError::Inval => "EINVAL",
            XsError::Access => "EACCES",
            XsError::Exist => "EEXIST",
            XsError::IsDir => "EISDIR",
            XsError::NoEnt => "ENOENT",
            XsError::NoMem => "ENOMEM",
            XsError::NoSpc => "ENOSPC",
            XsError::Io => "EIO",
            XsError::NotEmpty => "ENOTEMPTY",
            XsError::NoSys => "ENOSYS",
            XsError::RoFs => "EROFS",
            XsError::Busy => "EBUSY",
            XsError::Again => "EAGAIN",
            XsError::IsConn => "EISCONN",
            XsError::TooBig => "E2BIG",
            XsError::Perm => "EPERM",
            XsError::Other(name) => name,
            XsError::Malformed(_) | XsError::Broken(_) => return None,
        })
    }
}

impl From<Broken> for XsError {
    fn from(b: Broken) -> Self {
        XsError::Broken(b)
    }
}

impl From<Malformed> for XsError {
    fn from(m: Malformed) -> Self {
        XsError::Malformed(m)
    }
}

impl fmt::Display for XsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XsError::Malformed(m) => write!(f, "xenstore reply malformed: {m}"),
            XsError::Broken(b) => write!(f, "xenstore connection broken: {b}"),
            // The server chose these bytes: no control characters into the log.
            XsError::Other(name) => write!(f, "xenstore error {}", name.escape_debug()),
            other => write!(f, "xenstore error {}", other.name().unwrap_or("?")),
        }
    }
}

impl core::error::Error for XsError {}

/// What is wrong with a reply that failed only its own request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// A string field is not NUL-terminated.
    MissingNul,
    /// A field that must be text is not UTF-8.
    NotUtf8,
    /// The reply's type is neither the request's nor `XS_ERROR`.
    UnexpectedType { expected: u32, found: u32 },
    /// An acknowledgement other than `OK`.
    NotOk,
    /// A transaction id that is not a non-zero decimal `u32`.
    BadTxId,
    /// A permission that is not `[nrwb]<domid>`.
    BadPermission,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::MissingNul => f.write_str("string not NUL-terminated"),
            Malformed::NotUtf8 => f.write_str("text not UTF-8"),
            Malformed::UnexpectedType { expected, found } => {
                write!(f, "reply of type {found} to a request of type {expected}")
            }
            Malformed::NotOk => f.write_str("acknowledgement is not OK"),
            Malformed::BadTxId => f.write_str("transaction id is not a non-zero decimal u32"),
            Malformed::BadPermission => f.write_str("permission is not [nrwb]<domid>"),
        }
    }
}

/// Why the connection to xenstored is unusable (see the crate documentation for the policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// xenstored's `req_cons` is more than a ring behind our `req_prod` (or ahead of it).
    RequestRing { cons: u32, prod: u32 },
    /// xenstored's `rsp_prod` is more than a ring ahead of our `rsp_cons` (or behind it).
    ResponseRing { cons: u32, prod: u32 },
    /// A message header claims more than `XENSTORE_PAYLOAD_MAX` payload bytes.
    PayloadTooLong { len: u32 },
    /// xenstored set the page's `error` field (`XENSTORE_ERROR_*`) and stopped serving us.
    ServerError(u32),
    /// At takeover, xenstored was resetting the ring (`connection` is `XENSTORE_RECONNECT`):
    /// build the client again once it reads `XENSTORE_CONNECTED`.
    Reconnecting,
    /// The page is smaller than a `xenstore_domain_interface`.
    OutOfBounds(OutOfBounds),
}

impl From<OutOfBounds> for Broken {
    fn from(e: OutOfBounds) -> Self {
        Broken::OutOfBounds(e)
    }
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Broken::RequestRing { cons, prod } => write!(
                f,
                "request ring indices corrupt (req_cons {cons:#x}, req_prod {prod:#x})"
            ),
            Broken::ResponseRing { cons, prod } => write!(
                f,
                "response ring indices corrupt (rsp_cons {cons:#x}, rsp_prod {prod:#x})"
            ),
            Broken::PayloadTooLong { len } => {
                write!(f, "message header claims {len} payload bytes")
            }
            Broken::ServerError(code) => write!(f, "xenstored reports error {code}"),
            Broken::Reconnecting => f.write_str("ring reconnection in progress"),
            Broken::OutOfBounds(e) => write!(f, "store page: {e}"),
        }
    }
}
