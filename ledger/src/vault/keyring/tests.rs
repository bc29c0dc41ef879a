//! The local keyring on temporary files: created owner-only, refused when open to others,
//! missing or malformed (a clear error, never a panic), never overwritten; rotation adds
//! versions that old data keys outlive, and another instance on the same file sees them.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::*;
use crate::vault::Purpose;

fn context() -> KeyContext {
    KeyContext::deployment(Purpose::CardData)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The message of a [`VaultError::Keyring`]; anything else fails the test.
fn keyring_error<T: fmt::Debug>(result: Result<T, VaultError>) -> String {
    match result {
        Err(VaultError::Keyring(message)) => message,
        other => panic!("expected a keyring error, got {other:?}"),
    }
}

/// Writes `bytes` to `path`, owner-only.
fn write_private(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

fn new_keyring(dir: &tempfile::TempDir) -> LocalKeyring {
    LocalKeyring::init(&dir.path().join("keyring")).unwrap()
}

#[test]
fn init_creates_an_owner_only_file_in_an_owner_only_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("vault").join("keyring");
    let keyring = LocalKeyring::init(&path).unwrap();
    assert_eq!(mode(&path), KEYRING_FILE_MODE);
    assert_eq!(mode(&dir.path().join("data")), KEYRING_DIR_MODE);
    assert_eq!(mode(&dir.path().join("data/vault")), KEYRING_DIR_MODE);
    assert_eq!(
        mode(&dir.path().join("data/vault/keyring.lock")),
        KEYRING_FILE_MODE
    );
    assert!(!dir.path().join("data/vault/keyring.tmp").exists());
    let id = keyring.id();
    assert!(
        id.starts_with("kr-") && id.len() == 3 + 2 * KEYRING_ID_RANDOM_BYTES,
        "{id}"
    );
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("strongroom-keyring v1\n"), "{text}");
    assert!(text.contains(&format!("\nid {id}\n")));
    assert_eq!(text.lines().filter(|l| l.starts_with("key ")).count(), 1);
    assert_ne!(
        LocalKeyring::init(&dir.path().join("other")).unwrap().id(),
        id
    );
}

#[test]
fn init_never_overwrites_a_keyring() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = new_keyring(&dir);
    let before = fs::read(keyring.path()).unwrap();
    let error = keyring_error(LocalKeyring::init(keyring.path()));
    assert!(error.contains("already there"), "{error}");
    assert_eq!(fs::read(keyring.path()).unwrap(), before);
    assert!(!dir.path().join("keyring.tmp").exists());
    let opened = LocalKeyring::open_or_init(keyring.path()).unwrap();
    assert_eq!(opened.id(), keyring.id());
    assert_eq!(fs::read(keyring.path()).unwrap(), before);
}

#[test]
fn open_or_init_creates_a_keyring_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring");
    let created = LocalKeyring::open_or_init(&path).unwrap();
    assert_eq!(mode(&path), KEYRING_FILE_MODE);
    let opened = LocalKeyring::open_or_init(&path).unwrap();
    assert_eq!(opened.id(), created.id());
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere");
    let error = keyring_error(LocalKeyring::open(&path));
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(
        error.contains("no keyring file") && error.contains("keys init"),
        "{error}"
    );
    assert!(!path.exists(), "open creates nothing");
}

#[test]
fn a_keyring_open_to_group_or_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = new_keyring(&dir);
    let path = keyring.path();
    let check = |mode: u32, refused: bool| {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        let opened = LocalKeyring::open(path);
        if refused {
            let error = keyring_error(opened);
            assert!(
                error.contains(&format!("permissions {mode:04o}")),
                "{error}"
            );
            assert!(
                error.contains(&format!("chmod 600 {}", path.display())),
                "{error}"
            );
        } else {
            assert_eq!(opened.unwrap().id(), keyring.id(), "{mode:o}");
        }
    };
    check(0o640, true);
    check(0o644, true);
    check(0o604, true);
    check(0o660, true);
    check(0o602, true);
    check(0o610, true);
    check(0o777, true);
    check(0o600, false);
    check(0o400, false);
}

