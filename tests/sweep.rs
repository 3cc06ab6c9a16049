//! The staging-file sweep over a real `LocalFileSystem` directory: abandoned staging files
//! (old) go, and nothing else does — fresh staging files, objects whose names merely contain
//! `#`, real objects, directories named like staging files, files behind symlinks.

use std::fs::{File, FileTimes};
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tower_origin_pull::config::Config;
use tower_origin_pull::sweep::{DEFAULT_STAGING_MAX_AGE, sweep_staging};

fn age(path: &FsPath, by: Duration) {
    let when = SystemTime::now() - by;
    let file = File::options().write(true).open(path).unwrap();
    file.set_times(FileTimes::new().set_modified(when).set_accessed(when))
        .unwrap();
}

fn write(path: &FsPath, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn old_staging_files_go_and_everything_else_stays() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(root).unwrap());
    // Real objects, some with `#` in their names (object_store takes them as objects).
    for key in ["slow/k.bin", "a#b", "dir/a#1x", "x#y#1"] {
        store
            .put(
                &Path::parse(key).unwrap(),
                PutPayload::from_static(b"object"),
            )
            .await
            .unwrap();
    }
    // A staging file left by a killed fill, two days old; one in the root, one deeper.
    let abandoned = root.join("slow/k.bin#1");
    write(&abandoned, &[7; 8192]);
    age(&abandoned, Duration::from_secs(2 * 86_400));
    let abandoned_root = root.join("top#12");
    write(&abandoned_root, b"xx");
    age(&abandoned_root, Duration::from_secs(90_000));
    // A staging file of a write that is (or may be) still running.
    let fresh = root.join("slow/k.bin#2");
    write(&fresh, b"live");
    // Old files that are not staging files.
    for name in ["a#b", "dir/a#1x", "x#y#1", "slow/k.bin"] {
        age(&root.join(name), Duration::from_secs(10 * 86_400));
    }
    // A directory named like a staging file, with an object inside.
    store
        .put(
            &Path::parse("d#3/inner").unwrap(),
            PutPayload::from_static(b"inner"),
        )
        .await
        .unwrap();
    // A symlink named like a staging file, to an old file elsewhere: neither is touched.
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("precious#1");
    write(&target, b"precious");
    age(&target, Duration::from_secs(10 * 86_400));
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&target, root.join("link#5")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("linked_dir")).unwrap();
    }

    let report = sweep_staging(root, DEFAULT_STAGING_MAX_AGE).await.unwrap();
    assert_eq!(report.removed, 2, "{report:?}");
    assert_eq!(report.bytes, 8192 + 2, "{report:?}");
    assert_eq!(report.kept_young, 1, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert!(!abandoned.exists() && !abandoned_root.exists());
    assert!(fresh.exists());
    assert!(target.exists(), "a symlink's target is never touched");
    #[cfg(unix)]
    assert!(root.join("link#5").symlink_metadata().is_ok());
    // Every object is still there and readable.
    for key in ["slow/k.bin", "a#b", "dir/a#1x", "x#y#1", "d#3/inner"] {
        store
            .get(&Path::parse(key).unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    // A second sweep finds nothing more to do.
    let again = sweep_staging(root, DEFAULT_STAGING_MAX_AGE).await.unwrap();
    assert_eq!((again.removed, again.kept_young), (0, 1), "{again:?}");
}

#[tokio::test]
async fn a_staging_file_of_a_real_upload_in_progress_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    // An upload in progress, as `BucketStore` does for large objects.
    let mut upload = store.put_multipart(&Path::from("big.bin")).await.unwrap();
    upload
        .put_part(PutPayload::from(vec![1u8; 1024]))
        .await
        .unwrap();
    let staging: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(staging, ["big.bin#1"], "object_store's staging name");
    let report = sweep_staging(dir.path(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((report.removed, report.kept_young), (0, 1), "{report:?}");
    upload.complete().await.unwrap();
    assert_eq!(
        store.get(&Path::from("big.bin")).await.unwrap().meta.size,
        1024
    );
}

#[tokio::test]
async fn any_age_works_and_a_missing_root_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("k#1");
    write(&old, b"x");
    age(&old, Duration::from_secs(3600));
    // An age reaching before the epoch: nothing is that old.
    let report = sweep_staging(dir.path(), Duration::MAX).await.unwrap();
    assert_eq!((report.removed, report.kept_young), (0, 1));
    let report = sweep_staging(dir.path(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(report.removed, 1);
    assert!(
        sweep_staging(&dir.path().join("missing"), Duration::ZERO)
            .await
            .is_err()
    );
}

#[test]
fn the_configuration_says_what_to_sweep() {
    let config = |extra: &str| {
        Config::from_toml(&format!(
            "[store]\nurl = \"file:///var/mirror\"\n{extra}\n[[rules]]\norigin = {{ hosts = [\"http://h/\"] }}\n"
        ))
        .unwrap()
    };
    let c = config("");
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    assert_eq!(
        c.store.staging_sweep().unwrap(),
        Some(("/var/mirror".into(), DEFAULT_STAGING_MAX_AGE))
    );
    assert_eq!(DEFAULT_STAGING_MAX_AGE, Duration::from_secs(86_400));
    let c = config("staging_max_age = \"12h\"");
    assert_eq!(
        c.store.staging_sweep().unwrap(),
        Some(("/var/mirror".into(), Duration::from_secs(12 * 3600)))
    );
    let c = config("staging_max_age = \"18446744073709551615s\"");
    assert!(c.validate().is_empty());
    assert!(
        config("staging_max_age = \"off\"")
            .store
            .staging_sweep()
            .unwrap()
            .is_none()
    );
    for bad in ["0s", "59s", "never"] {
        let c = config(&format!("staging_max_age = \"{bad}\""));
        let problems = c.validate();
        assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
        assert_eq!(problems[0].at, "store.staging_max_age");
        assert!(c.store.staging_sweep().is_err());
    }
    // Only `file://` stores have staging files.
    let c = Config::from_toml(
        "[store]\nurl = \"memory://\"\n[[rules]]\norigin = { hosts = [\"http://h/\"] }\n",
    )
    .unwrap();
    assert!(c.store.staging_sweep().unwrap().is_none());
}
