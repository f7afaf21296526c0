//! `xen/include/public/io/xenbus.h`: the states a split driver's two ends go through.
//!
//! Each end keeps its state as a decimal number in its own `state` node in xenstore and
//! watches the other's. The usual life of a device: the toolstack creates both ends
//! (`Initialising`); the backend publishes its features (`InitWait`); the frontend publishes
//! its ring and event channel (`Initialised`); the backend connects to them, then the frontend
//! (`Connected`); either end leaves through `Closing` to `Closed`.

/// `enum xenbus_state`, as the decimal value of a `state` node.
pub type XenbusState = u32;

pub const XENBUS_STATE_UNKNOWN: XenbusState = 0;
pub const XENBUS_STATE_INITIALISING: XenbusState = 1;
/// The backend is ready for the frontend's details (and has published its features).
pub const XENBUS_STATE_INIT_WAIT: XenbusState = 2;
/// The frontend has published its details.
pub const XENBUS_STATE_INITIALISED: XenbusState = 3;
pub const XENBUS_STATE_CONNECTED: XenbusState = 4;
/// The end is being torn down.
pub const XENBUS_STATE_CLOSING: XenbusState = 5;
pub const XENBUS_STATE_CLOSED: XenbusState = 6;
pub const XENBUS_STATE_RECONFIGURING: XenbusState = 7;
pub const XENBUS_STATE_RECONFIGURED: XenbusState = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_match_the_header() {
        assert_eq!(
            [
                XENBUS_STATE_UNKNOWN,
                XENBUS_STATE_INITIALISING,
                XENBUS_STATE_INIT_WAIT,
                XENBUS_STATE_INITIALISED,
                XENBUS_STATE_CONNECTED,
                XENBUS_STATE_CLOSING,
                XENBUS_STATE_CLOSED,
                XENBUS_STATE_RECONFIGURING,
                XENBUS_STATE_RECONFIGURED
            ],
            [0, 1, 2, 3, 4, 5, 6, 7, 8]
        );
    }
}
