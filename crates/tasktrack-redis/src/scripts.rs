//! The Lua scripts, one per operation in `lua/`, each task script prefixed with `lua/common.lua`.
//!
//! They run with EVALSHA; the `redis` crate loads a script on the first `NOSCRIPT` answer (a fresh
//! or restarted server) and retries, so nothing needs loading up front.

use redis::Script;

macro_rules! task_script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("../lua/common.lua"),
            "\n",
            include_str!(concat!("../lua/", $file))
        ))
    };
}

/// Every script, compiled once per store.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub insert: Script,
    pub replace: Script,
    pub delete: Script,
    pub delete_damaged: Script,
    pub claim_next: Script,
    pub succeed: Script,
    pub succeed_claim_next: Script,
    pub heartbeat: Script,
    pub fail: Script,
    pub job_write: Script,
    pub job_delete: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            insert: task_script!("insert.lua"),
            replace: task_script!("replace.lua"),
            delete: task_script!("delete.lua"),
            delete_damaged: task_script!("delete_damaged.lua"),
            claim_next: task_script!("claim_next.lua"),
            succeed: task_script!("succeed.lua"),
            succeed_claim_next: task_script!("succeed_claim_next.lua"),
            heartbeat: task_script!("heartbeat.lua"),
            fail: task_script!("fail.lua"),
            job_write: Script::new(include_str!("../lua/job_write.lua")),
            job_delete: Script::new(include_str!("../lua/job_delete.lua")),
        }
    }
}
