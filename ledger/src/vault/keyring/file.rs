//! The keyring file: its text format, owner-only permissions, and atomic writes.
//!
//! ```text
//! strongroom-keyring v1
//! # comments
//! id kr-<32 hex digits>
//! key 1 <created, ms since the epoch> <base64 of 32 bytes>
//! key 2 ...
//! ```
//!
//! Versions are numbered from 1 without gaps; the highest is current. The file is created with
//! mode 0600 from its first byte (a temporary file opened with that mode, linked into place
//! only if nothing is there), replaced whole by a rename on rotation, and refused when its mode
//! gives anything to group or others. Writers serialize on an advisory lock of a sibling
//! `.lock` file, so two rotations (a server and the CLI) cannot both add version n+1.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::vault::VaultError;
use crate::vault::types::{KEY_BYTES, Secret};

/// Most master-key versions a keyring holds; a rotation beyond it is refused.
pub const KEYRING_VERSIONS_MAX: usize = 256;
/// Largest keyring file read, in bytes (256 versions take about 20 KiB).
pub const KEYRING_FILE_BYTES_MAX: u64 = 64 << 10;
/// The mode of every file the keyring writes: owner read and write.
pub const KEYRING_FILE_MODE: u32 = 0o600;
/// The mode of a data directory the keyring creates.
pub const KEYRING_DIR_MODE: u32 = 0o700;
/// Longest keyring id, in bytes.
const KEYRING_ID_LEN_MAX: usize = 64;

const HEADER: &str = "strongroom-keyring v1";

/// One master key version.
pub(super) struct MasterKey {
    pub(super) version: u32,
    pub(super) created_ms: u64,
    pub(super) key: Secret,
}

/// The whole file.
pub(super) struct KeyringFile {
    pub(super) id: String,
    /// Versions 1..=n, in order.
    pub(super) keys: Vec<MasterKey>,
}

impl KeyringFile {
    pub(super) fn current(&self) -> Option<&MasterKey> {
        self.keys.last()
    }

    pub(super) fn version(&self, version: u32) -> Option<&MasterKey> {
        let index = usize::try_from(version).ok()?.checked_sub(1)?;
        self.keys.get(index)
    }
}

/// What identifies one state of the file on disk: a rename gives it a new inode, and a change
/// in place a new length or modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

fn keyring_error(path: &Path, what: impl std::fmt::Display) -> VaultError {
    VaultError::Keyring(format!("{}: {what}", path.display()))
}

/// The file's stamp now.
pub(super) fn stamp(path: &Path) -> Result<Stamp, VaultError> {
    std::fs::metadata(path)
        .map(|meta| Stamp::of(&meta))
        .map_err(|e| keyring_error(path, e))
}

/// Reads and checks the keyring: a regular file, owner-only, within its size bound, well
/// formed. The permissions are checked on the opened file, so a swap between check and read
/// cannot slip a wider file through.
pub(super) fn read(path: &Path) -> Result<(KeyringFile, Stamp), VaultError> {
    let mut file = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            keyring_error(
                path,
                "no keyring file here; create one with `strongroom keys init`",
            )
        } else {
            keyring_error(path, e)
        }
    })?;
    let meta = file.metadata().map_err(|e| keyring_error(path, e))?;
    if !meta.is_file() {
        return Err(keyring_error(path, "not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(keyring_error(
            path,
            format_args!(
                "permissions {mode:04o} let group or others read or write the master keys; \
                 the keyring must be owner-only (0600): run `chmod 600 {}`",
                path.display()
            ),
        ));
    }
    if meta.len() > KEYRING_FILE_BYTES_MAX {
        return Err(keyring_error(
            path,
            format_args!(
                "{} bytes, more than a keyring holds ({KEYRING_FILE_BYTES_MAX})",
                meta.len()
            ),
        ));
    }
    let mut text = Zeroizing::new(String::new());
    (&mut file)
        .take(KEYRING_FILE_BYTES_MAX)
        .read_to_string(&mut text)
        .map_err(|e| keyring_error(path, e))?;
    let parsed = parse(&text).map_err(|why| keyring_error(path, why))?;
    Ok((parsed, Stamp::of(&meta)))
}

