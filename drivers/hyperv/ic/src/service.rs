//! One integration service's message loop, independent of VMBus: [`Ic`] takes a request
//! packet's bytes and writes the response bytes, handling the framework (headers,
//! negotiation, failure answers) and handing service messages to a [`Service`].

use alloc::boxed::Box;

use log::{info, warn};

use crate::error::Error;
use crate::icmsg::{
    FRAMEWORK_VERSIONS, Frame, Header, ICMSG_HDR, MessageType, NEGOTIATE_RESPONSE_SIZE, Negotiated,
    Status, Version, negotiate,
};
use crate::kvp::{IpSettings, Pool};

/// What the kernel must do after a request was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Shut down and power off (shutdown flags 0; `force` is flag 1, "do it even if
    /// applications object", which Linux always honours).
    PowerOff { force: bool },
    /// Restart (shutdown flags 2, from version 3.1).
    Reboot { force: bool },
    /// The host's UTC time: `unix_nanos` since 1970, already advanced to the moment of the
    /// request's handling for version 4 samples. `sync` (`ICTIMESYNCFLAG_SYNC`, sent after boot
    /// and resume) asks for the clock to be stepped; otherwise (`ICTIMESYNCFLAG_SAMPLE`, every
    /// 5 s) it is a sample the kernel may use to discipline its clock, or ignore.
    SetWallClock { unix_nanos: u64, sync: bool },
    /// The host set or deleted a key in `pool`.
    KvpChanged { pool: Pool },
    /// The host asks for this IP configuration of one adapter (only when the kernel accepts
    /// it, see [`Kvp::accept_ip_injection`](crate::kvp::Kvp::accept_ip_injection)).
    SetIpInfo(Box<IpSettings>),
}

/// A service's half of the protocol.
pub trait Service {
    /// For log lines.
    const NAME: &'static str;
    /// The `icmsgtype` of its requests.
    const MESSAGE_TYPE: MessageType;
    /// The service versions it speaks, newest first, as Linux lists them.
    const VERSIONS: &'static [Version];

    /// Handles a request of the negotiated service `version`. `payload` holds a copy of the
    /// request's payload and becomes the answer's: the protocol answers in place, so the
    /// service fills in what the request asks for (checking everything before it writes). A
    /// failure is answered with the error's status and the payload as it stands.
    fn handle(
        &mut self,
        version: Version,
        payload: &mut [u8],
    ) -> Result<(Status, Option<Action>), Error>;
}

/// A request answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The answer is the first `len` bytes of the response buffer.
    pub len: usize,
    pub status: Status,
    pub action: Option<Action>,
}

/// A request refused (and logged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub error: Error,
    /// The failure answer's length in the response buffer, if the protocol has one for this
    /// case: every request whose headers could be read gets one.
    pub reply: Option<usize>,
}

/// A service and the state of its channel: which versions were negotiated.
#[derive(Debug)]
pub struct Ic<S> {
    service: S,
    negotiated: Option<Negotiated>,
}

impl<S: Service> Ic<S> {
    pub fn new(service: S) -> Self {
        Ic {
            service,
            negotiated: None,
        }
    }

    pub fn service(&self) -> &S {
        &self.service
    }

    pub fn service_mut(&mut self) -> &mut S {
        &mut self.service
    }

    /// The versions the last negotiation settled on; `None` before one succeeded, or after
    /// one failed. The host may negotiate again at any time (after a save and restore).
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.negotiated
    }

    /// Answers the request in `request` (a VMBus packet's data) into `response`, which
    /// should hold as many bytes as the largest packet the channel can carry. The answer goes
    /// back as an in-band packet with the request's VMBus transaction id.
    pub fn handle(&mut self, request: &[u8], response: &mut [u8]) -> Result<Reply, Rejected> {
        let result = self.answer(request, response);
        if let Err(rejected) = &result {
            warn!("{} IC: {}", S::NAME, rejected.error);
        }
        result
    }

    fn answer(&mut self, request: &[u8], response: &mut [u8]) -> Result<Reply, Rejected> {
        let frame = Frame::parse(request).map_err(|error| Rejected { error, reply: None })?;
        let header = frame.header;
        let payload = frame.payload().map_err(|e| refuse(&header, e, response))?;
        if header.message_type == MessageType::NEGOTIATE {
            let (answer, outcome) = negotiate(payload, FRAMEWORK_VERSIONS, S::VERSIONS);
            self.negotiated = outcome.ok();
            place(&answer, &header, response)?;
            // Like Linux, the status is left as the host sent it: the counts are the answer.
            let len = header
                .response(NEGOTIATE_RESPONSE_SIZE as u16, header.status)
                .encode(response);
            return match outcome {
                Ok(n) => {
                    info!(
                        "{} IC: framework {}, version {}",
                        S::NAME,
                        n.framework,
                        n.service
                    );
                    Ok(Reply {
                        len,
                        status: header.status,
                        action: None,
                    })
                }
                Err(error) => Err(Rejected {
                    error,
                    reply: Some(len),
                }),
            };
        }
        let body = place(payload, &header, response)?;
        let outcome = match self.negotiated {
            _ if header.message_type != S::MESSAGE_TYPE => {
                Err(Error::UnknownMessageType(header.message_type))
            }
            None => Err(Error::NotNegotiated),
            Some(n) => self.service.handle(n.service, body),
        };
        let status = match &outcome {
            Ok((status, _)) => *status,
            Err(e) => e.status(),
        };
        let len = header.response(header.size, status).encode(response);
        match outcome {
            Ok((status, action)) => Ok(Reply {
                len,
                status,
                action,
            }),
            Err(error) => Err(Rejected {
                error,
                reply: Some(len),
            }),
        }
    }
}

/// Copies an answer's `payload` to where it goes in `response` and returns that part, or
/// refuses the request if `response` cannot hold the answer.
fn place<'r>(
    payload: &[u8],
    header: &Header,
    response: &'r mut [u8],
) -> Result<&'r mut [u8], Rejected> {
    let needed = ICMSG_HDR + payload.len();
    if response.len() < needed {
        let error = Error::ResponseBufferTooSmall {
            needed,
            len: response.len(),
        };
        return Err(refuse(header, error, response));
    }
    let body = &mut response[ICMSG_HDR..needed];
    body.copy_from_slice(payload);
    Ok(body)
}

/// A failure answer without payload, when `response` has room for one.
fn refuse(header: &Header, error: Error, response: &mut [u8]) -> Rejected {
    let reply =
        (response.len() >= ICMSG_HDR).then(|| header.response(0, error.status()).encode(response));
    Rejected { error, reply }
}
