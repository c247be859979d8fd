//! Read-through from files, measured: 100,000 product JSON files and 100,000 random binary images
//! (10–200 KiB) under a folder, read with skewed (Zipf) lookups by client threads, once straight
//! from the files and once through a node whose `products` and `images` caches read misses
//! through `file:` origins, over RESP with the `redis` crate. Prints reads/s, MiB/s and latency
//! percentiles for both, and the caches' hits, misses and origin reads.
//!
//! `cargo run --release --example origin -- [--products N] [--images N] [--reads N]
//! [--threads N] [--dir PATH] [--image-cache 1GiB]`
//!
//! By default 10,000 products and 1,000 images, about 100 MiB of files. The measured set of
//! BENCHMARKS.md (`--products 100000 --images 100000`) is about 10 GiB: opt in with those flags,
//! and the example says how much it is about to write before it writes it.
//!
//! The files are written once under `--dir` (default `target/origin-data`) and reused by later
//! runs with the same counts. The direct reads are served by the OS page cache once warm, as they
//! would be on a file server; the node's are RESP round trips over loopback.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use leafcache::{CacheConfig, Node, Origin};
use rand::{Rng, RngCore, SeedableRng};
use rand_distr::{Distribution, Zipf};

struct Args {
    products: u64,
    images: u64,
    reads: usize,
    threads: usize,
    dir: PathBuf,
    image_cache: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        products: 10_000,
        images: 1_000,
        reads: 200_000,
        threads: 4,
        dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/origin-data"),
        image_cache: 1 << 30,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--products" => a.products = number()?,
            "--images" => a.images = number()?,
            "--reads" => a.reads = number()? as usize,
            "--threads" => a.threads = number()?.max(1) as usize,
            "--dir" => a.dir = PathBuf::from(&value),
            "--image-cache" => {
                a.image_cache = value
                    .parse::<bytesize::ByteSize>()
                    .map_err(|e| format!("{flag}: {e}"))?
                    .as_u64()
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// Writes the files unless a previous run left the same set.
fn write_files(a: &Args) -> std::io::Result<()> {
    let stamp = a.dir.join(format!("written-{}-{}", a.products, a.images));
    if stamp.exists() {
        println!("reusing the files under {}", a.dir.display());
        return Ok(());
    }
    // Images average 105 KiB (10–200 KiB, uniform).
    let bytes = a.images * 105 * 1024 + a.products * 110;
    if bytes > 1 << 30 {
        eprintln!(
            "warning: writing about {} of files under {} (once; later runs reuse them)",
            bytesize::ByteSize(bytes),
            a.dir.display()
        );
    }
    let started = Instant::now();
    std::fs::create_dir_all(a.dir.join("products"))?;
    std::fs::create_dir_all(a.dir.join("images"))?;
    for id in 0..a.products {
        let json = format!(
            r#"{{"id":{id},"name":"product {id}","price_cents":{},"stock":{},"tags":["catalog","item-{}"]}}"#,
            100 + id % 9_900,
            id % 50,
            id % 97
        );
        std::fs::write(a.dir.join(format!("products/{id}.json")), json)?;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut buf = vec![0u8; 200 << 10];
    let mut total = 0u64;
    for id in 0..a.images {
        let len = rng.random_range((10 << 10)..=(200 << 10));
        rng.fill_bytes(&mut buf[..len]);
        std::fs::write(a.dir.join(format!("images/{id}.bin")), &buf[..len])?;
        total += len as u64;
    }
    std::fs::write(&stamp, b"")?;
    println!(
        "wrote {} product files and {} images ({:.0} MiB) in {:.1?}",
        a.products,
        a.images,
        total as f64 / (1u64 << 20) as f64,
        started.elapsed()
    );
    Ok(())
}

/// One class of lookups: which cache, the file it is, its key.
#[derive(Clone, Copy)]
enum Class {
    Product,
    Image,
}

fn key(class: Class, id: u64) -> String {
    match class {
        Class::Product => format!("{id}.json"),
        Class::Image => format!("{id}.bin"),
    }
}

/// The lookups, the same for both runs: nine product reads for each image read, Zipf-skewed ids.
fn lookups(a: &Args) -> Vec<(Class, u64)> {
    let products = Zipf::new(a.products as f64, 1.0).unwrap();
    let images = Zipf::new(a.images as f64, 1.0).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    (0..a.reads)
        .map(|i| {
            if i % 10 == 9 {
                (Class::Image, images.sample(&mut rng) as u64 - 1)
            } else {
                (Class::Product, products.sample(&mut rng) as u64 - 1)
            }
        })
        .collect()
}

struct Run {
    elapsed: Duration,
    bytes: u64,
    latencies: Vec<Duration>,
}

/// Runs the lookups split over the threads, each thread reading with `read`.
fn run<C>(
    a: &Args,
    work: &[(Class, u64)],
    open: impl Fn() -> C + Sync,
    read: impl Fn(&mut C, Class, u64) -> Vec<u8> + Sync,
) -> Run {
    let started = Instant::now();
    let per = work.len().div_ceil(a.threads);
    let results: Vec<(u64, Vec<Duration>)> = std::thread::scope(|s| {
        let handles: Vec<_> = work
            .chunks(per)
            .map(|chunk| {
                let (open, read) = (&open, &read);
                s.spawn(move || {
                    let mut conn = open();
                    let mut bytes = 0;
                    let mut lat = Vec::with_capacity(chunk.len());
                    for &(class, id) in chunk {
                        let t = Instant::now();
                        let v = read(&mut conn, class, id);
                        lat.push(t.elapsed());
                        assert!(!v.is_empty(), "{} empty", key(class, id));
                        bytes += v.len() as u64;
                    }
                    (bytes, lat)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    let mut latencies: Vec<Duration> = results.iter().flat_map(|r| r.1.clone()).collect();
    latencies.sort_unstable();
    Run {
        elapsed,
        bytes: results.iter().map(|r| r.0).sum(),
        latencies,
    }
}

fn report(name: &str, r: &Run) {
    let n = r.latencies.len();
    let pct = |p: f64| r.latencies[((n as f64 * p) as usize).min(n - 1)];
    println!(
        "{name:<28} {:>10.0} reads/s {:>8.1} MiB/s   p50 {:>8.1?}  p99 {:>8.1?}  p99.9 {:>8.1?}",
        n as f64 / r.elapsed.as_secs_f64(),
        r.bytes as f64 / (1u64 << 20) as f64 / r.elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args()?;
    write_files(&a)?;
    let work = lookups(&a);
    println!(
        "{} lookups (9 products : 1 image, Zipf s=1) on {} threads",
        work.len(),
        a.threads
    );

    let dir = a.dir.clone();
    let path_of = move |class: Class, id: u64| -> PathBuf {
        match class {
            Class::Product => dir.join("products").join(key(class, id)),
            Class::Image => dir.join("images").join(key(class, id)),
        }
    };
    // Warm the page cache for the files the lookups touch, so that the direct run reads memory.
    for &(class, id) in &work {
        let _ = std::fs::metadata(path_of(class, id));
    }
    let direct = run(
        &a,
        &work,
        || (),
        |_, class, id| std::fs::read(path_of(class, id)).unwrap(),
    );
    report("files, read directly", &direct);

    let runtime = tokio::runtime::Runtime::new()?;
    let node = runtime.block_on(async {
        let origin = |sub: &str| {
            Origin::new(
                &format!("file:{}/{{key}}", a.dir.join(sub).display()),
                Duration::from_secs(5),
            )
        };
        Node::builder()
            .name("origin-bench")
            .resp_address("127.0.0.1:0")
            .default_cache(CacheConfig::new())
            .cache(
                "products",
                CacheConfig::new()
                    .max_entries(200_000)
                    .loader(origin("products")?.loader()),
            )
            .cache(
                "images",
                CacheConfig::new()
                    .max_entries(200_000)
                    .max_bytes(a.image_cache)
                    .loader(origin("images")?.loader()),
            )
            .build()
    })?;
    let addr = format!("redis://{}/", node.resp_addr().unwrap());
    let products_db = node
        .caches()
        .iter()
        .position(|c| c.name() == "products")
        .unwrap();
    let images_db = node
        .caches()
        .iter()
        .position(|c| c.name() == "images")
        .unwrap();
    let open = || {
        let client = redis::Client::open(addr.as_str()).unwrap();
        let mut products = client.get_connection().unwrap();
        let mut images = client.get_connection().unwrap();
        let _: () = redis::cmd("SELECT")
            .arg(products_db)
            .query(&mut products)
            .unwrap();
        let _: () = redis::cmd("SELECT")
            .arg(images_db)
            .query(&mut images)
            .unwrap();
        (products, images)
    };
    let read = |conns: &mut (redis::Connection, redis::Connection), class: Class, id: u64| {
        let conn = match class {
            Class::Product => &mut conns.0,
            Class::Image => &mut conns.1,
        };
        redis::cmd("GET")
            .arg(key(class, id))
            .query::<Vec<u8>>(conn)
            .unwrap()
    };
    let cold = run(&a, &work, open, read);
    report("through a node, cold", &cold);
    let warm = run(&a, &work, open, read);
    report("through a node, warm", &warm);
    for name in ["products", "images"] {
        let s = node.cache(name)?.stats();
        println!(
            "  cache {name:<9} hits {:>8}  misses {:>7}  origin reads {:>7}  entries {:>7}  {:.0} MiB",
            s.hits,
            s.misses,
            s.loads,
            s.entries,
            s.bytes as f64 / (1u64 << 20) as f64
        );
    }
    println!(
        "through a node (warm) / directly: {:.2}x the reads/s",
        (warm.latencies.len() as f64 / warm.elapsed.as_secs_f64())
            / (direct.latencies.len() as f64 / direct.elapsed.as_secs_f64())
    );
    runtime.block_on(node.shutdown());
    Ok(())
}
