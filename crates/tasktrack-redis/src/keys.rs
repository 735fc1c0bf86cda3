//! Key names. Every key of a job carries the hash tag `{<job>}`, so a job's keys share one Redis
//! Cluster slot and one Lua script may touch them all; job records and their state index share
//! the tag `{%jobs}` (no encoded job name can be `%jobs`, see [`encode_job`]).

use tasktrack_core::{JobName, JobState, Status, TaskKey};

/// Key names for one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

/// A job name inside braces: `%`, `{` and `}` are percent-encoded, so the hash tag always ends
/// at the job's own closing brace and no two job names map to the same tag.
pub(crate) fn encode_job(job: &str) -> String {
    let mut out = String::with_capacity(job.len());
    for c in job.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// The prefix as given.
    pub fn name(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>:` — every key starts with it (tests delete by it).
    pub fn prefix(&self) -> String {
        format!("{}:", self.prefix)
    }

    /// The base every key of `job` starts with: `<prefix>:{<job>}:` (`KEYS[1]` of task scripts).
    pub fn job_base(&self, job: &JobName) -> String {
        format!("{}:{{{}}}:", self.prefix, encode_job(job.as_str()))
    }

    /// A task's hash.
    pub fn task(&self, key: &TaskKey) -> String {
        format!("{}t:{}", self.job_base(&key.job), key.id)
    }

    /// Per `(status[:stage])` counters of a job.
    pub fn counters(&self, job: &JobName) -> String {
        format!("{}c", self.job_base(job))
    }

    /// A job's listing index for one status (lex-ordered by updated_at, id).
    pub fn by_status(&self, job: &JobName, status: Status) -> String {
        format!("{}s:{}", self.job_base(job), status.as_str())
    }

    /// The base of the job records (`KEYS[1]` of job scripts).
    pub fn jobs_base(&self) -> String {
        format!("{}:{{%jobs}}:", self.prefix)
    }

    /// Job name → JSON record.
    pub fn job_records(&self) -> String {
        format!("{}rec", self.jobs_base())
    }

    /// Every job name, lex-ordered.
    pub fn all_jobs(&self) -> String {
        format!("{}all", self.jobs_base())
    }

    /// Job names in one state, lex-ordered.
    pub fn jobs_in(&self, state: JobState) -> String {
        format!("{}st:{}", self.jobs_base(), state.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_in_job_names_never_escape_the_hash_tag() {
        let keys = Keys::new("tt");
        let job = JobName::new("a}b{%").unwrap();
        assert_eq!(keys.job_base(&job), "tt:{a%7Db%7B%25}:");
        assert_ne!(encode_job("%jobs"), "%jobs");
    }
}
