//! An in-memory xenstored on the other side of a `FakeSharedMemory` store page, for tests.
//!
//! [`Xenstore`] plays the server through the fake's peer accesses: it consumes requests from
//! `req`, keeps a tree of nodes with values and permissions, answers on `rsp`, fires watches
//! (once on registration, then on writes and removals at or under the watched path) and runs
//! transactions on private copies of the tree, failing a commit with `EAGAIN` if anything
//! else was committed since the transaction started (xenstored's original, coarsest, rule).
//! It does not enforce permissions.
//!
//! Tests step it with [`Xenstore::run`], in turn with the client's `process`; nothing happens
//! on its own. Knobs make the awkward cases easy to reach: [`Xenstore::set_chunk`] limits the
//! bytes moved per run in each direction (so messages arrive in pieces, and a stalled server
//! fills the request ring), [`Xenstore::set_reversed`] answers each run's requests in reverse
//! order. A hostile mode breaks the protocol on request: [`Xenstore::misbehave`] and
//! [`Xenstore::bad_reply`].
//!
//! The client is trusted here: a request ring index or payload length it gets wrong is a bug
//! in the client under test, and the simulator panics on it.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use ringbolt_shmem::fake::FakeSharedMemory;
use ringbolt_xen_abi::DomId;
use ringbolt_xen_abi::io::xs_wire::{
    XENSTORE_ABS_PATH_MAX, XENSTORE_PAYLOAD_MAX, XENSTORE_RING_SIZE, XENSTORE_SERVER_FEATURE_ERROR,
    XS_DIRECTORY, XS_ERROR, XS_GET_PERMS, XS_MKDIR, XS_READ, XS_RM, XS_TRANSACTION_END,
    XS_TRANSACTION_START, XS_UNWATCH, XS_WATCH, XS_WATCH_EVENT, XS_WRITE,
    xenstore_domain_interface as xdi,
};

use crate::Permission;
use crate::wire::{HEADER, Header};

/// The guest's domain id; its home, which relative paths start from, is `/local/domain/1`.
pub const DOMID: DomId = 1;

/// A protocol violation the server commits straight away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// At the end of the next [`Xenstore::run`], `rsp_prod` jumps to a ring and one byte past
    /// the client's `rsp_cons`.
    JumpProducer,
    /// These bytes join the reply stream (after any replies already queued).
    Garbage(Vec<u8>),
    /// A well-formed `XS_READ` reply to `req_id` 0xdead_beef, which no client sent.
    UnknownReqId,
    /// A well-formed watch event for the token `no-such-token`.
    UnknownToken,
    /// The page's `error` field is set to this (the server advertises the feature).
    ServerError(u32),
}

/// A way to spoil the reply to the next request. The request itself is carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadReply {
    /// The header claims `XENSTORE_PAYLOAD_MAX + 1` bytes; no payload follows.
    OversizedLen,
    /// The header claims `extra` bytes more than the payload that follows.
    ShortPayload { extra: u32 },
    /// This payload replaces the real one (type and length stay consistent).
    Payload(Vec<u8>),
    /// The reply has this type instead of the request's.
    Type(u32),
    /// The reply is `XS_ERROR` with this payload.
    Error(Vec<u8>),
}

#[derive(Clone, Debug)]
struct Node {
    value: Vec<u8>,
    perms: Vec<Permission>,
}

type Tree = BTreeMap<String, Node>;

/// A change that fires watches: written (or created) at, or removed at and under, a path.
#[derive(Clone, Debug)]
enum Change {
    Write(String),
    Rm(String),
}

#[derive(Debug)]
struct Transaction {
    tree: Tree,
    /// The store's generation when the transaction started.
    generation: u64,
    changes: Vec<Change>,
}

#[derive(Debug)]
struct SimWatch {
    /// As the client gave it: events for a relative watch carry relative paths.
    path: String,
    token: String,
    /// The absolute path it covers; `None` for the special `@...` watches, which fire only on
    /// domain introduction and release (never, here).
    abs: Option<String>,
}

/// Result of one request: the reply payload, or an errno name.
type Outcome = Result<Vec<u8>, &'static str>;

