//! Keys that look like paths, differ only in case or normalisation, or exceed a file name: each
//! is stored under its own file inside the store's directory and round-trips unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use common::{now, open};
use std::path::Path;
use tasktrack_core::*;
use unicode_normalization::UnicodeNormalization;

/// Every file below `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn awkward_ids() -> Vec<String> {
    let e_acute = "é".to_string();
    vec![
        "..".into(),
        ".".into(),
        "../../escaped".into(),
        "/etc/passwd".into(),
        "a/b".into(),
        "a\\b".into(),
        "..\\..\\win".into(),
        "%".into(),
        "%2E%2E".into(),
        "%252E".into(),
        "A".into(),
        "a".into(),
        "%41".into(),
        "Straße".into(),
        "STRASSE".into(),
        e_acute.nfc().collect(),
        e_acute.nfd().collect(),
        "~".into(),
        "x~0123".into(),
        "x".repeat(512),
        format!("{}y", "x".repeat(511)),
        "é".repeat(256),
        "ok-id_1".into(),
        "con".into(),
        "CON".into(),
        "nul".into(),
        "aux.json".into(),
        "com1".into(),
        "LPT9".into(),
        "%63on".into(),
    ]
}

#[tokio::test]
async fn awkward_ids_and_jobs_stay_inside_the_directory_and_never_collide() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("store");
    let store = open(&root).await;
    let ids = awkward_ids();
    let jobs = [
        "..",
        "../outside",
        "/abs",
        "J",
        "j",
        "%",
        &"j".repeat(512),
        "con",
        "nul",
    ];
    for job in jobs {
        let job = JobName::new(job).unwrap();
        let tasks: Vec<NewTask> = ids
            .iter()
            .map(|id| NewTask::new(TaskId::new(id.clone()).unwrap()))
            .collect();
        let created = store
            .create(&job, &tasks, CreateMode::SkipExisting, now())
            .await
            .unwrap();
        assert_eq!(
            created.created as usize,
            ids.len(),
            "job {job:?}: every id is distinct"
        );
        for id in &ids {
            let task = store
                .get(&TaskKey::new(job.clone(), TaskId::new(id.clone()).unwrap()))
                .await
                .unwrap();
            assert_eq!(task.id.as_str(), id);
            assert_eq!(task.job, job);
        }
        let page = store
            .list(&TaskQuery::new(job.clone()).with_limit(1000))
            .await
            .unwrap();
        assert_eq!(page.tasks.len(), ids.len());
        assert_eq!(store.counts(&job).await.unwrap().known as usize, ids.len());
    }
    // Nothing was written outside the store's directory.
    let outside: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, vec![std::ffi::OsString::from("store")]);
    // Every name is one plain ASCII component of a safe length.
    let all = files(&root);
    assert!(all.len() >= jobs.len() * ids.len());
    for path in all {
        let rel = path.strip_prefix(&root).unwrap();
        for part in rel.components() {
            let name = part.as_os_str().to_str().unwrap();
            assert!(name.len() <= 150, "{name}");
            assert!(
                name.is_ascii() && !name.contains(['/', '\\', '\0']),
                "{name}"
            );
        }
    }
    // No name is one of Windows' device names (in any case, before any extension).
    for path in files(&root) {
        for part in path.strip_prefix(&root).unwrap().components() {
            let name = part.as_os_str().to_str().unwrap().to_lowercase();
            let stem = name.split('.').next().unwrap();
            let device = ["con", "prn", "aux", "nul"].contains(&stem)
                || ((stem.starts_with("com") || stem.starts_with("lpt"))
                    && stem.len() == 4
                    && stem.as_bytes()[3].is_ascii_digit());
            assert!(!device, "{} is a Windows device name", path.display());
        }
    }
    // Case-folded names are distinct too, so a case-insensitive file system keeps them apart.
    let tasks_dir = root.join("jobs/j/tasks");
    let names: Vec<String> = std::fs::read_dir(&tasks_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_lowercase())
        .collect();
    let distinct: std::collections::HashSet<_> = names.iter().collect();
    assert_eq!(distinct.len(), names.len());
}

#[test]
fn keys_with_nul_or_control_characters_are_rejected_before_any_file_is_named() {
    assert!(TaskId::new("a\0b").is_err());
    assert!(JobName::new("a\0b").is_err());
    assert!(TaskId::new("line\nbreak").is_err());
    assert!(TaskId::new("x".repeat(513)).is_err());
}

#[tokio::test]
async fn a_file_holding_another_long_id_is_reported_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let job = JobName::new("long").unwrap();
    let (a, b) = (
        TaskId::new("x".repeat(512)).unwrap(),
        TaskId::new(format!("{}y", "x".repeat(511))).unwrap(),
    );
    store
        .create(
            &job,
            &[NewTask::new(a.clone())],
            CreateMode::SkipExisting,
            now(),
        )
        .await
        .unwrap();
    // Simulate a hash collision: put a's file where b's belongs.
    let tasks = dir.path().join("jobs/long/tasks");
    let enc = |id: &TaskId| {
        tasks.join(format!(
            "{}.json",
            tasktrack_file::keys::encode(id.as_str())
        ))
    };
    std::fs::copy(enc(&a), enc(&b)).unwrap();
    let before = std::fs::read(enc(&b)).unwrap();
    let err = store
        .get(&TaskKey::new(job.clone(), b.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { location, .. } if location.contains("~")),
        "{err}"
    );
    let err = store
        .create(
            &job,
            &[NewTask::new(b.clone())],
            CreateMode::SkipExisting,
            now(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_eq!(
        std::fs::read(enc(&b)).unwrap(),
        before,
        "the colliding file was not overwritten"
    );
    assert_eq!(
        store.get(&TaskKey::new(job, a.clone())).await.unwrap().id,
        a
    );
}
