//! Writes every target's seeds (`seeds::seeds`) to `DIR/<target>/seed-N`, for libFuzzer to
//! start from (`scripts/fuzz.sh`).

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: mxfed-fuzz-seeds DIR");
        std::process::exit(2);
    };
    for (name, _) in mxfed_fuzz_harness::TARGETS {
        let to = std::path::Path::new(&dir).join(name);
        let written = std::fs::create_dir_all(&to).and_then(|()| {
            mxfed_fuzz_harness::seeds::seeds(name)
                .iter()
                .enumerate()
                .try_for_each(|(i, s)| std::fs::write(to.join(format!("seed-{i}")), s))
        });
        if let Err(e) = written {
            eprintln!("mxfed-fuzz-seeds: {}: {e}", to.display());
            std::process::exit(2);
        }
    }
}