/// The simulated xenstored; see the module documentation.
#[derive(Debug)]
pub struct Xenstore<'a> {
    page: &'a FakeSharedMemory,
    /// Our consumer index on `req` and producer index on `rsp`.
    req_cons: u32,
    rsp_prod: u32,
    /// Request bytes not yet a whole message.
    input: Vec<u8>,
    /// Reply bytes not yet on the ring.
    output: VecDeque<u8>,
    nodes: Tree,
    /// Bumped by every change to `nodes`; transactions compare it at commit.
    generation: u64,
    watches: Vec<SimWatch>,
    transactions: BTreeMap<u32, Transaction>,
    next_tx: u32,
    chunk: usize,
    reversed: bool,
    bad_replies: VecDeque<BadReply>,
    jump_producer: bool,
    requests: usize,
}

impl<'a> Xenstore<'a> {
    /// A server for `page`, continuing from the indices on it, advertising the `error` field,
    /// with a tree holding `/local/domain/1` (`domid` and `name` under it).
    pub fn new(page: &'a FakeSharedMemory) -> Self {
        page.peer_write_u32(xdi::SERVER_FEATURES, XENSTORE_SERVER_FEATURE_ERROR);
        let home = home();
        let mut nodes = Tree::new();
        let dom0_only = [perm('n', 0)];
        for path in ["/", "/local", "/local/domain"] {
            nodes.insert(path.into(), node(b"", &dom0_only));
        }
        nodes.insert(home.clone(), node(b"", &[perm('n', 0), perm('r', DOMID)]));
        let guest = [perm('n', DOMID)];
        nodes.insert(format!("{home}/domid"), node(b"1", &guest));
        nodes.insert(format!("{home}/name"), node(b"guest", &guest));
        Xenstore {
            page,
            req_cons: page.peer_read_u32(xdi::REQ_CONS),
            rsp_prod: page.peer_read_u32(xdi::RSP_PROD),
            input: Vec::new(),
            output: VecDeque::new(),
            nodes,
            generation: 0,
            watches: Vec::new(),
            transactions: BTreeMap::new(),
            next_tx: 1,
            chunk: usize::MAX,
            reversed: false,
            bad_replies: VecDeque::new(),
            jump_producer: false,
            requests: 0,
        }
    }

    /// As [`Xenstore::new`], first setting both rings empty at `req` and `rsp` (to start
    /// near a wrap of the ring, or of the `u32` indices).
    pub fn with_indices(page: &'a FakeSharedMemory, req: u32, rsp: u32) -> Self {
        page.peer_write_u32(xdi::REQ_CONS, req);
        page.peer_write_u32(xdi::REQ_PROD, req);
        page.peer_write_u32(xdi::RSP_CONS, rsp);
        page.peer_write_u32(xdi::RSP_PROD, rsp);
        Self::new(page)
    }

    /// At most `bytes` move in each direction per run; 0 stalls the server.
    pub fn set_chunk(&mut self, bytes: usize) {
        self.chunk = bytes;
    }

    /// Answers the requests of each run in reverse order (watch events stay with the
    /// request that caused them).
    pub fn set_reversed(&mut self, reversed: bool) {
        self.reversed = reversed;
    }

    pub fn misbehave(&mut self, how: Misbehaviour) {
        match how {
            Misbehaviour::JumpProducer => self.jump_producer = true,
            Misbehaviour::Garbage(bytes) => self.output.extend(bytes),
            Misbehaviour::UnknownReqId => {
                self.output
                    .extend(message(XS_READ, 0xdead_beef, 0, None, b"stale"));
            }
            Misbehaviour::UnknownToken => {
                let payload = format!("{}/name\0no-such-token\0", home());
                self.output
                    .extend(message(XS_WATCH_EVENT, 0, 0, None, payload.as_bytes()));
            }
            Misbehaviour::ServerError(code) => self.page.peer_write_u32(xdi::ERROR, code),
        }
    }

    /// Spoils the reply to the next request (queued: several spoil several replies).
    pub fn bad_reply(&mut self, how: BadReply) {
        self.bad_replies.push_back(how);
    }

