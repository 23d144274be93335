//! What a display consumer looks at first: the KMS devices, their
//! connectors and modes. Looking needs no DRM master, so this runs beside
//! a display server; on a machine without `/dev/dri/card*` the example
//! says so and stops. `cargo run --example outputs`.

use syncfile::kms::{self, Card};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cards: Vec<_> = std::fs::read_dir("/dev/dri")
        .into_iter()
        .flatten()
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("card"))
        })
        .collect();
    cards.sort();
    if cards.is_empty() {
        // This project's test guest (SYNCFILE_WSI_VM=1) has cards (vkms,
        // bochs): there none is a failure.
        if std::env::var_os("SYNCFILE_WSI_VM").is_some() {
            return Err("no /dev/dri/card* in the test guest".into());
        }
        println!("skipped: no /dev/dri/card*");
        return Ok(());
    }

    for path in cards {
        let card = Card::open(&path)?;
        let driver = card.driver_name()?;
        // A render-only driver (vgem) has a card node but no display.
        let Ok(resources) = card.resources() else {
            println!("{}: {driver}, no mode setting", path.display());
            continue;
        };
        println!(
            "{}: {driver}, {} CRTC(s), {} connector(s)",
            path.display(),
            resources.crtcs.len(),
            resources.connectors.len()
        );
        for &id in &resources.connectors {
            let connector = card.connector(id)?;
            let modes: Vec<String> = connector
                .modes
                .iter()
                .take(3)
                .map(|mode| format!("{} at {} mHz", mode.name(), kms::refresh_mhz(mode)))
                .collect();
            println!(
                "  connector {id}: {}, {}",
                if connector.connected {
                    "connected"
                } else {
                    "not connected"
                },
                modes.join(", ")
            );
        }
    }
    Ok(())
}
