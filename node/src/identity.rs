//! The node's identity: an ed25519 key made on first start and kept in the data dir. Its public
//! key is the node's id in the topology and the account its mining rewards go to.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use protocol::Keypair;

/// The key file's name inside the data dir.
pub const KEY_FILE: &str = "node.key";

/// Loads the node's key from `dir`, or makes and saves one. A damaged key file is an error, never
/// silently replaced: the node's identity and its coins depend on it.
pub fn load_or_create(dir: &Path) -> anyhow::Result<Keypair> {
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut seed = [0u8; 32];
            if hex_decode(text.trim(), &mut seed).is_err() {
                bail!(
                    "node key file {} is damaged: expected 64 hex digits",
                    path.display()
                );
            }
            Ok(Keypair::from_seed(seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::from_seed(rand::random());
            save(&path, &key).with_context(|| format!("saving node key {}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading node key {}", path.display())),
    }
}

fn hex_decode(text: &str, out: &mut [u8; 32]) -> Result<(), ()> {
    if text.len() != 64 {
        return Err(());
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2).ok_or(())?, 16).map_err(|_| ())?;
    }
    Ok(())
}

/// Writes the key readable by its owner only, through a temporary file and a rename, so a crash
/// never leaves half a key.
fn save(path: &Path, key: &Keypair) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let seed: String = key.seed().iter().map(|b| format!("{b:02x}")).collect();
    writeln!(file, "{seed}")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