    /// Requests handled so far.
    pub fn requests(&self) -> usize {
        self.requests
    }

    /// Watches registered.
    pub fn watches(&self) -> usize {
        self.watches.len()
    }

    /// Transactions open.
    pub fn transactions(&self) -> usize {
        self.transactions.len()
    }

    /// The value at `path` (absolute, or relative to the guest's home).
    pub fn read(&self, path: &str) -> Option<&[u8]> {
        let abs = absolute(path).ok()?;
        self.nodes.get(&abs).map(|node| node.value.as_slice())
    }

    /// Writes `value` at `path` as the toolstack would, firing watches.
    pub fn write(&mut self, path: &str, value: &[u8]) {
        let abs = absolute(path).expect("sim write: invalid path");
        let mut events = Vec::new();
        self.modify(0, Change::Write(abs.clone()), &mut events, |tree| {
            set(tree, &abs, value, 0);
        })
        .expect("outside transactions, changes succeed");
        self.output.extend(events.concat());
    }

    /// Removes `path` and its subtree as the toolstack would, firing watches.
    pub fn rm(&mut self, path: &str) {
        let abs = absolute(path).expect("sim rm: invalid path");
        let mut events = Vec::new();
        self.modify(0, Change::Rm(abs.clone()), &mut events, |tree| {
            remove(tree, &abs);
        })
        .expect("outside transactions, changes succeed");
        self.output.extend(events.concat());
    }

    /// Takes what requests the ring holds, answers every whole one, and puts what replies fit
    /// on the ring. Returns whether anything moved.
    pub fn run(&mut self) -> bool {
        let mut moved = self.take_requests();
        let mut replies = Vec::new();
        while let Some((header, payload)) = self.next_request() {
            replies.push(self.handle(header, &payload));
        }
        if self.reversed {
            replies.reverse();
        }
        for reply in replies {
            self.output.extend(reply.concat());
        }
        moved |= self.put_replies();
        if core::mem::take(&mut self.jump_producer) {
            let cons = self.page.peer_read_u32(xdi::RSP_CONS);
            let jumped = cons.wrapping_add(XENSTORE_RING_SIZE as u32 + 1);
            self.page.peer_write_u32(xdi::RSP_PROD, jumped);
            moved = true;
        }
        moved
    }

    fn take_requests(&mut self) -> bool {
        let prod = self.page.peer_read_u32(xdi::REQ_PROD);
        let waiting = prod.wrapping_sub(self.req_cons) as usize;
        assert!(
            waiting <= XENSTORE_RING_SIZE,
            "sim xenstored: req_prod {prod:#x} is more than a ring past req_cons {:#x}",
            self.req_cons
        );
        let n = waiting.min(self.chunk);
        for i in 0..n {
            let idx = self.req_cons.wrapping_add(i as u32) as usize % XENSTORE_RING_SIZE;
            self.input.push(self.page.peer_read(xdi::REQ + idx, 1)[0]);
        }
        self.req_cons = self.req_cons.wrapping_add(n as u32);
        self.page.peer_write_u32(xdi::REQ_CONS, self.req_cons);
        n > 0
    }

    fn next_request(&mut self) -> Option<(Header, Vec<u8>)> {
        let header = Header::from_bytes(self.input.get(..HEADER)?.try_into().ok()?);
        let len = header.len as usize;
        assert!(
            len <= XENSTORE_PAYLOAD_MAX,
            "sim xenstored: the client sent a {len}-byte payload"
        );
        let payload = self.input.get(HEADER..HEADER + len)?.to_vec();
        self.input.drain(..HEADER + len);
        Some((header, payload))
    }

    fn put_replies(&mut self) -> bool {
        let cons = self.page.peer_read_u32(xdi::RSP_CONS);
        let used = self.rsp_prod.wrapping_sub(cons) as usize;
        assert!(
            used <= XENSTORE_RING_SIZE,
            "sim xenstored: rsp_cons {cons:#x} is not within a ring of rsp_prod {:#x}",
            self.rsp_prod
        );
        let n = (XENSTORE_RING_SIZE - used)
            .min(self.output.len())
            .min(self.chunk);
        if n == 0 {
            return false;
        }
        for (i, byte) in self.output.drain(..n).enumerate() {
            let idx = self.rsp_prod.wrapping_add(i as u32) as usize % XENSTORE_RING_SIZE;
            self.page.peer_write(xdi::RSP + idx, &[byte]);
        }
        self.rsp_prod = self.rsp_prod.wrapping_add(n as u32);
        self.page.peer_write_u32(xdi::RSP_PROD, self.rsp_prod);
        true
    }

