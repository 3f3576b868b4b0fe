//! The wallet: a folder of shoppers' keys, one JSON file per shopper.
//!
//! A key file is named by the shopper's account id in lowercase hex (`<64 hex>.json`), because
//! names may hold `/` or anything else a file name cannot, and holds `{"name": ..., "seed": "<64
//! hex>"}`. It is created readable by its owner only (mode 0600), in a folder only its owner can
//! enter (0700), through a temporary file that is then linked into place: a crash never leaves
//! half a key, and an existing key is never overwritten. A key file that cannot be read, does not
//! parse, or whose seed is not the key of its file name is *damaged*: that is an error naming the
//! file, never a reason to replace it, because the shopper's coins depend on that key. A key file
//! others can read is refused too, as ssh refuses such a private key.
//!
//! The wallet keeps keys only. Balances, cages and names come from the chain; the records a
//! shopper sent that are not mined yet are in its [`crate::outbox`].

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use protocol::{AccountId, Keypair};
use serde::{Deserialize, Serialize};

/// Why the wallet could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The folder cannot be listed or made.
    #[error("cannot use the wallet folder {}: {source}", dir.display())]
    Folder {
        /// The folder.
        dir: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A key or outbox file does not hold what it should.
    #[error("{} is damaged: {reason}; move it away or restore it from a backup", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A key file that others than its owner may read.
    #[error("key file {} can be read by others (mode {mode:03o}): run chmod 600 on it", path.display())]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// A shopper whose key is in the wallet.
#[derive(Debug, Clone)]
pub struct Shopper {
    /// The name the shopper joins (or joined) with.
    pub name: String,
    /// The shopper's key.
    pub key: Keypair,
    /// The key file.
    pub path: PathBuf,
}

impl Shopper {
    /// The shopper's account.
    pub fn account(&self) -> AccountId {
        self.key.account()
    }
}

/// What a key file holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    name: String,
    seed: String,
}

/// A wallet folder. Nothing is created until a shopper is.
#[derive(Debug, Clone)]
pub struct Wallet {
    dir: PathBuf,
}

impl Wallet {
    /// The wallet in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Wallet {
        Wallet { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every shopper in the wallet, by name. A missing folder is an empty wallet; any damaged
    /// key file is an error.
    pub fn shoppers(&self) -> Result<Vec<Shopper>, WalletError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(WalletError::Folder {
                    dir: self.dir.clone(),
                    source,
                });
            }
        };
        let mut shoppers = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| WalletError::Folder {
                dir: self.dir.clone(),
                source,
            })?;
            let path = entry.path();
            let Some(account) = key_file_account(&path) else {
                continue;
            };
            shoppers.push(load(&path, &account)?);
        }
        shoppers.sort_by(|a, b| {
            (a.name.to_lowercase(), a.account()).cmp(&(b.name.to_lowercase(), b.account()))
        });
        Ok(shoppers)
    }

    /// The shopper called `name`, ignoring case as the chain does.
    pub fn find(&self, name: &str) -> Result<Option<Shopper>, WalletError> {
        let wanted = name.to_lowercase();
        Ok(self
            .shoppers()?
            .into_iter()
            .find(|s| s.name.to_lowercase() == wanted))
    }

    /// Saves a new shopper's key. Never overwrites a file.
    pub fn create(&self, name: &str, key: Keypair) -> Result<Shopper, WalletError> {
        ensure_private_dir(&self.dir)?;
        let path = self.dir.join(format!("{}.json", key.account()));
        let file = KeyFile {
            name: name.to_string(),
            seed: hex::encode(key.seed()),
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| WalletError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_new(&path, format!("{text}\n").as_bytes())?;
        Ok(Shopper {
            name: name.to_string(),
            key,
            path,
        })
    }

    /// Deletes the key of a shopper that never joined (its join was refused). Its outbox is
    /// the caller's to remove first ([`crate::outbox::remove`]): the outbox is built on the
    /// wallet, not the other way round.
    pub fn forget(&self, shopper: &Shopper) -> Result<(), WalletError> {
        match std::fs::remove_file(&shopper.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(WalletError::Write {
                path: shopper.path.clone(),
                source,
            }),
        }
    }
}

