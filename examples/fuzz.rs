//! The fuzz targets of tests/fuzzing at length (scripts/fuzz.sh), or one saved input replayed.
//!
//! `cargo run --profile fuzz --example fuzz -- --inputs 10000000`
//! `cargo run --profile fuzz --example fuzz -- --target review --replay target/fuzz/failures/FILE.bin`

#[path = "../tests/fuzzing/mod.rs"]
mod fuzzing;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use fuzzing::{Config, Target};

#[derive(clap::Parser)]
struct Args {
    /// Inputs per target.
    #[arg(long, default_value_t = 10_000_000)]
    inputs: u64,
    /// Input `i` is made from (seed, i) alone.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// `review`, `selector`, or `all`.
    #[arg(long, default_value = "all")]
    target: String,
    /// Where the first input of each failure kind is saved.
    #[arg(long, default_value = "target/fuzz/failures")]
    save_dir: PathBuf,
    /// Stop each target after this many seconds, even if fewer inputs ran.
    #[arg(long)]
    max_seconds: Option<u64>,
    /// Run one saved input (a .bin file) and print what it gave.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Run input INDEX of the seed and print what it gave.
    #[arg(long)]
    index: Option<u64>,
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    let targets = match args.target.as_str() {
        "review" => vec![Target::Review],
        "selector" => vec![Target::SelectorAndNames],
        "all" => vec![Target::Review, Target::SelectorAndNames],
        other => {
            eprintln!("fuzz: unknown --target {other:?}: give review, selector or all");
            return ExitCode::from(2);
        }
    };
    if args.replay.is_some() || args.index.is_some() {
        return replay(&args, targets[0]);
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut clean = true;
    for target in targets {
        let cfg = Config {
            target,
            inputs: args.inputs,
            seed: args.seed,
            threads,
            save_dir: Some(args.save_dir.clone()),
            progress: Some(Duration::from_secs(30)),
            time_limit: args.max_seconds.map(Duration::from_secs),
        };
        let summary = fuzzing::run(&cfg);
        print!("{summary}");
        clean &= summary.clean();
    }
    if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn replay(args: &Args, target: Target) -> ExitCode {
    let data = match (&args.replay, args.index) {
        (Some(path), _) => match std::fs::read(path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("fuzz: could not read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        (None, Some(i)) => fuzzing::input_bytes(args.seed, i),
        (None, None) => unreachable!("replay is called with a file or an index"),
    };
    let mut review = None;
    let (input, outcome) = fuzzing::one(target, &mut review, &data);
    if let Some(input) = &input {
        println!(
            "{:?} via {:?}, {} bytes: {}",
            input.endpoint,
            input.via,
            input.body.len(),
            String::from_utf8_lossy(&input.body[..input.body.len().min(2000)])
        );
    }
    println!("verdict {:?}, answer {} bytes: {}", outcome.verdict, outcome.answer_len, outcome.answer_head);
    for f in &outcome.failures {
        println!("FAILED {}: {}", f.kind, f.detail);
    }
    if outcome.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
