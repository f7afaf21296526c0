//! The two byte rings of the store page, our side: `req` (we produce) and `rsp` (we consume).
//!
//! Indices are free-running `u32`s masked by the ring size to address a byte, so
//! `prod - cons` (wrapping) is the number of bytes in flight and a full ring differs from an
//! empty one. The indices we own (`req_prod`, `rsp_cons`) live here and are only published to
//! the page, so the server cannot move our side; the ones it owns (`req_cons`, `rsp_prod`) are
//! read once per call and checked (`prod - cons` at most a ring) before any byte is copied.
//!
//! Ordering, as Linux's `xb_write` / `xb_read`:
//!
//! - Writing: read `req_cons`, **full barrier** (the server finished reading the bytes we are
//!   about to overwrite before it advanced `req_cons`), copy, **write barrier** (data visible
//!   before the index that announces it), publish `req_prod`.
//! - Reading: read `rsp_prod`, **read barrier** (the bytes we copy are at least as new as the
//!   index), copy, **full barrier** (our loads are done before we hand the space back), publish
//!   `rsp_cons`.

use ringbolt_shmem::{OutOfBounds, SharedMemory};
use ringbolt_xen_abi::io::xs_wire::{
    XENSTORE_CONNECTED, XENSTORE_ERROR_NONE, XENSTORE_RING_SIZE, XENSTORE_SERVER_FEATURE_ERROR,
    XENSTORE_SERVER_FEATURE_RECONNECTION, XenstoreRingIdx, xenstore_domain_interface as xdi,
};

use crate::Broken;

/// Our side of one store page. There must be only one per page: it owns `req_prod` and
/// `rsp_cons`.
#[derive(Debug)]
pub(crate) struct StoreRing<M> {
    mem: M,
    /// Our producer index on `req`, the value last published.
    req_prod: XenstoreRingIdx,
    /// Our consumer index on `rsp`, the value last published.
    rsp_cons: XenstoreRingIdx,
}

impl<M: SharedMemory> StoreRing<M> {
    /// Takes over the store page, continuing from the indices on it.
    ///
    /// Replies already waiting answer requests of an earlier boot stage (a bootloader, a
    /// previous kernel): they are skipped, as Linux's `xb_init_comms` does, because their
    /// `req_id`s would collide with ours. If the server advertises ring reconnection and is in
    /// the middle of one, no other field may be trusted yet: [`Broken::Reconnecting`].
    pub(crate) fn new(mem: M) -> Result<Self, Broken> {
        OutOfBounds::check(mem.len(), 0, xdi::SIZE, 1)?;
        let features = mem.read_u32(xdi::SERVER_FEATURES)?;
        if features & XENSTORE_SERVER_FEATURE_RECONNECTION != 0
            && mem.read_u32(xdi::CONNECTION)? != XENSTORE_CONNECTED
        {
            return Err(Broken::Reconnecting);
        }
        let req_cons = mem.read_u32(xdi::REQ_CONS)?;
        let req_prod = mem.read_u32(xdi::REQ_PROD)?;
        if req_cons != req_prod {
            log::warn!(
                "xenstore: request ring not quiescent at takeover ({req_cons:#x}..{req_prod:#x})"
            );
        }
        let rsp_cons = mem.read_u32(xdi::RSP_CONS)?;
        let rsp_prod = mem.read_u32(xdi::RSP_PROD)?;
        if rsp_cons != rsp_prod {
            log::warn!(
                "xenstore: skipping replies left on the ring ({rsp_cons:#x}..{rsp_prod:#x})"
            );
            mem.full_barrier();
            mem.write_u32(xdi::RSP_CONS, rsp_prod)?;
        }
        Ok(StoreRing {
            mem,
            req_prod,
            rsp_cons: rsp_prod,
        })
    }

    /// Whether the server has flagged the connection dead (`XENSTORE_SERVER_FEATURE_ERROR`
    /// and a non-zero `error`).
    pub(crate) fn check_server(&self) -> Result<(), Broken> {
        if self.mem.read_u32(xdi::SERVER_FEATURES)? & XENSTORE_SERVER_FEATURE_ERROR != 0 {
            let error = self.mem.read_u32(xdi::ERROR)?;
            if error != XENSTORE_ERROR_NONE {
                return Err(Broken::ServerError(error));
            }
        }
        Ok(())
    }