#[test]
fn a_corrupt_or_truncated_keyring_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = new_keyring(&dir);
    let path = keyring.path().to_owned();
    let text = fs::read(&path).unwrap();
    // Every prefix but the whole file (less its last newline) is refused, with the path.
    for len in 0..text.len() - 1 {
        write_private(&path, &text[..len]);
        let error = keyring_error(LocalKeyring::open(&path));
        assert!(
            error.starts_with(&path.display().to_string()),
            "{len}: {error}"
        );
    }
    write_private(&path, &text[..text.len() - 1]);
    assert_eq!(LocalKeyring::open(&path).unwrap().id(), keyring.id());

    write_private(&path, &[0xff, 0xfe, 0x00, 0x80]);
    keyring_error(LocalKeyring::open(&path));
    let huge = vec![b'#'; usize::try_from(KEYRING_FILE_BYTES_MAX).unwrap() + 1];
    write_private(&path, &huge);
    let error = keyring_error(LocalKeyring::open(&path));
    assert!(error.contains("more than a keyring holds"), "{error}");
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
    let error = keyring_error(LocalKeyring::open(&path));
    assert!(error.contains("not a regular file"), "{error}");
}

#[tokio::test]
async fn rotation_adds_a_version_and_old_data_keys_still_unwrap() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = new_keyring(&dir);
    let first = keyring.status().await.unwrap();
    assert_eq!(first.service, "local");
    assert_eq!(first.key_id, keyring.id());
    assert_eq!(first.version, 1);
    assert_eq!(first.versions, vec![(1, first.current_since)]);
    let age = first.age(SystemTime::now());
    assert!(age < Duration::from_secs(60), "{age:?}");

    let (old_key, old) = keyring.generate_data_key(&context()).await.unwrap();
    assert_eq!(old.key_version, 1);
    let rotated = keyring.rotate().await.unwrap();
    assert_eq!(rotated.version, 2);
    assert_eq!(rotated.versions.len(), 2);
    assert_eq!(rotated.versions[0], (1, first.current_since));
    assert_eq!(rotated.versions[1], (2, rotated.current_since));
    assert!(rotated.current_since >= first.current_since);
    assert_eq!(keyring.status().await.unwrap(), rotated);

    let (new_key, new) = keyring.generate_data_key(&context()).await.unwrap();
    assert_eq!(new.key_version, 2);
    let unwrapped = keyring.decrypt_data_key(&context(), &old).await.unwrap();
    assert_eq!(unwrapped.bytes(), old_key.bytes());
    let unwrapped = keyring.decrypt_data_key(&context(), &new).await.unwrap();
    assert_eq!(unwrapped.bytes(), new_key.bytes());
    assert!(!keyring.is_current(&old).await.unwrap());
    assert!(keyring.is_current(&new).await.unwrap());
    let moved = keyring.rewrap_data_key(&context(), &old).await.unwrap();
    assert_eq!(moved.key_version, 2);
    let unwrapped = keyring.decrypt_data_key(&context(), &moved).await.unwrap();
    assert_eq!(unwrapped.bytes(), old_key.bytes());

    assert_eq!(mode(keyring.path()), KEYRING_FILE_MODE, "still owner-only");
    assert!(!dir.path().join("keyring.tmp").exists());
    let reopened = LocalKeyring::open(keyring.path()).unwrap();
    assert_eq!(reopened.status().await.unwrap(), rotated);
    assert_eq!(keyring.requests_total(), 0);
}

