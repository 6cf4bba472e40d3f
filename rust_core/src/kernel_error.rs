//! What a kernel returns when it refuses its input or is stopped, and the cancellation flag
//! that long loops poll between chunks of work.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a kernel did not produce a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// The cancellation flag was raised (Ctrl-C / SIGTERM seen by the binding).
    Cancelled,
    /// An argument is unusable: shapes, sizes or parameters. One line, naming the input.
    Input(String),
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Cancelled => write!(f, "kernel cancelled"),
            KernelError::Input(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for KernelError {}

/// Shorthand for an input error.
pub fn input_error(msg: impl Into<String>) -> KernelError {
    KernelError::Input(msg.into())
}

/// `Err(Cancelled)` once `cancel` is raised; kernels call it between chunks of work.
pub fn check_cancel(cancel: &AtomicBool) -> Result<(), KernelError> {
    if cancel.load(Ordering::Relaxed) {
        Err(KernelError::Cancelled)
    } else {
        Ok(())
    }
}
