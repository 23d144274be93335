//! Renders the layer's manifests from `src/manifest.rs`.
//!
//! ```text
//! syncfile-wsi-manifest [--library-path PATH] --write DIR   # both kinds into DIR
//! syncfile-wsi-manifest [--library-path PATH] implicit|explicit   # one, to stdout
//! ```
//!
//! Without `--library-path` the manifest names the library bare, for the
//! dynamic linker to find; `scripts/install` passes the absolute path.

use std::path::PathBuf;
use std::process::ExitCode;

use VkLayer_syncfile_wsi::manifest::{render, Kind, LIBRARY_NAME};

fn main() -> ExitCode {
    let mut library = LIBRARY_NAME.to_owned();
    let mut write: Option<PathBuf> = None;
    let mut kind = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--library-path" => library = args.next().unwrap_or_default(),
            "--write" => write = args.next().map(PathBuf::from),
            "implicit" => kind = Some(Kind::Implicit),
            "explicit" => kind = Some(Kind::Explicit),
            _ => {
                eprintln!("usage: syncfile-wsi-manifest [--library-path PATH] (--write DIR | implicit | explicit)");
                return ExitCode::from(2);
            }
        }
    }
    match (write, kind) {
        (Some(dir), None) => {
            for k in Kind::ALL {
                let path = dir.join(k.file_name());
                if let Err(e) = std::fs::write(&path, render(k, &library)) {
                    eprintln!("syncfile-wsi-manifest: {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        (None, Some(k)) => {
            print!("{}", render(k, &library));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: syncfile-wsi-manifest [--library-path PATH] (--write DIR | implicit | explicit)");
            ExitCode::from(2)
        }
    }
}
