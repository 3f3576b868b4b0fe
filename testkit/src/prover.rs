//! A listener that answers the tracker's address checks for many node keys at once: what
//! simulated nodes (the bench's thousand, a test's made-up ids) need to be listed, since the
//! tracker lists an id only once it proved itself at the address it advertises. Every key
//! advertises this one listener's address; a check's `H` names the id it expects.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use protocol::codec::LineCodec;
use protocol::handshake::{Accept, Identity, Nonce};
use protocol::hash::Hash256;
use protocol::wire::Message;
use protocol::{AccountId, Keypair};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

/// How long a check's connection may stay open for its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// The listener; dropping it stops it.
pub struct Prover {
    /// Where it listens, `IP:PORT`: the address every one of its keys advertises.
    pub addr: String,
    task: JoinHandle<()>,
}

impl Prover {
    /// Listens on `ip`, port 0, and proves any of `keys` to whoever asks.
    pub async fn start(ip: &str, keys: Vec<Keypair>) -> Prover {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind the prover");
        let addr = listener.local_addr().expect("bound address").to_string();
        let keys: Arc<HashMap<AccountId, Identity>> = Arc::new(
            keys.into_iter()
                .map(|key| {
                    let identity = Identity {
                        key: key.clone(),
                        addr: addr.clone(),
                    };
                    (key.account(), identity)
                })
                .collect(),
        );
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, keys.clone()));
            }
        });
        Prover { addr, task }
    }
}

impl Drop for Prover {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers one hello with the proof of the key it names.
async fn answer(stream: TcpStream, keys: Arc<HashMap<AccountId, Identity>>) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut link = Framed::new(stream, LineCodec::<Message>::new());
    let Ok(Some(Ok(Message::Hello(hello)))) =
        tokio::time::timeout(HELLO_TIMEOUT, link.next()).await
    else {
        return;
    };
    let Some(me) = hello.to.and_then(|to| keys.get(&to)) else {
        return;
    };
    // Fresh enough for a test: the checker's own nonce is what makes the proof single-use.
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nonce = Nonce(*Hash256::digest(&n.to_le_bytes()).as_bytes());
    if let Ok((proof, _)) = Accept::on_hello(me, &hello, nonce) {
        let _ = link.send(Message::Proof(proof)).await;
    }
}