    /// The messages answering one request: its reply and the watch events it caused, in
    /// xenstored's order (a new watch's first event after the acknowledgement, the events of
    /// a change before it).
    fn handle(&mut self, header: Header, payload: &[u8]) -> Vec<Vec<u8>> {
        self.requests += 1;
        let mut events = Vec::new();
        let outcome = self.execute(header, payload, &mut events);
        let reply = self.reply(header, outcome);
        if header.ty == XS_WATCH {
            events.insert(0, reply);
        } else {
            events.push(reply);
        }
        events
    }

    fn reply(&mut self, request: Header, outcome: Outcome) -> Vec<u8> {
        let (mut ty, mut payload) = match outcome {
            Ok(payload) => (request.ty, payload),
            Err(name) => (XS_ERROR, format!("{name}\0").into_bytes()),
        };
        let mut len = None;
        match self.bad_replies.pop_front() {
            None => {}
            Some(BadReply::OversizedLen) => {
                len = Some(XENSTORE_PAYLOAD_MAX as u32 + 1);
                payload.clear();
            }
            Some(BadReply::ShortPayload { extra }) => len = Some(payload.len() as u32 + extra),
            Some(BadReply::Payload(bad)) => payload = bad,
            Some(BadReply::Type(bad)) => ty = bad,
            Some(BadReply::Error(bad)) => (ty, payload) = (XS_ERROR, bad),
        }
        message(ty, request.req_id, request.tx_id, len, &payload)
    }

    fn execute(&mut self, header: Header, payload: &[u8], events: &mut Vec<Vec<u8>>) -> Outcome {
        let tx = header.tx_id;
        match header.ty {
            XS_READ => {
                let path = absolute(one_field(payload)?)?;
                let node = self.tree(tx)?.get(&path).ok_or("ENOENT")?;
                Ok(node.value.clone())
            }
            XS_WRITE => {
                let nul = payload.iter().position(|&b| b == 0).ok_or("EINVAL")?;
                let path = absolute(text(&payload[..nul])?)?;
                let value = &payload[nul + 1..];
                self.modify(tx, Change::Write(path.clone()), events, |tree| {
                    set(tree, &path, value, DOMID);
                })?;
                ok()
            }
            XS_MKDIR => {
                let path = absolute(one_field(payload)?)?;
                if !self.tree(tx)?.contains_key(&path) {
                    self.modify(tx, Change::Write(path.clone()), events, |tree| {
                        create(tree, &path, DOMID);
                    })?;
                }
                ok()
            }
            XS_RM => {
                let path = absolute(one_field(payload)?)?;
                let parent = parent(&path).ok_or("EINVAL")?;
                let tree = self.tree(tx)?;
                if !tree.contains_key(&path) {
                    return if tree.contains_key(parent) {
                        ok()
                    } else {
                        Err("ENOENT")
                    };
                }
                self.modify(tx, Change::Rm(path.clone()), events, |tree| {
                    remove(tree, &path);
                })?;
                ok()
            }
            XS_DIRECTORY => {
                let path = absolute(one_field(payload)?)?;
                let tree = self.tree(tx)?;
                if !tree.contains_key(&path) {
                    return Err("ENOENT");
                }
                let listing: Vec<u8> = children(tree, &path)
                    .into_iter()
                    .flat_map(|name| name.bytes().chain([0]))
                    .collect();
                if listing.len() > XENSTORE_PAYLOAD_MAX {
                    return Err("E2BIG");
                }
                Ok(listing)
            }
            XS_GET_PERMS => {
                let path = absolute(one_field(payload)?)?;
                let node = self.tree(tx)?.get(&path).ok_or("ENOENT")?;
                Ok(node
                    .perms
                    .iter()
                    .flat_map(|p| format!("{}{}\0", letter(p), p.domid).into_bytes())
                    .collect())
            }
            XS_WATCH => {
                let (path, token) = two_fields(payload)?;
                if self
                    .watches
                    .iter()
                    .any(|w| w.path == path && w.token == token)
                {
                    return Err("EEXIST");
                }
                let abs = if path.starts_with('@') {
                    None
                } else {
                    Some(absolute(path)?)
                };
                self.watches.push(SimWatch {
                    path: path.into(),
                    token: token.into(),
                    abs,
                });
                events.push(event(path, token));
                ok()
            }
            XS_UNWATCH => {
                let (path, token) = two_fields(payload)?;
                let i = self
                    .watches
                    .iter()
                    .position(|w| w.path == path && w.token == token)
                    .ok_or("ENOENT")?;
                self.watches.remove(i);
                ok()
            }
            XS_TRANSACTION_START => {
                if tx != 0 || payload != b"\0" {
                    return Err("EINVAL");
                }
                let id = self.next_tx;
                self.next_tx += 1;
                self.transactions.insert(
                    id,
                    Transaction {
                        tree: self.nodes.clone(),
                        generation: self.generation,
                        changes: Vec::new(),
                    },
                );
                Ok(format!("{id}\0").into_bytes())
            }
            XS_TRANSACTION_END => {
                let commit = match payload {
                    b"T\0" => true,
                    b"F\0" => false,
                    _ => return Err("EINVAL"),
                };
                let t = self.transactions.remove(&tx).ok_or("ENOENT")?;
                if commit {
                    if t.generation != self.generation {
                        return Err("EAGAIN");
                    }
                    self.nodes = t.tree;
                    self.generation += 1;
                    for change in &t.changes {
                        events.extend(self.events_for(change));
                    }
                }
                ok()
            }
            _ => Err("ENOSYS"),
        }
    }

