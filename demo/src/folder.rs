//! The demo folder: each node's key and chain, the shop's wallet, the logs, and `demo.json`, the
//! setting a resumed network must keep (the difficulty floor its chain was mined at).
//!
//! ```text
//! DIR/demo.json                       {"difficulty_floor": 24}
//! DIR/node1/ DIR/node2/ ...           each node's key and chain store
//! DIR/wallet/                         the shoppers' keys
//! DIR/logs/tracker.log nodes.log visualizer.log shop.log demo.log
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The file that marks a folder as a demo folder and holds what a resumed demo must keep.
const SETTINGS: &str = "demo.json";

/// What a resumed demo must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Settings {
    /// The lowest floor the chain was ever mined at: every stored block meets it, so nodes at
    /// this floor (or a lower one) accept the whole chain again.
    difficulty_floor: u32,
}

/// A demo folder, new or resumed.
#[derive(Debug)]
pub struct Folder {
    root: PathBuf,
    settings: Option<Settings>,
}

impl Folder {
    /// Opens `dir` (created when missing), or a new folder in the temporary directory. A folder
    /// that holds files but no `demo.json` is refused: the demo would scatter node folders among
    /// someone's files.
    pub fn open(dir: Option<&Path>) -> anyhow::Result<Folder> {
        let root = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create the demo folder {}", dir.display()))?;
                dir.to_path_buf()
            }
            None => tempfile::Builder::new()
                .prefix("monkeychain-demo-")
                .tempdir()
                .context("cannot create a demo folder in the temporary directory")?
                // Kept on purpose: the user resumes the network from it with --data-dir.
                .keep(),
        };
        // Absolute, so the printed paths and the resume hint work from any directory.
        let root = std::fs::canonicalize(&root)
            .with_context(|| format!("cannot resolve the demo folder {}", root.display()))?;
        let path = root.join(SETTINGS);
        let settings = match std::fs::read(&path) {
            Ok(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is damaged", path.display()))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut entries = std::fs::read_dir(&root)
                    .with_context(|| format!("cannot read the folder {}", root.display()))?;
                if entries.next().is_some() {
                    bail!(
                        "{} is not empty and is not a demo folder (it has no {SETTINGS}); \
                         pass a new or empty folder to --data-dir",
                        root.display()
                    );
                }
                None
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Folder { root, settings })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this is a demo folder from an earlier run.
    pub fn resumed(&self) -> bool {
        self.settings.is_some()
    }

    /// Node `n`'s data dir (`n` from 1).
    pub fn node_dir(&self, n: usize) -> PathBuf {
        self.root.join(format!("node{n}"))
    }

    /// The shop's wallet.
    pub fn wallet_dir(&self) -> PathBuf {
        self.root.join("wallet")
    }

    /// Where the logs go.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The floor to run at: the flag's, else the one this folder's chain was mined at, else
    /// `default`; then remembers it. A floor above the chain's is refused, since the nodes would
    /// throw away every stored block mined below it.
    pub fn difficulty_floor(&mut self, flag: Option<u32>, default: u32) -> anyhow::Result<u32> {
        let saved = self.settings.map(|s| s.difficulty_floor);
        let floor = match (flag, saved) {
            (Some(flag), Some(saved)) if flag > saved => bail!(
                "this demo folder's chain was mined at a difficulty floor of {saved} bits; \
                 nodes at {flag} would refuse its blocks. Pass --difficulty-floor {saved} or \
                 lower, or start a new demo folder"
            ),
            (Some(flag), _) => flag,
            (None, Some(saved)) => saved,
            (None, None) => default,
        };
        let settings = Settings {
            difficulty_floor: floor,
        };
        if self.settings != Some(settings) {
            self.save(settings)?;
        }
        Ok(floor)
    }

    /// Writes `demo.json` through a temporary file, so a crash never leaves half of it.
    fn save(&mut self, settings: Settings) -> anyhow::Result<()> {
        let path = self.root.join(SETTINGS);
        let text = serde_json::to_string_pretty(&settings).context("cannot encode the settings")?;
        let temporary = self.root.join(format!("{SETTINGS}.tmp"));
        std::fs::write(&temporary, text + "\n")
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        self.settings = Some(settings);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_folder_keeps_its_floor_and_refuses_a_higher_one() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let root = dir.path().join("demo");
        let mut folder = Folder::open(Some(&root)).expect("a new folder");
        assert!(!folder.resumed());
        assert_eq!(folder.difficulty_floor(Some(12), 24).expect("a floor"), 12);

        let mut folder = Folder::open(Some(&root)).expect("the same folder");
        assert!(folder.resumed());
        assert_eq!(
            folder.difficulty_floor(None, 24).expect("the saved floor"),
            12
        );
        assert!(folder.difficulty_floor(Some(13), 24).is_err());
        assert_eq!(
            folder
                .difficulty_floor(Some(10), 24)
                .expect("a lower floor"),
            10
        );
        let mut folder = Folder::open(Some(&root)).expect("the same folder");
        assert_eq!(folder.difficulty_floor(None, 24).expect("the lowest"), 10);
    }

    #[test]
    fn a_folder_with_other_files_is_not_taken() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(dir.path().join("notes.txt"), "mine").expect("a file");
        let error = Folder::open(Some(dir.path())).expect_err("refused");
        assert!(
            format!("{error:#}").contains("not a demo folder"),
            "{error:#}"
        );
    }
}
