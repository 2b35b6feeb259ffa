//! `simulator FILE [--seed N] [--trials N] [--no-invariant-checks]`: runs a scenario
//! file with real relay-proto nodes. The table goes to stderr, one JSON object per
//! line to stdout. Exit status 1 on a bad file or argument, 2 when an invariant was
//! violated.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use simulator::scenario::{Overrides, run_file};

const USAGE: &str = "usage: simulator FILE [--seed N] [--trials N] [--no-invariant-checks]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, overrides) = match parse(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("simulator: {e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match run_file(&path, overrides) {
        Ok(report) => {
            eprint!("{}", report.table());
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(report.json_lines().as_bytes());
            let _ = out.flush();
            if report.violations() > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("simulator: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> Result<(PathBuf, Overrides), String> {
    let mut path = None;
    let mut o = Overrides::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .cloned()
        };
        match a.as_str() {
            "--seed" => {
                let v = value("--seed")?;
                o.seed = Some(v.parse().map_err(|_| format!("--seed {v}: not a number"))?);
            }
            "--trials" => {
                let v = value("--trials")?;
                o.trials = Some(
                    v.parse()
                        .map_err(|_| format!("--trials {v}: not a number"))?,
                );
            }
            "--no-invariant-checks" => o.no_invariant_checks = true,
            "-h" | "--help" => return Err("help".into()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if path.is_none() => path = Some(PathBuf::from(s)),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    Ok((path.ok_or("no scenario file given")?, o))
}
