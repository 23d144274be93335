//! `syncfile-wsi run`: a command with this build's layer enabled and found,
//! installed or not. The launcher writes a manifest naming its own library
//! into a scratch directory and adds that directory to the loader's search:
//! as an implicit layer through `VK_ADD_IMPLICIT_LAYER_PATH` (searched
//! before every standard place, so it wins over an installed manifest of
//! the same name, and sits among the implicit layers as an installed one
//! does), turned on with `ENABLE_SYNCFILE_WSI=1`; loaders before 1.3.296
//! (Debian bookworm's 1.3.239) lack that variable, so there it is an
//! explicit layer through `VK_ADD_LAYER_PATH` and `VK_INSTANCE_LAYERS`.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use VkLayer_syncfile_wsi::manifest::{
    self, Kind, DISABLE_ENV, ENABLE_ENV, LAYER_NAME, LIBRARY_NAME,
};

use crate::relay::Relay;
use crate::stats;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the layer's library {LIBRARY_NAME} is neither beside this program, nor in its build's target directory, nor in the installed library directory (looked in {0})")]
    NoLibrary(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("cannot run {0}: {1}")]
    Spawn(String, std::io::Error),
}

pub struct Options {
    pub stats: bool,
    pub capture: Option<PathBuf>,
    pub command: Vec<String>,
}

/// Where the library may be, for a program at `exe`: beside it (a cargo
/// build's target directory holds both), the target directory of a test
/// binary's `deps/`, or the installed library directories.
fn candidates(exe: &Path) -> Vec<PathBuf> {
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let mut v = vec![dir.join(LIBRARY_NAME)];
    if let Some(up) = dir.parent() {
        v.push(up.join(LIBRARY_NAME));
        v.push(up.join("lib/x86_64-linux-gnu").join(LIBRARY_NAME));
        v.push(up.join("lib").join(LIBRARY_NAME));
    }
    v
}

pub fn library() -> Result<PathBuf, RunError> {
    let exe = std::env::current_exe().map_err(|e| RunError::Io("this program's path".into(), e))?;
    let list = candidates(&exe);
    list.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        RunError::NoLibrary(
            list.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        )
    })
}

/// Whether the loader has `VK_ADD_IMPLICIT_LAYER_PATH`: its version, as
/// its `vkEnumerateInstanceVersion` gives it, is 1.3.296 or later.
fn implicit_path_works(loader_version: Option<u32>) -> bool {
    loader_version.is_some_and(|v| v >= ash::vk::make_api_version(0, 1, 3, 296))
}

fn prepend(var: &str, value: &Path) -> String {
    match std::env::var(var) {
        Ok(old) if !old.is_empty() => format!("{}:{old}", value.display()),
        _ => value.display().to_string(),
    }
}

/// Runs the command; its exit status (128+N for signal N) is returned.
/// Call it on the program's only thread (see [`Relay::block`]).
pub fn run(opts: &Options, loader_version: Option<u32>) -> Result<u8, RunError> {
    let lib = library()?;
    let relay = Relay::block().map_err(|e| RunError::Io("blocking signals".into(), e))?;
    let scratch = std::env::temp_dir().join(format!("syncfile-wsi-run-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| RunError::Io(scratch.display().to_string(), e))?;
    let result = run_in(opts, loader_version, &lib, &scratch, &relay);
    let _ = std::fs::remove_dir_all(&scratch);
    drop(relay);
    result
}

fn run_in(
    opts: &Options,
    loader_version: Option<u32>,
    lib: &Path,
    scratch: &Path,
    relay: &Relay,
) -> Result<u8, RunError> {
    let implicit = implicit_path_works(loader_version);
    let kind = if implicit {
        Kind::Implicit
    } else {
        Kind::Explicit
    };
    let file = scratch.join(kind.file_name());
    std::fs::write(&file, manifest::render(kind, &lib.display().to_string()))
        .map_err(|e| RunError::Io(file.display().to_string(), e))?;
    let mut c = Command::new(&opts.command[0]);
    c.args(&opts.command[1..]);
    c.env_remove(DISABLE_ENV);
    if implicit {
        c.env(
            "VK_ADD_IMPLICIT_LAYER_PATH",
            prepend("VK_ADD_IMPLICIT_LAYER_PATH", scratch),
        );
        c.env(ENABLE_ENV, "1");
    } else {
        c.env("VK_ADD_LAYER_PATH", prepend("VK_ADD_LAYER_PATH", scratch));
        c.env(
            "VK_INSTANCE_LAYERS",
            prepend("VK_INSTANCE_LAYERS", Path::new(LAYER_NAME)),
        );
    }
    let stats_file = scratch.join("stats.json");
    if opts.stats {
        c.env("SYNCFILE_WSI_STATS", &stats_file);
    }
    if let Some(dir) = &opts.capture {
        std::fs::create_dir_all(dir).map_err(|e| RunError::Io(dir.display().to_string(), e))?;
        c.env("SYNCFILE_WSI_CAPTURE", dir);
    }
    relay.command(&mut c);
    let spawn_error = |e| RunError::Spawn(opts.command[0].clone(), e);
    let mut child = c.spawn().map_err(spawn_error)?;
    let status = relay
        .wait(&mut child)
        .map_err(|e| RunError::Io(format!("waiting for {}", opts.command[0]), e))?;
    if opts.stats {
        match std::fs::read_to_string(&stats_file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
        {
            Some(v) => eprint!("{}", stats::summary(&v, "written by the layer at exit")),
            None => eprintln!("syncfile-wsi: the layer wrote no statistics (was it loaded?)"),
        }
    }
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(255),
        (None, None) => 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_looked_for_beside_then_above_then_installed() {
        let c = candidates(Path::new("/p/target/debug/syncfile-wsi"));
        assert_eq!(c[0], Path::new("/p/target/debug").join(LIBRARY_NAME));
        assert_eq!(c[1], Path::new("/p/target").join(LIBRARY_NAME));
        let c = candidates(Path::new("/usr/bin/syncfile-wsi"));
        assert_eq!(
            c[2],
            Path::new("/usr/lib/x86_64-linux-gnu").join(LIBRARY_NAME)
        );
    }

    #[test]
    fn implicit_paths_need_loader_1_3_296() {
        use ash::vk::make_api_version as v;
        assert!(!implicit_path_works(Some(v(0, 1, 3, 239))));
        assert!(implicit_path_works(Some(v(0, 1, 3, 296))));
        assert!(implicit_path_works(Some(v(0, 1, 4, 309))));
        assert!(!implicit_path_works(None));
    }
}