    fn tree(&self, tx: u32) -> Result<&Tree, &'static str> {
        if tx == 0 {
            return Ok(&self.nodes);
        }
        self.transactions.get(&tx).map(|t| &t.tree).ok_or("ENOENT")
    }

    /// Applies `f` to the store (firing watches now) or to transaction `tx`'s copy (firing
    /// them at commit).
    fn modify(
        &mut self,
        tx: u32,
        change: Change,
        events: &mut Vec<Vec<u8>>,
        f: impl FnOnce(&mut Tree),
    ) -> Result<(), &'static str> {
        if tx == 0 {
            f(&mut self.nodes);
            self.generation += 1;
            events.extend(self.events_for(&change));
        } else {
            let t = self.transactions.get_mut(&tx).ok_or("ENOENT")?;
            f(&mut t.tree);
            t.changes.push(change);
        }
        Ok(())
    }

    /// The watch events `change` fires: for a write, every watch at or above the path; for a
    /// removal, those too, and those below it (which report their own path).
    fn events_for(&self, change: &Change) -> Vec<Vec<u8>> {
        let home = format!("{}/", home());
        let mut out = Vec::new();
        for watch in &self.watches {
            let Some(wabs) = &watch.abs else { continue };
            let epath = match change {
                Change::Write(p) | Change::Rm(p) if is_under(p, wabs) => p,
                Change::Rm(p) if is_under(wabs, p) => wabs,
                _ => continue,
            };
            let shown = if watch.path.starts_with('/') {
                epath.as_str()
            } else {
                epath.strip_prefix(&home).unwrap_or(epath)
            };
            out.push(event(shown, &watch.token));
        }
        out
    }
}

fn home() -> String {
    format!("/local/domain/{DOMID}")
}

fn perm(letter: char, domid: DomId) -> Permission {
    Permission {
        domid,
        read: matches!(letter, 'r' | 'b'),
        write: matches!(letter, 'w' | 'b'),
    }
}

fn letter(p: &Permission) -> char {
    match (p.read, p.write) {
        (false, false) => 'n',
        (true, false) => 'r',
        (false, true) => 'w',
        (true, true) => 'b',
    }
}

fn node(value: &[u8], perms: &[Permission]) -> Node {
    Node {
        value: value.to_vec(),
        perms: perms.to_vec(),
    }
}

