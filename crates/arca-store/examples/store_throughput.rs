//! Measures how fast a repository location takes and returns data, and what it
//! costs in requests: `cargo run -p arca-store --example store_throughput -- URL [TOTAL_MIB] [OBJECT_MIB]`.
//!
//! Writes TOTAL_MIB (default 256) in objects of OBJECT_MIB (default 16) under
//! `throughput-<pid>/`, reads them back, then deletes them. Uses the standard
//! decorators with default options, credentials from the environment.

#![allow(clippy::print_stdout, reason = "a measuring tool reports on stdout")]

use std::time::Instant;

use arca_store::{StoreOptions, conformance};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: store_throughput URL [TOTAL_MIB] [OBJECT_MIB]")?;
    let total_mib: usize = args.next().map_or(Ok(256), |a| a.parse())?;
    let object_mib: usize = args.next().map_or(Ok(16), |a| a.parse())?;
    let count = (total_mib / object_mib).max(1);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let opened = arca_store::open(&url, &StoreOptions::default())?;
        let backend = opened.backend;
        let dir = format!("throughput-{}", std::process::id());
        let objects: Vec<_> = (0..count)
            .map(|i| conformance::pattern(object_mib << 20, i as u8))
            .collect();
        let mib = (count * object_mib) as f64;

        let start = Instant::now();
        let puts = objects.iter().enumerate().map(|(i, data)| {
            let (backend, path) = (backend.clone(), format!("{dir}/{i:04}"));
            let data = data.clone();
            async move { backend.put(&path, data).await }
        });
        futures::future::try_join_all(puts).await?;
        let put_secs = start.elapsed().as_secs_f64();

        let start = Instant::now();
        let gets = (0..count).map(|i| {
            let (backend, path) = (backend.clone(), format!("{dir}/{i:04}"));
            async move { backend.get(&path).await }
        });
        let read = futures::future::try_join_all(gets).await?;
        let get_secs = start.elapsed().as_secs_f64();
        if read != objects {
            return Err("data read back differs from data written".into());
        }
        for i in 0..count {
            backend.delete(&format!("{dir}/{i:04}")).await?;
        }
        println!("{backend}: {count} objects of {object_mib} MiB");
        println!("put: {:.1} MiB/s ({put_secs:.2} s)", mib / put_secs);
        println!("get: {:.1} MiB/s ({get_secs:.2} s)", mib / get_secs);
        println!("requests: {:?}", opened.requests.snapshot());
        Ok(())
    })
}
