//! Request ids: pairing completions with the requests that asked for them.
//!
//! A packet sent with [`FLAG_COMPLETION_REQUESTED`](crate::packet::FLAG_COMPLETION_REQUESTED)
//! carries a transaction id that the host echoes in its completion. Linux once put kernel
//! pointers there and trusted what came back; since 5.10 its `vmbus_requestor` hands out slot
//! numbers instead and rejects ids it did not issue. [`Requests`] does the same with a fixed
//! table, and adds a per-slot generation so that a stale or repeated completion for a slot that
//! has since been reused is rejected too:
//!
//! ```text
//!  transaction id = generation << 32 | (slot + 1)        (never 0)
//! ```

use core::fmt;

use log::warn;

/// Why a request could not be issued or completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Every slot holds an outstanding request.
    Full,
    /// A completion for an id that is not outstanding: never issued, already completed, or
    /// from an earlier use of the slot.
    Unknown(u64),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Full => write!(f, "no free request slot"),
            RequestError::Unknown(id) => write!(f, "completion for unknown request {id:#x}"),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    generation: u32,
    /// The caller's value for the outstanding request, if any.
    cookie: Option<u64>,
}

/// Up to `N` outstanding requests, each with a caller-chosen cookie (an index into the driver's
/// own table, say).
#[derive(Clone, Debug)]
pub struct Requests<const N: usize> {
    slots: [Slot; N],
    /// Where the search for a free slot starts: round-robin, so a slot is not reused at once.
    next: usize,
    outstanding: usize,
}

impl<const N: usize> Default for Requests<N> {
    fn default() -> Self {
        Requests {
            slots: [Slot::default(); N],
            next: 0,
            outstanding: 0,
        }
    }
}

impl<const N: usize> Requests<N> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests issued and not completed.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Issues an id for a new request carrying `cookie`.
    pub fn issue(&mut self, cookie: u64) -> Result<u64, RequestError> {
        let index = (0..N)
            .map(|i| (self.next + i) % N)
            .find(|&i| self.slots[i].cookie.is_none())
            .ok_or(RequestError::Full)?;
        let slot = &mut self.slots[index];
        slot.generation = slot.generation.wrapping_add(1);
        slot.cookie = Some(cookie);
        self.next = (index + 1) % N;
        self.outstanding += 1;
        Ok(u64::from(slot.generation) << 32 | (index as u64 + 1))
    }

    /// Completes request `id`, returning its cookie; any id not outstanding is rejected.
    pub fn complete(&mut self, id: u64) -> Result<u64, RequestError> {
        let generation = (id >> 32) as u32;
        let slot = (id as u32 as usize)
            .checked_sub(1)
            .and_then(|index| self.slots.get_mut(index))
            .filter(|slot| slot.generation == generation);
        match slot.and_then(|slot| slot.cookie.take()) {
            Some(cookie) => {
                self.outstanding -= 1;
                Ok(cookie)
            }
            None => {
                warn!("vmbus: completion for request {id:#x}, which is not outstanding");
                Err(RequestError::Unknown(id))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_nonzero_ids_and_completes_each_once() {
        let mut r = Requests::<4>::new();
        let a = r.issue(10).unwrap();
        let b = r.issue(20).unwrap();
        assert_ne!(a, 0);
        assert_ne!(a, b);
        assert_eq!(r.outstanding(), 2);
        assert_eq!(r.complete(b), Ok(20));
        assert_eq!(r.complete(b), Err(RequestError::Unknown(b)));
        assert_eq!(r.complete(a), Ok(10));
        assert_eq!(r.outstanding(), 0);
    }

    #[test]
    fn rejects_ids_never_issued() {
        let mut r = Requests::<4>::new();
        let a = r.issue(1).unwrap();
        for bogus in [0, 5, 1u64 << 32 | 5, u64::MAX, a + 1, a ^ (1 << 32)] {
            assert_eq!(r.complete(bogus), Err(RequestError::Unknown(bogus)));
        }
        assert_eq!(r.outstanding(), 1);
    }

    #[test]
    fn a_reused_slot_rejects_the_old_id() {
        let mut r = Requests::<1>::new();
        let first = r.issue(1).unwrap();
        assert_eq!(r.complete(first), Ok(1));
        let second = r.issue(2).unwrap();
        assert_eq!(first as u32, second as u32);
        assert_ne!(first, second);
        assert_eq!(r.complete(first), Err(RequestError::Unknown(first)));
        assert_eq!(r.complete(second), Ok(2));
    }

    #[test]
    fn fills_up_and_recovers() {
        let mut r = Requests::<2>::new();
        let a = r.issue(1).unwrap();
        r.issue(2).unwrap();
        assert_eq!(r.issue(3), Err(RequestError::Full));
        r.complete(a).unwrap();
        assert!(r.issue(3).is_ok());
        let mut empty = Requests::<0>::new();
        assert_eq!(empty.issue(1), Err(RequestError::Full));
        assert_eq!(empty.complete(1), Err(RequestError::Unknown(1)));
    }
}