fn parse(text: &str) -> Result<KeyringFile, String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("not a keyring: the first line is not `{HEADER}`"));
    }
    let mut id = None;
    let mut keys: Vec<MasterKey> = Vec::new();
    for (number, line) in lines.enumerate().map(|(i, l)| (i + 2, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        match fields.as_slice() {
            ["id", value] if id.is_none() => {
                if value.is_empty() || value.len() > KEYRING_ID_LEN_MAX {
                    return Err(format!("line {number}: a bad keyring id"));
                }
                id = Some((*value).to_owned());
            }
            ["key", version, created_ms, material] => {
                if keys.len() >= KEYRING_VERSIONS_MAX {
                    return Err(format!("more than {KEYRING_VERSIONS_MAX} versions"));
                }
                let expected = u32::try_from(keys.len() + 1).unwrap_or(u32::MAX);
                let version: u32 = version
                    .parse()
                    .map_err(|_| format!("line {number}: a bad version"))?;
                if version != expected {
                    return Err(format!(
                        "line {number}: version {version} where {expected} was expected"
                    ));
                }
                let created_ms: u64 = created_ms
                    .parse()
                    .map_err(|_| format!("line {number}: a bad creation time"))?;
                let key = decode_key(material).ok_or_else(|| {
                    format!("line {number}: the key is not base64 of {KEY_BYTES} bytes")
                })?;
                keys.push(MasterKey {
                    version,
                    created_ms,
                    key,
                });
            }
            _ => return Err(format!("line {number}: not `id ...` or `key ...`")),
        }
    }
    let id = id.ok_or("no `id` line")?;
    if keys.is_empty() {
        return Err("no keys".into());
    }
    Ok(KeyringFile { id, keys })
}

fn decode_key(text: &str) -> Option<Secret> {
    // Room for what base64 decoding estimates before it trims padding.
    let mut buffer = Zeroizing::new([0u8; KEY_BYTES + 4]);
    let len = STANDARD.decode_slice(text, buffer.as_mut_slice()).ok()?;
    (len == KEY_BYTES)
        .then(|| Secret::from_slice(&buffer[..KEY_BYTES]).ok())
        .flatten()
}

fn render(keyring: &KeyringFile) -> Zeroizing<String> {
    let mut text = Zeroizing::new(String::with_capacity(128 + 80 * keyring.keys.len()));
    text.push_str(HEADER);
    text.push_str(
        "\n# The master keys of a Strongroom vault. Owner-only (0600); back it up as a secret.\n\
         # Written by `strongroom keys init` and `strongroom keys rotate`; do not edit.\n",
    );
    text.push_str("id ");
    text.push_str(&keyring.id);
    text.push('\n');
    for key in &keyring.keys {
        let material = Zeroizing::new(STANDARD.encode(key.key.bytes()));
        text.push_str(&format!("key {} {} ", key.version, key.created_ms));
        text.push_str(&material);
        text.push('\n');
    }
    text
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Holds the keyring's writer lock until dropped: an advisory lock on `<path>.lock`, released
/// by the operating system if the process dies, so it never goes stale.
pub(super) struct WriteLock(File);

impl WriteLock {
    /// Waits for the lock (blocking: call from a blocking thread).
    pub(super) fn acquire(path: &Path) -> Result<WriteLock, VaultError> {
        let lock_path = sibling(path, ".lock");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(KEYRING_DIR_MODE)
                .create(dir)
                .map_err(|e| keyring_error(dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(KEYRING_FILE_MODE)
            .open(&lock_path)
            .map_err(|e| keyring_error(&lock_path, e))?;
        file.lock().map_err(|e| keyring_error(&lock_path, e))?;
        Ok(WriteLock(file))
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        // Closing the file releases the lock as well; unlocking first says so plainly.
        let _ = self.0.unlock();
    }
}

/// Writes the keyring to a temporary file of mode 0600 beside `path`, synced.
fn write_temporary(
    path: &Path,
    keyring: &KeyringFile,
    _lock: &WriteLock,
) -> Result<PathBuf, VaultError> {
    let temporary = sibling(path, ".tmp");
    // Left over from a crash: the lock is ours, so nobody else is writing it.
    match std::fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(keyring_error(&temporary, e)),
    }
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(KEYRING_FILE_MODE)
        .open(&temporary)
        .map_err(|e| keyring_error(&temporary, e))?;
    let text = render(keyring);
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| keyring_error(&temporary, e))?;
    Ok(temporary)
}

fn sync_dir(path: &Path) -> Result<(), VaultError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| keyring_error(dir, e))
}

