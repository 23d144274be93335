//! `syncfile-wsi`: what the layer would do here, and running programs
//! through it.
//!
//! ```text
//! syncfile-wsi doctor [--json] [--exe NAME]   # kernel, layer, devices, window systems, verdicts
//! syncfile-wsi run [--stats] [--capture DIR] [--] CMD...
//! syncfile-wsi stats FILE           # the summary of a SYNCFILE_WSI_STATS file
//! ```
//!
//! `doctor` exits with 1 when the layer could own no surface type here.

mod kernel;
mod layer;
mod manifests;
mod relay;
mod report;
mod run;
mod stats;
mod verdict;
mod vulkan;
mod wsi;

use std::io::Write;
use std::process::ExitCode;

use syncfile::probe::Support;
use VkLayer_syncfile_wsi::doctor;
use VkLayer_syncfile_wsi::manifest::{DISABLE_ENV, LAYER_NAME};

const USAGE: &str = "usage: syncfile-wsi doctor [--json] [--exe NAME]
       syncfile-wsi run [--stats] [--capture DIR] [--] CMD...
       syncfile-wsi stats FILE";

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

/// Keeps the layer out of this process's instance, so the doctor sees the
/// driver itself: the implicit switch, the loader's filter, and its name
/// out of `VK_INSTANCE_LAYERS`.
fn keep_the_layer_out() {
    let others: Vec<String> = std::env::var("VK_INSTANCE_LAYERS")
        .unwrap_or_default()
        .split(':')
        .filter(|l| !l.is_empty() && *l != LAYER_NAME)
        .map(str::to_owned)
        .collect();
    let disable = match std::env::var("VK_LOADER_LAYERS_DISABLE") {
        Ok(v) if !v.is_empty() => format!("{v},{LAYER_NAME}"),
        _ => LAYER_NAME.to_owned(),
    };
    // Before any thread starts: nothing else reads the environment yet.
    std::env::set_var(DISABLE_ENV, "1");
    std::env::set_var("VK_LOADER_LAYERS_DISABLE", disable);
    std::env::set_var("VK_INSTANCE_LAYERS", others.join(":"));
}

/// The doctor's options.
#[derive(Default)]
struct DoctorOptions {
    json: bool,
    /// The application whose settings to report (its `<exe>.conf`, and
    /// whether `SYNCFILE_WSI_DISABLE_FOR` names it) instead of the
    /// doctor's own.
    exe: Option<String>,
}

impl DoctorOptions {
    fn parse(args: &[String]) -> Option<Self> {
        let mut opts = Self::default();
        let mut args = args.iter();
        while let Some(a) = args.next() {
            match a.as_str() {
                "--json" => opts.json = true,
                "--exe" => opts.exe = Some(args.next()?.clone()),
                _ => return None,
            }
        }
        Some(opts)
    }
}

fn doctor(opts: &DoctorOptions) -> ExitCode {
    let env = manifests::Env::process();
    let (settings, warnings) = doctor::settings(opts.exe.as_deref());
    let application = opts.exe.as_deref().unwrap_or("syncfile-wsi (this program)");
    let (_, layer) = layer::check(&env, &settings, &warnings, application);
    keep_the_layer_out();
    let kernel = kernel::check();
    let (devices, vulkan) = vulkan::check();
    let (reach, wsi) = wsi::check(&settings);
    // The layer probes its first swapchain's dma-buf; where the doctor
    // could make none, the kernel is taken to have the ioctls.
    let support = kernel
        .ioctls
        .as_ref()
        .and_then(|i| i.support.clone().ok())
        .unwrap_or(Support::Available);
    let (any, verdicts) = verdict::check(&settings, support, &devices, &reach);
    let sections = [kernel.section, layer, vulkan, wsi, verdicts];
    let text = if opts.json {
        format!("{:#}\n", report::json(&sections))
    } else {
        report::table(&sections)
    };
    // A reader that stopped early (`| head`) is no failure of the doctor.
    let _ = std::io::stdout().write_all(text.as_bytes());
    if any {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(args: &[String]) -> ExitCode {
    let mut opts = run::Options {
        stats: false,
        capture: None,
        command: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--stats" => opts.stats = true,
            "--capture" => {
                i += 1;
                let Some(dir) = args.get(i) else {
                    return usage();
                };
                opts.capture = Some(dir.into());
            }
            "--" => {
                i += 1;
                break;
            }
            a if a.starts_with("--") => return usage(),
            _ => break,
        }
        i += 1;
    }
    opts.command = args[i..].to_vec();
    if opts.command.is_empty() {
        return usage();
    }
    match run::run(&opts, vulkan::loader_version()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("syncfile-wsi run: {e}");
            ExitCode::from(127)
        }
    }
}

fn stats(file: &str) -> ExitCode {
    let parsed = std::fs::read_to_string(file)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()));
    match parsed {
        Ok(v) => {
            print!("{}", stats::summary(&v, file));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("syncfile-wsi stats: {file}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("doctor") => match DoctorOptions::parse(&args[1..]) {
            Some(opts) => doctor(&opts),
            None => usage(),
        },
        Some("run") => run(&args[1..]),
        Some("stats") => match &args[1..] {
            [file] => stats(file),
            _ => usage(),
        },
        _ => usage(),
    }
}