/// The account a file name claims, if it is a key file's name (`<64 lowercase hex>.json`).
fn key_file_account(path: &Path) -> Option<AccountId> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".json")?;
    if stem.len() != 64 || !stem.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    stem.parse().ok()
}

/// Reads and checks one key file.
fn load(path: &Path, account: &AccountId) -> Result<Shopper, WalletError> {
    let damaged = |reason: String| WalletError::Damaged {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| damaged(format!("cannot read it: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(WalletError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| damaged(format!("cannot read it: {e}")))?;
    let file: KeyFile = serde_json::from_str(&text)
        .map_err(|e| damaged(format!("expected {{\"name\", \"seed\"}} JSON ({e})")))?;
    let mut seed = [0u8; 32];
    if file.seed.len() != 64 || hex::decode_to_slice(&file.seed, &mut seed).is_err() {
        return Err(damaged("the seed is not 64 hex digits".into()));
    }
    let key = Keypair::from_seed(seed);
    if key.account() != *account {
        return Err(damaged(
            "the seed is not the key of this file's name".into(),
        ));
    }
    protocol::record::check_text("name", &file.name)
        .map_err(|e| damaged(format!("bad name: {e}")))?;
    Ok(Shopper {
        name: file.name,
        key,
        path: path.to_path_buf(),
    })
}

/// Makes `dir` (and its parents) if missing; the wallet folder itself only its owner may enter.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), WalletError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| WalletError::Folder {
            dir: dir.to_path_buf(),
            source,
        })
}

/// A temporary file beside `path`, unique to this process and call.
fn temp_path(path: &Path) -> PathBuf {
    let nonce: u64 = rand::random();
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.{nonce:016x}.tmp", std::process::id()))
}

/// Writes `bytes` to a new owner-only temporary file beside `path` and syncs it.
fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf, WalletError> {
    let tmp = temp_path(path);
    let fail = |source| WalletError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(tmp)
}

/// Syncs the folder holding `path`, so a rename or link survives a crash.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
}

/// Creates `path` with `bytes`, atomically, failing if it exists.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), WalletError> {
    let tmp = write_temp(path, bytes)?;
    // A hard link, unlike a rename, refuses to replace an existing file.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(|source| WalletError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    sync_parent(path);
    Ok(())
}

/// Replaces `path` with `bytes`, atomically.
pub(crate) fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), WalletError> {
    let tmp = write_temp(path, bytes)?;
    if let Err(source) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(WalletError::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    sync_parent(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_reads_back_private_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let wallet = Wallet::new(dir.path().join("w"));
        assert!(wallet.shoppers().unwrap().is_empty());
        let key = Keypair::from_seed([3; 32]);
        let made = wallet.create("Ann/Lee", key.clone()).unwrap();
        let mode = std::fs::metadata(&made.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(wallet.dir())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let found = wallet.find("ann/lee").unwrap().unwrap();
        assert_eq!(found.account(), key.account());
        assert_eq!(found.name, "Ann/Lee");
        assert!(wallet.create("other", key).is_err());
        assert_eq!(wallet.shoppers().unwrap().len(), 1);
    }

    #[test]
    fn damaged_and_exposed_key_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let wallet = Wallet::new(dir.path());
        let made = wallet.create("ann", Keypair::from_seed([4; 32])).unwrap();
        std::fs::write(&made.path, "{\"name\": \"ann\", \"seed\": \"12\"}").unwrap();
        let err = wallet.shoppers().unwrap_err().to_string();
        assert!(err.contains(&made.path.display().to_string()), "{err}");
        assert!(err.contains("damaged"), "{err}");
        // Another key's seed under this file's name.
        let other = hex::encode([5u8; 32]);
        std::fs::write(
            &made.path,
            format!("{{\"name\": \"ann\", \"seed\": \"{other}\"}}"),
        )
        .unwrap();
        assert!(matches!(
            wallet.shoppers(),
            Err(WalletError::Damaged { .. })
        ));
        std::fs::remove_file(&made.path).unwrap();
        let made = wallet.create("ann", Keypair::from_seed([4; 32])).unwrap();
        std::fs::set_permissions(&made.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = wallet.shoppers().unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