/// Creates the keyring at `path`; refuses if a file is there. The file appears whole (linked
/// from a complete temporary) and owner-only from its creation.
pub(super) fn create(
    path: &Path,
    keyring: &KeyringFile,
    lock: &WriteLock,
) -> Result<(), VaultError> {
    let temporary = write_temporary(path, keyring, lock)?;
    // A hard link fails if the target exists: no keyring is ever replaced by `init`.
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    linked.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            keyring_error(
                path,
                "a keyring is already there; it is never overwritten (rotate it instead)",
            )
        } else {
            keyring_error(path, e)
        }
    })?;
    sync_dir(path)
}

/// Replaces the keyring at `path` whole (rename), under the writer lock.
pub(super) fn replace(
    path: &Path,
    keyring: &KeyringFile,
    lock: &WriteLock,
) -> Result<(), VaultError> {
    let temporary = write_temporary(path, keyring, lock)?;
    std::fs::rename(&temporary, path).map_err(|e| keyring_error(path, e))?;
    sync_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Secret {
        Secret::from_slice(&[byte; KEY_BYTES]).expect("32 bytes")
    }

    #[test]
    fn render_and_parse_agree() {
        let keyring = KeyringFile {
            id: "kr-test".into(),
            keys: vec![
                MasterKey {
                    version: 1,
                    created_ms: 5,
                    key: key(1),
                },
                MasterKey {
                    version: 2,
                    created_ms: 6,
                    key: key(2),
                },
            ],
        };
        let parsed = parse(&render(&keyring)).expect("parses");
        assert_eq!(parsed.id, "kr-test");
        assert_eq!(parsed.keys.len(), 2);
        assert_eq!(parsed.keys[1].key.bytes(), key(2).bytes());
        assert_eq!(parsed.keys[1].created_ms, 6);
        assert_eq!(parsed.current().map(|k| k.version), Some(2));
        assert!(parsed.version(0).is_none() && parsed.version(3).is_none());
    }

    #[test]
    fn malformed_files_are_refused_with_the_line() {
        let good_key = STANDARD.encode([7u8; KEY_BYTES]);
        let check = |text: &str, expected: &str| {
            let error = parse(text)
                .err()
                .unwrap_or_else(|| panic!("parsed {text:?}"));
            assert!(error.contains(expected), "{error} for {text:?}");
        };
        check("", "not a keyring");
        check("strongroom-keyring v2\n", "not a keyring");
        check(&format!("{HEADER}\nkey 1 0 {good_key}\n"), "no `id` line");
        check(&format!("{HEADER}\nid a\n"), "no keys");
        check(
            &format!("{HEADER}\nid a\nkey 2 0 {good_key}\n"),
            "line 3: version 2",
        );
        check(
            &format!("{HEADER}\nid a\nkey 1 x {good_key}\n"),
            "line 3: a bad creation",
        );
        check(
            &format!("{HEADER}\nid a\nkey 1 0 AAAA\n"),
            "line 3: the key",
        );
        check(
            &format!("{HEADER}\nid a\nid b\nkey 1 0 {good_key}\n"),
            "line 3: not",
        );
        check(&format!("{HEADER}\nid a\nsecret\n"), "line 3: not");
    }
}
