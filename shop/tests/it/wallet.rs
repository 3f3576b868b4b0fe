//! Key files: readable by their owner only, and a damaged or exposed one is reported, never
//! silently replaced.

use std::os::unix::fs::PermissionsExt;

use crate::{Net, files, ok, refused, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_files_are_private_and_a_damaged_one_is_reported_not_replaced() {
    let net = Net::start(1).await;
    let t = &net.tracker.addr;
    let wallet = net.wallet("w");
    let alice = ok(t, &wallet, &["join", "alice"]).await;

    let path = wallet.join(format!("{}.json", text(&alice, "account")));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    let dir_mode = std::fs::metadata(&wallet).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700, "wallet mode {dir_mode:o}");
    let key: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(key["name"], "alice");
    let seed = text(&key, "seed");
    assert_eq!(seed.len(), 64);
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(&seed, &mut bytes).unwrap();
    assert_eq!(
        protocol::Keypair::from_seed(bytes).account().to_string(),
        text(&alice, "account")
    );

    // Damaged: every command that needs the wallet names the file, and leaves it as it is.
    std::fs::write(&path, "{\"name\": \"alice\", \"seed\": \"not hex\"}").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = files(&wallet);
    let where_ = path.display().to_string();
    for args in [
        vec!["buy", "alice", "marmoset"],
        vec!["join", "alice"],
        vec!["join", "someone"],
    ] {
        let line = refused(t, &wallet, &args, &where_).await;
        assert!(line.contains("is damaged"), "{line}");
    }
    assert_eq!(files(&wallet), before, "the damaged file was touched");

    // Readable by others: refused until it is private again.
    std::fs::write(&path, serde_json::to_string(&key).unwrap()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(t, &wallet, &["buy", "alice", "marmoset"], "chmod 600").await;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let buy = ok(t, &wallet, &["buy", "alice", "marmoset"]).await;
    assert_eq!(buy["cage"], serde_json::json!({"marmoset": 1}));
}
