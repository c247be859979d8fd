//! Pub/sub across a three-level tree (hub ← relay ← leaf-1, hub ← leaf-2): a `PUBLISH` at any
//! node reaches the subscribers of every node exactly once — no echo back along the link it came
//! on — in RESP2 and RESP3 shapes, with channel and pattern subscriptions.

mod support;

use std::time::Duration;

use leafcache::net::MemoryNet;
use leafcache::{LinkState, Node};
use support::resp::{Client, V};

fn node(net: &MemoryNet, name: &str, hub: Option<&str>, listen: bool) -> Node {
    let mut b = Node::builder()
        .name(name)
        .transport(net.host(name))
        .resp_address("127.0.0.1:0");
    if let Some(hub) = hub {
        b = b.remote_address(format!("mem:{hub}"));
    }
    if listen {
        b = b.local_address(format!("mem:{name}"));
    }
    b.build().unwrap()
}

async fn all_up(nodes: &[&Node]) {
    support::eventually(Duration::from_secs(10), "every link up", || {
        for n in nodes {
            let links = n.links();
            if let Some(l) = links.iter().find(|l| l.state != LinkState::Up) {
                return Err(format!("{}: {:?}", n.name(), l.state));
            }
        }
        Ok(())
    })
    .await;
}

/// Reads pushes until `n` messages arrived (duplicates are caught by the next read, which
/// expects the next message, and by the final check that nothing more came).
fn messages(c: &mut Client, n: usize) -> Vec<V> {
    let mut got = Vec::new();
    while got.len() < n {
        match c.read_within(Duration::from_secs(10)) {
            Some(v) => got.push(v),
            None => panic!("{} of {n} messages arrived: {got:?}", got.len()),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_anywhere_reaches_every_subscriber_once() {
    let net = MemoryNet::new();
    let hub = node(&net, "hub", None, true);
    let relay = node(&net, "relay", Some("hub"), true);
    let leaf1 = node(&net, "leaf-1", Some("relay"), false);
    let leaf2 = node(&net, "leaf-2", Some("hub"), false);
    let nodes = [&hub, &relay, &leaf1, &leaf2];
    // Each node's leaves count among its links, so wait until the tree is whole.
    support::eventually(Duration::from_secs(10), "the tree forms", || {
        let ok = hub.links().len() == 2 && relay.links().len() == 2;
        if ok {
            Ok(())
        } else {
            Err("links missing".into())
        }
    })
    .await;
    all_up(&nodes).await;

    // One RESP2 channel subscriber and one RESP3 pattern subscriber at every node.
    let mut subs = Vec::new();
    for n in nodes {
        let mut plain = Client::connect(n.resp_addr().unwrap());
        let confirm = plain.cmd("SUBSCRIBE news");
        assert_eq!(
            confirm,
            V::Array(vec![V::b("subscribe"), V::b("news"), V::Int(1)])
        );
        let mut push = Client::connect(n.resp_addr().unwrap());
        assert!(matches!(push.cmd("HELLO 3"), V::Map(_)));
        assert_eq!(
            push.cmd("PSUBSCRIBE n*"),
            V::Push(vec![V::b("psubscribe"), V::b("n*"), V::Int(1)])
        );
        subs.push((n.name().to_string(), plain, push));
    }

    for (i, publisher) in nodes.iter().enumerate() {
        let mut p = Client::connect(publisher.resp_addr().unwrap());
        let text = format!("from-{}", publisher.name());
        // This node's two subscribers received it; the others' are not counted.
        assert_eq!(
            p.cmd(&format!("PUBLISH news {text}")),
            V::Int(2),
            "publisher {i}"
        );
        for (name, plain, push) in subs.iter_mut() {
            let got = messages(plain, 1);
            assert_eq!(
                got[0],
                V::Array(vec![V::b("message"), V::b("news"), V::b(&text)]),
                "at {name}"
            );
            let got = messages(push, 1);
            assert_eq!(
                got[0],
                V::Push(vec![
                    V::b("pmessage"),
                    V::b("n*"),
                    V::b("news"),
                    V::b(&text)
                ]),
                "at {name}"
            );
        }
    }
    // A channel nobody matches reaches no one, and PUBSUB sees this node's subscriptions only.
    let mut p = Client::connect(leaf2.resp_addr().unwrap());
    assert_eq!(p.cmd("PUBLISH other x"), V::Int(0));
    assert_eq!(
        p.cmd("PUBSUB NUMSUB news other"),
        V::Array(vec![V::b("news"), V::Int(1), V::b("other"), V::Int(0)])
    );
    assert_eq!(p.cmd("PUBSUB NUMPAT"), V::Int(1));
    assert_eq!(p.cmd("PUBSUB CHANNELS"), V::Array(vec![V::b("news")]));
    for (name, plain, push) in subs.iter_mut() {
        for c in [plain, push] {
            if let Some(extra) = c.read_within(Duration::from_millis(200)) {
                panic!("a message arrived twice or unasked at {name}: {extra:?}");
            }
        }
    }
    // In RESP2's subscribed mode only the pub/sub commands run.
    let (_, plain, _) = &mut subs[0];
    let refused = plain.cmd("GET k");
    assert!(
        refused.text().starts_with("ERR Can't execute 'get'"),
        "{refused:?}"
    );
    assert_eq!(plain.cmd("PING"), V::Array(vec![V::b("pong"), V::b("")]));
    for n in nodes {
        n.shutdown().await;
    }
}
