//! How an app plugs into the kernel: [`crate::main!`] and [`ExitCode`].
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! #![forbid(unsafe_code)]
//!
//! async fn main() -> ringbolt::ExitCode {
//!     ringbolt::println!("hello from {}", ringbolt::env::platform());
//!     ringbolt::time::sleep(core::time::Duration::from_millis(100)).await;
//!     ringbolt::ExitCode::SUCCESS
//! }
//! ringbolt::main!(main);
//! ```

/// The status an app's `main` returns; it becomes the VM's exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitCode(u8);

impl ExitCode {
    pub const SUCCESS: ExitCode = ExitCode(0);
    pub const FAILURE: ExitCode = ExitCode(1);
    /// The largest code an app can report; 126 and up mean the kernel stopped the VM (127: panic).
    pub const MAX: u8 = 125;

    pub fn as_u8(self) -> u8 {
        self.0
    }
}

/// Codes above [`ExitCode::MAX`] are reported as `MAX`.
impl From<u8> for ExitCode {
    fn from(code: u8) -> Self {
        ExitCode(code.min(Self::MAX))
    }
}

/// Names the app's entry point: an `async fn() -> ExitCode`.
#[macro_export]
macro_rules! main {
    ($main:path) => {
        #[unsafe(no_mangle)]
        fn ringbolt_app_main() -> $crate::__private::MainFuture {
            $crate::__private::Box::pin($main())
        }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use alloc::boxed::Box;

    pub type MainFuture = core::pin::Pin<Box<dyn core::future::Future<Output = super::ExitCode>>>;
}
