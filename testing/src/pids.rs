//! The processes the tests start, recorded by pid so that scripts/test.sh can stop exactly
//! these (and no other run's) should a test process die without unwinding.
//!
//! `OPD_TEST_PIDS_DIR` names a directory; each running process has an empty file there named by
//! its pid. Without the variable nothing is recorded: the handles still stop their processes
//! when dropped.

use std::path::PathBuf;

fn file(pid: u32) -> Option<PathBuf> {
    std::env::var_os("OPD_TEST_PIDS_DIR").map(|dir| PathBuf::from(dir).join(pid.to_string()))
}

pub fn record(pid: u32) {
    if let Some(path) = file(pid) {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(path, b"");
    }
}

pub fn forget(pid: u32) {
    if let Some(path) = file(pid) {
        let _ = std::fs::remove_file(path);
    }
}
