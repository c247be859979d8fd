//! Load callbacks: single-flight per key, errors shared and not cached, sync and async loaders.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use leafcache::{Cache, Error};
use tokio::sync::Notify;

/// 32 concurrent misses on one key make exactly one loader call, and all 32 get its value.
///
/// On a current-thread runtime, `join_all` polls the callers before the last future releases the
/// loader, so they are waiting on the flight when the load completes; any caller polled later
/// finds the value cached. Either way the loader runs once.
#[tokio::test(flavor = "current_thread")]
async fn concurrent_misses_share_one_load() {
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let cache = {
        let (calls, release) = (calls.clone(), release.clone());
        Cache::builder()
            .async_load_callback(move |key: Bytes| {
                let (calls, release) = (calls.clone(), release.clone());
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    Ok::<_, std::io::Error>(format!("loaded {}", String::from_utf8_lossy(&key)))
                }
            })
            .build()
            .unwrap()
    };

    type Call = std::pin::Pin<Box<dyn std::future::Future<Output = Option<Result<Bytes, Error>>>>>;
    let callers = (0..32).map(|_| {
        let cache = cache.clone();
        Box::pin(async move { Some(cache.get_or_load("hot").await) }) as Call
    });
    let releaser = Box::pin(async move {
        release.notify_one();
        None
    }) as Call;
    // Without single-flight, 31 extra loads would wait forever for a release: the deadline turns
    // that into a failure instead of a hang.
    let all = futures::future::join_all(callers.chain(std::iter::once(releaser)));
    let results = tokio::time::timeout(std::time::Duration::from_secs(10), all)
        .await
        .expect("callers still waiting: more than one load was started");

    assert_eq!(calls.load(Ordering::SeqCst), 1, "exactly one loader call");
    let values: Vec<_> = results.into_iter().flatten().collect();
    assert_eq!(values.len(), 32);
    for v in values {
        assert_eq!(v.unwrap(), "loaded hot");
    }
    assert_eq!(
        cache.get("hot").unwrap(),
        "loaded hot",
        "the loaded value is cached"
    );
    let stats = cache.stats();
    assert_eq!((stats.loads, stats.load_errors), (1, 0));
}

/// The same with a blocking loader on a multi-threaded runtime: callers on several threads, still
/// one call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_loader_is_single_flight_across_threads() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = Arc::new(std::sync::Mutex::new(go_rx));
    let cache = {
        let calls = calls.clone();
        Cache::builder()
            .load_callback(move |key: &[u8]| {
                calls.fetch_add(1, Ordering::SeqCst);
                go_rx.lock().unwrap().recv().ok();
                Ok::<_, std::io::Error>(key.to_vec())
            })
            .build()
            .unwrap()
    };
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get_or_load("k").await })
        })
        .collect();
    // Wait (with a deadline) until the one load has started, then let it finish.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "loader never called");
        tokio::task::yield_now().await;
    }
    go_tx.send(()).unwrap();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "k");
    }
    // Callers that arrived after the load finished hit the cache; none started a second load.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn loader_errors_reach_every_waiter_and_are_not_cached() {
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let cache = {
        let (calls, release) = (calls.clone(), release.clone());
        Cache::builder()
            .async_load_callback(move |_key: Bytes| {
                let (calls, release) = (calls.clone(), release.clone());
                async move {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    if n == 0 {
                        release.notified().await;
                        Err("backend down".to_string())
                    } else {
                        Ok("recovered".to_string())
                    }
                }
            })
            .build()
            .unwrap()
    };
    let a = cache.get_or_load("k");
    let b = cache.get_or_load("k");
    let r = async {
        release.notify_one();
    };
    let (a, b, ()) = tokio::join!(a, b, r);
    for res in [a, b] {
        match res {
            Err(Error::Load(e)) => assert_eq!(e.to_string(), "backend down"),
            other => panic!("expected the loader's error, got {other:?}"),
        }
    }
    assert!(cache.get("k").is_none(), "an error is not cached");
    assert_eq!(cache.get_or_load("k").await.unwrap(), "recovered");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let stats = cache.stats();
    assert_eq!((stats.loads, stats.load_errors), (1, 1));
}

/// A sync loader runs on the blocking pool on a current-thread runtime and in place
/// (`block_in_place`) on a multi-thread one: a panic is an error on both.
async fn panicking_loader_is_an_error() {
    let cache = Cache::builder()
        .load_callback(|key: &[u8]| -> Result<Vec<u8>, std::io::Error> {
            if key == b"bad" {
                panic!("loader bug");
            }
            Ok(b"fine".to_vec())
        })
        .build()
        .unwrap();
    let err = cache.get_or_load("bad").await.unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
    assert_eq!(cache.get_or_load("good").await.unwrap(), "fine");
    assert_eq!(cache.stats().load_errors, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_loader_is_an_error_not_a_crash() {
    panicking_loader_is_an_error().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_loader_is_an_error_not_a_crash_on_a_multi_thread_runtime() {
    panicking_loader_is_an_error().await;
}

#[tokio::test]
async fn a_hit_never_calls_the_loader_and_no_loader_is_a_clear_error() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = {
        let calls = calls.clone();
        Cache::builder()
            .load_callback(move |_: &[u8]| {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>("loaded")
            })
            .build()
            .unwrap()
    };
    cache.set("k", "present").unwrap();
    assert_eq!(cache.get_or_load("k").await.unwrap(), "present");
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let plain = Cache::builder().build().unwrap();
    assert!(
        matches!(plain.get_or_load("k").await, Err(Error::NoLoader(name)) if name == "default")
    );
}

#[tokio::test]
async fn loaded_values_take_the_cache_ttl() {
    let clock = leafcache::ManualClock::new(5_000);
    let cache = Cache::builder()
        .clock(clock.clone())
        .expiration_time("10s")
        .load_callback(|_: &[u8]| Ok::<_, std::io::Error>("v"))
        .build()
        .unwrap();
    cache.get_or_load("k").await.unwrap();
    assert_eq!(cache.peek("k").unwrap().expires_at, Some(15_000));
}
