//! Builds the web UI (`ui/web`, Vite + TypeScript) with npm as part of the normal cargo build
//! and generates `assets.rs`, which embeds every built file in the binary.
//! Needs Node.js 20.19+ with npm; without it the build stops with a message saying so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

fn npm() -> String {
    env::var("LOUPE_NPM").unwrap_or_else(|_| "npm".to_string())
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("\n\nloupe-ui: cannot run `{what}`: {e}\nThe web UI is built with Node.js (20.19 or newer) and npm; install them (e.g. `apt-get install nodejs npm`) or set LOUPE_NPM to the npm binary.\n\n")
    });
    if !status.success() {
        panic!("\n\nloupe-ui: `{what}` failed with {status} (in ui/web)\n\n");
    }
}

fn newer(a: &Path, b: &Path) -> bool {
    let m = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    match (m(a), m(b)) {
        (Some(a), Some(b)) => a > b,
        _ => true,
    }
}

fn collect(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, base, out);
        } else if let Ok(rel) = p.strip_prefix(base) {
            out.push((rel.to_string_lossy().replace('\\', "/"), p));
        }
    }
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let web = manifest.join("web");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let dist = out.join("dist");
    for p in [
        "src",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "tsconfig.json",
    ] {
        println!("cargo:rerun-if-changed={}", web.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=LOUPE_NPM");

    let installed = web.join("node_modules/.package-lock.json");
    if newer(&web.join("package-lock.json"), &installed) {
        run(
            Command::new(npm())
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&web),
            "npm ci",
        );
    }
    run(
        Command::new(npm())
            .args(["run", "--silent", "build", "--", "--outDir"])
            .arg(&dist)
            .args(["--emptyOutDir", "--logLevel", "warn"])
            .current_dir(&web),
        "npm run build",
    );

    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    if !files.iter().any(|(n, _)| n == "index.html") {
        panic!(
            "loupe-ui: the UI build produced no index.html in {}",
            dist.display()
        );
    }
    let mut code = String::from(
        "/// Built UI files: (path relative to the site root, contents).\npub static ASSETS: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in files {
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    fs::write(out.join("assets.rs"), code).expect("write assets.rs");
}