#[tokio::test]
async fn another_instance_on_the_same_file_sees_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let server = new_keyring(&dir);
    // The CLI, in another process; and a server that looks at the file at every new key.
    let cli = LocalKeyring::open(server.path()).unwrap();
    let watchful = KeyringConfig {
        current_check_interval: Duration::ZERO,
        ..KeyringConfig::default()
    };
    let eager = LocalKeyring::open_with(server.path(), watchful).unwrap();
    let (_, before) = server.generate_data_key(&context()).await.unwrap();

    cli.rotate().await.unwrap();
    let (cli_key, after) = cli.generate_data_key(&context()).await.unwrap();
    assert_eq!(after.key_version, 2);
    // A blob of a version the server has not read yet makes it read the file again.
    let unwrapped = server.decrypt_data_key(&context(), &after).await.unwrap();
    assert_eq!(unwrapped.bytes(), cli_key.bytes());
    assert_eq!(server.status().await.unwrap().version, 2);

    let (_, new) = eager.generate_data_key(&context()).await.unwrap();
    assert_eq!(
        new.key_version, 2,
        "a new data key comes under the new version"
    );
    assert!(!eager.is_current(&before).await.unwrap());
    let unwrapped = cli.decrypt_data_key(&context(), &new).await;
    assert!(unwrapped.is_ok());
}

#[tokio::test]
async fn reads_for_unknown_versions_are_spaced_by_the_reload_interval() {
    let dir = tempfile::tempdir().unwrap();
    let cli = new_keyring(&dir);
    let slow = KeyringConfig {
        reload_interval_min: Duration::from_secs(3600),
        current_check_interval: Duration::from_secs(3600),
    };
    let server = LocalKeyring::open_with(cli.path(), slow).unwrap();
    let (_, mut future) = cli.generate_data_key(&context()).await.unwrap();
    future.key_version = 2;
    let unknown = server
        .decrypt_data_key(&context(), &future)
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, VaultError::UnknownKey { version: 2, .. }),
        "{unknown:?}"
    );
    cli.rotate().await.unwrap();
    let (_, real) = cli.generate_data_key(&context()).await.unwrap();
    // Read once a moment ago: not again within the interval.
    let unknown = server
        .decrypt_data_key(&context(), &real)
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, VaultError::UnknownKey { version: 2, .. }),
        "{unknown:?}"
    );
    // What the operator asks for is read now.
    assert_eq!(server.status().await.unwrap().version, 2);
    assert!(server.decrypt_data_key(&context(), &real).await.is_ok());
}

#[tokio::test]
async fn two_instances_rotating_at_once_add_two_versions() {
    let dir = tempfile::tempdir().unwrap();
    let a = new_keyring(&dir);
    let b = LocalKeyring::open(a.path()).unwrap();
    let (by_a, by_b) = tokio::join!(a.rotate(), b.rotate());
    let mut versions = [by_a.unwrap().version, by_b.unwrap().version];
    versions.sort_unstable();
    assert_eq!(versions, [2, 3]);
    let status = LocalKeyring::open(a.path())
        .unwrap()
        .status()
        .await
        .unwrap();
    assert_eq!(status.version, 3);
    let (key, wrapped) = a.generate_data_key(&context()).await.unwrap();
    let unwrapped = b.decrypt_data_key(&context(), &wrapped).await.unwrap();
    assert_eq!(unwrapped.bytes(), key.bytes());
}