    /// Copies as much of `bytes` as fits into `req` and publishes it. Returns the count: zero
    /// means the ring is full (or `bytes` empty). The caller notifies the server.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<usize, Broken> {
        let cons = self.mem.read_u32(xdi::REQ_CONS)?;
        let prod = self.req_prod;
        let used = prod.wrapping_sub(cons) as usize;
        if used > XENSTORE_RING_SIZE {
            return Err(Broken::RequestRing { cons, prod });
        }
        let n = (XENSTORE_RING_SIZE - used).min(bytes.len());
        if n == 0 {
            return Ok(0);
        }
        self.mem.full_barrier();
        let start = prod as usize % XENSTORE_RING_SIZE;
        let (head, tail) = bytes[..n].split_at(n.min(XENSTORE_RING_SIZE - start));
        self.mem.write_bytes(xdi::REQ + start, head)?;
        if !tail.is_empty() {
            self.mem.write_bytes(xdi::REQ, tail)?;
        }
        self.mem.write_barrier();
        // n <= XENSTORE_RING_SIZE, so it fits an index.
        self.req_prod = prod.wrapping_add(n as XenstoreRingIdx);
        self.mem.write_u32(xdi::REQ_PROD, self.req_prod)?;
        Ok(n)
    }

    /// Copies up to `buf.len()` waiting bytes out of `rsp` and hands the space back. Returns
    /// the count: zero means nothing is waiting (or `buf` is empty). The caller notifies the
    /// server, which may be waiting for room.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<usize, Broken> {
        let prod = self.mem.read_u32(xdi::RSP_PROD)?;
        let cons = self.rsp_cons;
        let waiting = prod.wrapping_sub(cons) as usize;
        if waiting > XENSTORE_RING_SIZE {
            return Err(Broken::ResponseRing { cons, prod });
        }
        let n = waiting.min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        self.mem.read_barrier();
        let start = cons as usize % XENSTORE_RING_SIZE;
        let (head, tail) = buf[..n].split_at_mut(n.min(XENSTORE_RING_SIZE - start));
        self.mem.read_bytes(xdi::RSP + start, head)?;
        if !tail.is_empty() {
            self.mem.read_bytes(xdi::RSP, tail)?;
        }
        self.mem.full_barrier();
        // n <= XENSTORE_RING_SIZE, so it fits an index.
        self.rsp_cons = cons.wrapping_add(n as XenstoreRingIdx);
        self.mem.write_u32(xdi::RSP_CONS, self.rsp_cons)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use ringbolt_shmem::Fault;
    use ringbolt_shmem::fake::{Event, FakeSharedMemory};
    use ringbolt_xen_abi::io::xs_wire::XENSTORE_RECONNECT;
    use std::vec::Vec;

    fn page(req: u32, rsp: u32) -> FakeSharedMemory {
        let mem = FakeSharedMemory::page();
        for (offset, value) in [
            (xdi::REQ_CONS, req),
            (xdi::REQ_PROD, req),
            (xdi::RSP_CONS, rsp),
            (xdi::RSP_PROD, rsp),
        ] {
            mem.peer_write_u32(offset, value);
        }
        mem
    }

    /// What the server would read: the unread bytes of `req`, consumed.
    fn drain_requests(mem: &FakeSharedMemory) -> Vec<u8> {
        let cons = mem.peer_read_u32(xdi::REQ_CONS);
        let prod = mem.peer_read_u32(xdi::REQ_PROD);
        let out = (0..prod.wrapping_sub(cons))
            .map(|i| mem.peer_read(xdi::REQ + (cons.wrapping_add(i) as usize % 1024), 1)[0])
            .collect();
        mem.peer_write_u32(xdi::REQ_CONS, prod);
        out
    }

    /// The server writing `bytes` to `rsp`.
    fn reply(mem: &FakeSharedMemory, bytes: &[u8]) {
        let prod = mem.peer_read_u32(xdi::RSP_PROD);
        for (i, &b) in bytes.iter().enumerate() {
            let idx = prod.wrapping_add(i as u32) as usize % 1024;
            mem.peer_write(xdi::RSP + idx, &[b]);
        }
        mem.peer_write_u32(xdi::RSP_PROD, prod.wrapping_add(bytes.len() as u32));
    }

    #[test]
    fn writes_data_then_a_write_barrier_then_the_producer_index() {
        let mem = page(1020, 0);
        let mut ring = StoreRing::new(&mem).unwrap();
        mem.take_events();
        assert_eq!(ring.write(b"0123456789"), Ok(10));
        assert_eq!(
            mem.events(),
            [
                Event::Load {
                    offset: xdi::REQ_CONS,
                    width: 4
                },
                Event::FullBarrier,
                Event::Store {
                    offset: xdi::REQ + 1020,
                    width: 4
                },
                Event::Store {
                    offset: xdi::REQ,
                    width: 6
                },
                Event::WriteBarrier,
                Event::Store {
                    offset: xdi::REQ_PROD,
                    width: 4
                },
            ]
        );
        assert_eq!(mem.peer_read_u32(xdi::REQ_PROD), 1030);
        assert_eq!(drain_requests(&mem), b"0123456789");
    }

    #[test]
    fn reads_after_a_read_barrier_and_frees_after_a_full_barrier() {
        let mem = page(0, 1022);
        let mut ring = StoreRing::new(&mem).unwrap();
        reply(&mem, b"wxyz");
        mem.take_events();
        let mut buf = [0; 8];
        assert_eq!(ring.read(&mut buf), Ok(4));
        assert_eq!(&buf[..4], b"wxyz");
        assert_eq!(
            mem.events(),
            [
                Event::Load {
                    offset: xdi::RSP_PROD,
                    width: 4
                },
                Event::ReadBarrier,
                Event::Load {
                    offset: xdi::RSP + 1022,
                    width: 2
                },
                Event::Load {
                    offset: xdi::RSP,
                    width: 2
                },
                Event::FullBarrier,
                Event::Store {
                    offset: xdi::RSP_CONS,
                    width: 4
                },
            ]
        );
        assert_eq!(mem.peer_read_u32(xdi::RSP_CONS), 1026);
        assert_eq!(ring.read(&mut buf), Ok(0));
    }

    #[test]
    fn indices_wrap_at_two_to_the_32() {
        let mem = page(u32::MAX - 1, u32::MAX - 2);
        let mut ring = StoreRing::new(&mem).unwrap();
        assert_eq!(ring.write(b"abcd"), Ok(4));
        assert_eq!(mem.peer_read_u32(xdi::REQ_PROD), 2);
        assert_eq!(drain_requests(&mem), b"abcd");
        reply(&mem, b"12345");
        let mut buf = [0; 5];
        assert_eq!(ring.read(&mut buf), Ok(5));
        assert_eq!(&buf, b"12345");
        assert_eq!(mem.peer_read_u32(xdi::RSP_CONS), 2);
    }

    #[test]
    fn a_full_request_ring_takes_part_then_nothing() {
        let mem = page(0, 0);
        let mut ring = StoreRing::new(&mem).unwrap();
        assert_eq!(ring.write(&[7; 1000]), Ok(1000));
        assert_eq!(ring.write(&[8; 100]), Ok(24));
        assert_eq!(ring.write(&[9; 100]), Ok(0));
        assert_eq!(mem.peer_read_u32(xdi::REQ_PROD), 1024);
        mem.peer_write_u32(xdi::REQ_CONS, 10);
        assert_eq!(ring.write(&[9; 100]), Ok(10));
    }

    #[test]
    fn rejects_server_indices_more_than_a_ring_away() {
        let mem = page(0, 0);
        let mut ring = StoreRing::new(&mem).unwrap();
        // req_cons ahead of our req_prod: prod - cons wraps huge.
        mem.peer_write_u32(xdi::REQ_CONS, 5);
        mem.take_events();
        assert_eq!(
            ring.write(b"x"),
            Err(Broken::RequestRing { cons: 5, prod: 0 })
        );
        assert_eq!(
            mem.events(),
            [Event::Load {
                offset: xdi::REQ_CONS,
                width: 4
            }]
        );
        mem.peer_write_u32(xdi::RSP_PROD, 1025);
        let mut buf = [0; 16];
        assert_eq!(
            ring.read(&mut buf),
            Err(Broken::ResponseRing {
                cons: 0,
                prod: 1025
            })
        );
        // A full ring is not corrupt.
        mem.peer_write_u32(xdi::RSP_PROD, 1024);
        assert_eq!(ring.read(&mut buf), Ok(16));
    }

    #[test]
    fn skips_replies_left_by_an_earlier_stage() {
        let mem = page(0, 40);
        mem.peer_write_u32(xdi::RSP_PROD, 90);
        let mut ring = StoreRing::new(&mem).unwrap();
        assert_eq!(mem.peer_read_u32(xdi::RSP_CONS), 90);
        let mut buf = [0; 4];
        assert_eq!(ring.read(&mut buf), Ok(0));
    }

    #[test]
    fn refuses_a_ring_being_reconnected_and_a_small_page() {
        let mem = page(0, 0);
        mem.peer_write_u32(
            xdi::SERVER_FEATURES,
            XENSTORE_SERVER_FEATURE_RECONNECTION | XENSTORE_SERVER_FEATURE_ERROR,
        );
        mem.peer_write_u32(xdi::CONNECTION, XENSTORE_RECONNECT);
        assert_eq!(StoreRing::new(&mem).unwrap_err(), Broken::Reconnecting);
        mem.peer_write_u32(xdi::CONNECTION, XENSTORE_CONNECTED);
        assert!(StoreRing::new(&mem).is_ok());
        // Without the feature, the field means nothing.
        let old = page(0, 0);
        old.peer_write_u32(xdi::CONNECTION, XENSTORE_RECONNECT);
        assert!(StoreRing::new(&old).is_ok());

        let small = FakeSharedMemory::new(xdi::SIZE - 1);
        assert!(matches!(
            StoreRing::new(&small),
            Err(Broken::OutOfBounds(OutOfBounds {
                fault: Fault::PastEnd,
                ..
            }))
        ));
    }

    #[test]
    fn reports_the_servers_error_field_only_with_the_feature() {
        let mem = page(0, 0);
        let ring = StoreRing::new(&mem).unwrap();
        mem.peer_write_u32(xdi::ERROR, 2);
        assert_eq!(ring.check_server(), Ok(()));
        mem.peer_write_u32(xdi::SERVER_FEATURES, XENSTORE_SERVER_FEATURE_ERROR);
        assert_eq!(ring.check_server(), Err(Broken::ServerError(2)));
    }
}
