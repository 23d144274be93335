//! What the sync_file ioctls cost, against a floor: the same number of
//! `fcntl(F_GETFD)` calls on the same descriptor, the cheapest system call
//! there is on a file. Prints one table row per source and operation.
//!
//! Export and merge make a new descriptor each time, so their numbers
//! include closing it. Run it where the sources exist (the test VM):
//! `cargo bench --no-run`, then the printed binary.

use std::error::Error;
use std::hint::black_box;
use std::os::fd::AsFd;
use std::time::Instant;

use syncfile::sources::Source;
use syncfile::Access;

const ITERATIONS: u32 = 10_000;

type Outcome<T = ()> = Result<T, Box<dyn Error>>;

fn main() -> Outcome {
    println!("{ITERATIONS} calls each; floor = as many fcntl(F_GETFD) on the same descriptor");
    println!(
        "{:<8} {:<7} {:>10} {:>12} {:>7}",
        "source", "op", "ns/op", "floor ns/op", "ratio"
    );
    for source in Source::ALL {
        match source.missing() {
            Some(reason) => println!("{source:<8} skipped: {reason}"),
            None => bench(source)?,
        }
    }
    Ok(())
}

/// Nanoseconds per call of `op`, after a tenth as many calls to warm up.
fn ns_per_call(mut op: impl FnMut() -> Outcome) -> Outcome<f64> {
    for _ in 0..ITERATIONS / 10 {
        op()?;
    }
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        op()?;
    }
    Ok(start.elapsed().as_nanos() as f64 / f64::from(ITERATIONS))
}

/// `op` beside the floor on `fd`, as a table row.
fn row(source: Source, name: &str, fd: impl AsFd, op: impl FnMut() -> Outcome) -> Outcome {
    let floor = ns_per_call(|| {
        black_box(rustix::io::fcntl_getfd(&fd)?);
        Ok(())
    })?;
    let cost = ns_per_call(op)?;
    println!(
        "{:<8} {:<7} {:>10.0} {:>12.0} {:>7.1}",
        source.name(),
        name,
        cost,
        floor,
        cost / floor
    );
    Ok(())
}

fn bench(source: Source) -> Outcome {
    let dma_buf = source.alloc(4096)?;
    let first = dma_buf.export_sync_file(Access::Write)?;
    let second = dma_buf.export_sync_file(Access::Read)?;

    row(source, "export", &dma_buf, || {
        black_box(dma_buf.export_sync_file(Access::Write)?);
        Ok(())
    })?;
    row(source, "import", &dma_buf, || {
        dma_buf.import_sync_file(&first, Access::Write)?;
        Ok(())
    })?;
    row(source, "merge", &first, || {
        black_box(first.merge(&second)?);
        Ok(())
    })
}
