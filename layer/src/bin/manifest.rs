//! Renders the layer's manifests from `src/manifest.rs`.
//!
//! ```text
//! syncfile-wsi-manifest [--library-path PATH] [--library-arch 32|64] --write DIR   # both kinds into DIR
//! syncfile-wsi-manifest [--library-path PATH] [--library-arch 32|64] implicit|explicit   # one, to stdout
//! ```
//!
//! Without `--library-path` the manifest names the library bare, for the
//! dynamic linker to find; `scripts/install` passes the absolute path.
//! `--library-arch` names the library's word size, for a manifest beside
//! another architecture's (`scripts/package`).

use std::path::PathBuf;
use std::process::ExitCode;

use VkLayer_syncfile_wsi::manifest::{render, render_for_arch, Kind, LibraryArch, LIBRARY_NAME};

const USAGE: &str = "usage: syncfile-wsi-manifest [--library-path PATH] [--library-arch 32|64] (--write DIR | implicit | explicit)";

fn main() -> ExitCode {
    let mut library = LIBRARY_NAME.to_owned();
    let mut write: Option<PathBuf> = None;
    let mut kind = None;
    let mut arch = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--library-path" => library = args.next().unwrap_or_default(),
            "--library-arch" => match args.next().as_deref().and_then(LibraryArch::parse) {
                Some(a) => arch = Some(a),
                None => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--write" => write = args.next().map(PathBuf::from),
            "implicit" => kind = Some(Kind::Implicit),
            "explicit" => kind = Some(Kind::Explicit),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let text = |k| match arch {
        Some(a) => render_for_arch(k, &library, a),
        None => render(k, &library),
    };
    match (write, kind) {
        (Some(dir), None) => {
            for k in Kind::ALL {
                let path = dir.join(k.file_name());
                if let Err(e) = std::fs::write(&path, text(k)) {
                    eprintln!("syncfile-wsi-manifest: {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        (None, Some(k)) => {
            print!("{}", text(k));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
