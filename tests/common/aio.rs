//! For the async tests only (tokio is a dev-dependency of the library, not
//! of every crate whose tests share `tests/common`).

/// tokio's multi-thread runtime on two workers, for the async tests.
pub fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("tokio runtime")
}
