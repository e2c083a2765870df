//! jemalloc, the process's allocator (`main.rs`), returns freed memory to the system only
//! while the process keeps allocating, unless its background thread purges on a timer.
//! wsgate's sessions go quiet for hours after moving a burst: without the thread, every
//! buffer they freed would stay resident for as long as the process is idle.
//!
//! Turned on as a service starts, that is after Pingora's daemon fork: a fork turns
//! jemalloc's background threads off in the child.

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

pub(crate) struct AllocatorService;

#[async_trait]
impl BackgroundService for AllocatorService {
    async fn start(&self, _shutdown: ShutdownWatch) {
        if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
            log::warn!("jemalloc background purging is off ({e}): memory freed by idle sessions is returned only when the process allocates again");
        }
    }
}
