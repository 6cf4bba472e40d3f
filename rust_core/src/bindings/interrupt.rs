//! Running a kernel with the GIL released while staying interruptible, and mapping kernel
//! errors to `monitor.errors` — the one place where Rust errors become Python ones.
//!
//! The kernel runs on a worker thread; the calling (main) thread waits for it and, every
//! `SIGNAL_POLL`, re-attaches to the interpreter to run `check_signals()`. When a handler raises
//! (Ctrl-C gives `KeyboardInterrupt`, a SIGTERM handler whatever it raises), the cancellation
//! flag is set, the kernel stops at its next chunk, and that exception is returned.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::kernel_error::KernelError;

const SIGNAL_POLL: Duration = Duration::from_millis(50);

mod py_errors {
    pyo3::import_exception!(monitor.errors, KernelError);
}

/// `monitor.errors.KernelError` with the kernel's one-line message.
pub fn to_py_err(err: KernelError) -> PyErr {
    match err {
        KernelError::Input(msg) => py_errors::KernelError::new_err(msg),
        KernelError::Cancelled => PyRuntimeError::new_err("kernel cancelled"),
    }
}

/// `monitor.errors.KernelError` for a problem found while converting arguments.
pub fn input_err(msg: impl Into<String>) -> PyErr {
    py_errors::KernelError::new_err(msg.into())
}

/// Runs `kernel` without the GIL, polling for signals (see the module documentation).
pub fn run_interruptible<T, F>(py: Python<'_>, kernel: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce(&AtomicBool) -> Result<T, KernelError> + Send,
{
    let cancel = AtomicBool::new(false);
    py.detach(|| {
        std::thread::scope(|scope| {
            let (sender, receiver) = mpsc::channel();
            let flag = &cancel;
            scope.spawn(move || {
                // A send error means the caller gave up waiting (signal): nothing to report.
                let _ = sender.send(kernel(flag));
            });
            loop {
                match receiver.recv_timeout(SIGNAL_POLL) {
                    Ok(result) => return result.map_err(to_py_err),
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(signal) = Python::attach(|py| py.check_signals()) {
                            cancel.store(true, Ordering::Relaxed);
                            return Err(signal); // the scope joins the worker, which stops soon
                        }
                    }
                    // The worker panicked; leaving the scope re-raises its panic.
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err(PyRuntimeError::new_err("kernel thread failed"));
                    }
                }
            }
        })
    })
}
