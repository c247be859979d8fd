//! The handshake's pieces: where it stands ([`Phase`]), who the peer says it is ([`Peer`]), the
//! checks on its hello, and the proof each end gives of the cluster secret. The link
//! (src/replication/link/mod.rs) sequences them: hello both ways, then a proof both ways.

use hmac::Mac;

use super::message::{Hello, MAGIC, PROTOCOL_VERSION, Refusal};
use super::{HmacSha256, Secret};
use crate::clock::NodeId;

/// Where the handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Our hello is out; waiting for the peer's.
    AwaitHello,
    /// Our proof is out; waiting for the peer's.
    AwaitAuth,
    /// Authenticated: changes flow both ways.
    Up,
    /// We sent everything and a `Bye`; still taking frames until the peer's `Bye`.
    Closing,
    /// Closed (by a refusal, an error or a `Bye`); nothing more is accepted.
    Closed,
}

/// Who the peer is, from its hello.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub id: NodeId,
    pub name: String,
    pub incarnation: u128,
    pub challenge: [u8; 32],
}

/// Why a hello is refused, if it is: another program or protocol version, another cluster, or
/// this node itself (a link to its own address).
pub(crate) fn check_hello(hello: &Hello, cluster: &str, us: NodeId) -> Option<Refusal> {
    if hello.magic != MAGIC {
        return Some(Refusal::NotLeafcache);
    }
    if hello.protocol != PROTOCOL_VERSION {
        return Some(Refusal::Protocol {
            ours: PROTOCOL_VERSION,
            theirs: hello.protocol,
        });
    }
    if hello.cluster != cluster {
        return Some(Refusal::Cluster {
            ours: cluster.to_string(),
            theirs: hello.cluster.clone(),
        });
    }
    (hello.node == us).then_some(Refusal::SelfLink)
}

/// The proof of the cluster secret: HMAC-SHA256 over the challenge, the prover's and the
/// verifier's ids and the cluster, keyed by the secret. Binding the ids stops a proof being
/// reflected back or replayed to another node.
fn proof_mac(
    secret: &Secret,
    cluster: &str,
    challenge: &[u8; 32],
    prover: NodeId,
    verifier: NodeId,
) -> HmacSha256 {
    let mut mac = secret.mac();
    mac.update(b"leafcache-auth-v1");
    mac.update(challenge);
    mac.update(&prover.0.to_be_bytes());
    mac.update(&verifier.0.to_be_bytes());
    mac.update(cluster.as_bytes());
    mac
}

/// The proof `prover` sends `verifier` over the verifier's `challenge`.
pub(crate) fn proof(
    secret: &Secret,
    cluster: &str,
    challenge: &[u8; 32],
    prover: NodeId,
    verifier: NodeId,
) -> [u8; 32] {
    proof_mac(secret, cluster, challenge, prover, verifier)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether `proof` is `prover`'s proof over our `challenge`, compared in constant time.
pub(crate) fn verify(
    secret: &Secret,
    cluster: &str,
    challenge: &[u8; 32],
    prover: NodeId,
    verifier: NodeId,
    proof: &[u8],
) -> bool {
    proof_mac(secret, cluster, challenge, prover, verifier)
        .verify_slice(proof)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(cluster: &str, node: u128) -> Hello {
        Hello {
            magic: MAGIC,
            protocol: PROTOCOL_VERSION,
            cluster: cluster.into(),
            node: NodeId(node),
            name: "peer".into(),
            role: crate::replication::Role::Leaf,
            incarnation: 1,
            challenge: [7; 32],
            timeout_ms: 1_000,
            compression: 0,
        }
    }

    #[test]
    fn hellos_from_elsewhere_are_refused() {
        assert_eq!(check_hello(&hello("c", 2), "c", NodeId(1)), None);
        let wrong_magic = Hello {
            magic: MAGIC ^ 1,
            ..hello("c", 2)
        };
        assert_eq!(
            check_hello(&wrong_magic, "c", NodeId(1)),
            Some(Refusal::NotLeafcache)
        );
        let old = Hello {
            protocol: PROTOCOL_VERSION - 1,
            ..hello("c", 2)
        };
        assert!(matches!(
            check_hello(&old, "c", NodeId(1)),
            Some(Refusal::Protocol { .. })
        ));
        assert!(matches!(
            check_hello(&hello("other", 2), "c", NodeId(1)),
            Some(Refusal::Cluster { .. })
        ));
        assert_eq!(
            check_hello(&hello("c", 1), "c", NodeId(1)),
            Some(Refusal::SelfLink)
        );
    }

    #[test]
    fn a_proof_holds_only_for_its_secret_ids_and_cluster() {
        let secret = Secret::new(b"s3cret");
        let challenge = [9u8; 32];
        let (a, b) = (NodeId(1), NodeId(2));
        let p = proof(&secret, "c", &challenge, a, b);
        assert!(verify(&secret, "c", &challenge, a, b, &p));
        assert!(!verify(&Secret::new(b"other"), "c", &challenge, a, b, &p));
        assert!(!verify(&secret, "c", &challenge, b, a, &p), "reflected");
        assert!(
            !verify(&secret, "c", &challenge, a, NodeId(3), &p),
            "replayed"
        );
        assert!(!verify(&secret, "d", &challenge, a, b, &p));
        assert!(!verify(&secret, "c", &[0; 32], a, b, &p));
        assert!(!verify(&secret, "c", &challenge, a, b, &p[..31]));
    }
}