#[tokio::test]
async fn a_file_that_changes_badly_is_refused_and_the_keys_in_memory_stay() {
    let dir = tempfile::tempdir().unwrap();
    let writer = new_keyring(&dir);
    let path = writer.path().to_owned();
    let watchful = KeyringConfig {
        current_check_interval: Duration::ZERO,
        ..KeyringConfig::default()
    };
    let server = LocalKeyring::open_with(&path, watchful).unwrap();
    let (key, wrapped) = server.generate_data_key(&context()).await.unwrap();
    let good = fs::read(&path).unwrap();

    // Garbage, another keyring, a version changed.
    let other_dir = tempfile::tempdir().unwrap();
    let other = fs::read(new_keyring(&other_dir).path()).unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    let line = text.lines().find(|l| l.starts_with("key 1 ")).unwrap();
    let changed_line = format!("key 1 0 {}", STANDARD.encode([7u8; 32]));
    let changed = text.replace(line, &changed_line);
    let cases: [(&[u8], &str); 3] = [
        (b"strongroom-keyring v1\nid kr-x\n", "no keys"),
        (&other, "now holds keyring"),
        (changed.as_bytes(), "version 1 changed"),
    ];
    for (bytes, expected) in cases {
        write_private(&path, bytes);
        let error = keyring_error(server.status().await);
        assert!(error.contains(expected), "{error}");
        // Sealing and opening go on with the keys read before.
        let (_, new) = server.generate_data_key(&context()).await.unwrap();
        assert_eq!((new.key_id.as_str(), new.key_version), (server.id(), 1));
        let unwrapped = server.decrypt_data_key(&context(), &wrapped).await.unwrap();
        assert_eq!(unwrapped.bytes(), key.bytes());
        assert!(server.is_current(&wrapped).await.unwrap());
    }
    // A rotation does not build on a file that holds another keyring.
    write_private(&path, &other);
    let error = keyring_error(server.rotate().await);
    assert!(error.contains("not rotated"), "{error}");
    write_private(&path, &good);
    assert_eq!(server.status().await.unwrap().version, 1);
}

#[tokio::test]
async fn a_keyring_holds_at_most_versions_max() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring");
    let full = |versions: usize| KeyringFile {
        id: "kr-full".into(),
        keys: (1..=versions)
            .map(|v| MasterKey {
                version: u32::try_from(v).unwrap(),
                created_ms: 0,
                key: Secret::generate().unwrap(),
            })
            .collect(),
    };
    let lock = WriteLock::acquire(&path).unwrap();
    file::create(&path, &full(KEYRING_VERSIONS_MAX), &lock).unwrap();
    drop(lock);
    let keyring = LocalKeyring::open(&path).unwrap();
    let error = keyring_error(keyring.rotate().await);
    assert!(
        error.contains(&format!("already {KEYRING_VERSIONS_MAX} versions")),
        "{error}"
    );
    assert_eq!(
        keyring.status().await.unwrap().versions.len(),
        KEYRING_VERSIONS_MAX
    );

    let over = dir.path().join("over");
    let lock = WriteLock::acquire(&over).unwrap();
    file::create(&over, &full(KEYRING_VERSIONS_MAX + 1), &lock).unwrap();
    drop(lock);
    let error = keyring_error(LocalKeyring::open(&over));
    assert!(
        error.contains(&format!("more than {KEYRING_VERSIONS_MAX} versions")),
        "{error}"
    );
}

#[tokio::test]
async fn data_keys_are_bound_to_their_context_keyring_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = new_keyring(&dir);
    let tenant =
        |id: &str| KeyContext::tenant(crate::ids::TenantId::new(id).unwrap(), Purpose::CardData);
    let (key, wrapped) = keyring.generate_data_key(&tenant("acme")).await.unwrap();
    assert_eq!(wrapped.blob.len(), WRAPPED_BYTES);
    let unwrapped = keyring
        .decrypt_data_key(&tenant("acme"), &wrapped)
        .await
        .unwrap();
    assert_eq!(unwrapped.bytes(), key.bytes());
    for other in [
        tenant("globex"),
        context(),
        KeyContext::deployment(Purpose::FingerprintKey),
    ] {
        let error = keyring
            .decrypt_data_key(&other, &wrapped)
            .await
            .unwrap_err();
        assert_eq!(error, VaultError::KeyUnwrap, "{other}");
    }
    // The Debug form names the file and id, never a key.
    let text = fs::read_to_string(keyring.path()).unwrap();
    let material = text.lines().find_map(|l| l.strip_prefix("key 1 ")).unwrap();
    let material = material.split_whitespace().nth(1).unwrap();
    let debug = format!("{keyring:?}");
    assert!(
        debug.contains(keyring.id()) && !debug.contains(material),
        "{debug}"
    );
}