/// An encoded message; `len` overrides the header's length (a lie) when given.
fn message(ty: u32, req_id: u32, tx_id: u32, len: Option<u32>, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        ty,
        req_id,
        tx_id,
        len: len.unwrap_or(payload.len() as u32),
    };
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn event(path: &str, token: &str) -> Vec<u8> {
    message(
        XS_WATCH_EVENT,
        0,
        0,
        None,
        format!("{path}\0{token}\0").as_bytes(),
    )
}

fn ok() -> Outcome {
    Ok(b"OK\0".to_vec())
}

fn text(bytes: &[u8]) -> Result<&str, &'static str> {
    core::str::from_utf8(bytes).map_err(|_| "EINVAL")
}

/// `<field>|`.
fn one_field(payload: &[u8]) -> Result<&str, &'static str> {
    let body = payload.strip_suffix(&[0]).ok_or("EINVAL")?;
    if body.contains(&0) {
        return Err("EINVAL");
    }
    text(body)
}

/// `<a>|<b>|`.
fn two_fields(payload: &[u8]) -> Result<(&str, &str), &'static str> {
    let body = payload.strip_suffix(&[0]).ok_or("EINVAL")?;
    let nul = body.iter().position(|&b| b == 0).ok_or("EINVAL")?;
    let (a, b) = (&body[..nul], &body[nul + 1..]);
    if b.contains(&0) {
        return Err("EINVAL");
    }
    Ok((text(a)?, text(b)?))
}

/// `path` made absolute and checked as xenstored does: `/`-separated, no empty components,
/// no trailing `/` (but `/` itself), only alphanumerics and `-/_@`, within
/// `XENSTORE_ABS_PATH_MAX`.
fn absolute(path: &str) -> Result<String, &'static str> {
    let abs = if path.starts_with('/') {
        String::from(path)
    } else {
        format!("{}/{path}", home())
    };
    let shape_ok = abs == "/" || !(abs.ends_with('/') || abs.contains("//"));
    let chars_ok = abs
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-/_@".contains(&b));
    if shape_ok && chars_ok && abs.len() <= XENSTORE_ABS_PATH_MAX {
        Ok(abs)
    } else {
        Err("EINVAL")
    }
}

fn parent(abs: &str) -> Option<&str> {
    if abs == "/" {
        return None;
    }
    let i = abs.rfind('/')?;
    Some(if i == 0 { "/" } else { &abs[..i] })
}

/// Whether `path` is `ancestor` or below it.
fn is_under(path: &str, ancestor: &str) -> bool {
    ancestor == "/"
        || path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Creates `abs` and its missing ancestors with empty values. A new node takes its parent's
/// permissions with `owner` as the owner, as xenstored does for an unprivileged creator.
fn create(tree: &mut Tree, abs: &str, owner: DomId) {
    if tree.contains_key(abs) {
        return;
    }
    let mut perms = match parent(abs) {
        Some(parent) => {
            create(tree, parent, owner);
            tree[parent].perms.clone()
        }
        None => Vec::new(),
    };
    if let Some(first) = perms.first_mut() {
        first.domid = owner;
    }
    tree.insert(abs.into(), node(b"", &perms));
}

fn set(tree: &mut Tree, abs: &str, value: &[u8], owner: DomId) {
    create(tree, abs, owner);
    if let Some(node) = tree.get_mut(abs) {
        node.value = value.to_vec();
    }
}

fn remove(tree: &mut Tree, abs: &str) {
    tree.retain(|path, _| !is_under(path, abs));
}

/// The leaf names of `abs`'s children.
fn children<'t>(tree: &'t Tree, abs: &str) -> Vec<&'t str> {
    let prefix = if abs == "/" {
        String::from("/")
    } else {
        format!("{abs}/")
    };
    tree.range(prefix.clone()..)
        .map(|(path, _)| path.as_str())
        .take_while(|path| path.starts_with(&prefix))
        .filter_map(|path| {
            let rest = &path[prefix.len()..];
            (!rest.is_empty() && !rest.contains('/')).then_some(rest)
        })
        .collect()
}
