//! The human summary of the layer's JSON statistics
//! (`SYNCFILE_WSI_STATS`): the one implementation `run --stats`,
//! `syncfile-wsi stats FILE` and `scripts/demo` print.

use serde_json::Value;

fn n(v: &Value, path: &str) -> u64 {
    path.split('.').fold(v, |v, k| &v[k]).as_u64().unwrap_or(0)
}

/// `key value` pairs of an object of counters, joined.
fn pairs(v: &Value) -> String {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k} {}", v.as_u64().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// `cause N× T ms` for each wait of one thread.
fn waits(v: &Value) -> String {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, w)| format!("{k} {}× {} ms", n(w, "count"), n(w, "ns") / 1_000_000))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn us(v: &Value, path: &str) -> String {
    format!("{} µs", n(v, path) / 1000)
}

/// Whether any counter under `v` is not zero.
fn any(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.values().any(any),
        Value::Number(x) => x.as_u64().unwrap_or(0) != 0,
        _ => false,
    }
}

/// The summary of statistics `s` read from `source`.
pub fn summary(s: &Value, source: &str) -> String {
    let text = |path: &str| {
        path.split('.')
            .fold(s, |v, k| &v[k])
            .as_str()
            .unwrap_or("?")
            .to_owned()
    };
    let mut lines = vec![
        format!("layer statistics (full JSON: {source}):"),
        format!("  settings         sync={} platforms={}", text("settings.sync"), text("settings.platforms")),
        format!("  swapchains       owned {}, passed to the driver {}", n(s, "swapchains.created"), n(s, "swapchains.passed_through")),
        format!("  frames           presented {}, displayed {}, replaced {}, captured {}", n(s, "frames.presented"), n(s, "frames.displayed"), n(s, "frames.replaced"), n(s, "frames.captured")),
        format!("  acquires         {}", pairs(&s["acquires"])),
        format!("  sync_files       exported from semaphores {} (already signalled {}), from dma-bufs {}", n(s, "sync_files.exported.from_semaphores"), n(s, "sync_files.exported.already_signalled"), n(s, "sync_files.exported.from_dma_bufs")),
        format!("                   imported into dma-bufs (write) {}, into semaphores {}, into fences {}", n(s, "sync_files.imported.into_dma_bufs_write"), n(s, "sync_files.imported.into_semaphores"), n(s, "sync_files.imported.into_fences")),
        format!("  CPU waits        app: {}", waits(&s["cpu_waits"]["app"])),
        format!("                   present thread: {}", waits(&s["cpu_waits"]["present_thread"])),
        format!("                   consumer: {}", waits(&s["cpu_waits"]["consumer"])),
        format!("  fallbacks        {}", pairs(&s["fallbacks"])),
        format!("  layer CPU time   per present p50 {}, p99 {}; per acquire p50 {}, p99 {}", us(s, "cpu_time_ns.present.p50"), us(s, "cpu_time_ns.present.p99"), us(s, "cpu_time_ns.acquire.p50"), us(s, "cpu_time_ns.acquire.p99")),
    ];
    if any(&s["wayland"]) {
        lines.push(format!("  wayland          commits explicit {}, implicit {}; release fences carried {}; lost {}", n(s, "wayland.commits.explicit"), n(s, "wayland.commits.implicit"), n(s, "sync_files.imported.into_dma_bufs_read"), n(s, "wayland.lost")));
    }
    if any(&s["display"]) {
        lines.push(format!("  display          commits with IN_FENCE_FD {}, implicit {}; mode sets {}; frames read back {}", n(s, "display.commits.in_fence"), n(s, "display.commits.implicit"), n(s, "display.mode_sets"), n(s, "frames.read_back")));
    }
    if any(&s["x11"]) {
        lines.push(format!("  x11              DRI3 pixmaps {}; presents with a wait fence {}, without {}; the server copied {}, flipped {}, skipped {}", n(s, "x11.pixmaps"), n(s, "x11.presents.fenced"), n(s, "x11.presents.unfenced"), n(s, "x11.completes.copy"), n(s, "x11.completes.flip"), n(s, "x11.completes.skip")));
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summary_reads_every_section_and_skips_idle_platforms() {
        let s = json!({
            "settings": { "sync": "auto", "platforms": "headless,wayland,x11,display" },
            "swapchains": { "created": 1, "passed_through": 0 },
            "frames": { "presented": 300, "displayed": 299, "replaced": 0, "captured": 5 },
            "acquires": { "succeeded": 300, "timeout": 0 },
            "sync_files": { "exported": { "from_semaphores": 300, "already_signalled": 2, "from_dma_bufs": 298 } },
            "cpu_waits": { "app": { "no_free_image": { "count": 3, "ns": 12_500_000 } } },
            "fallbacks": { "no_kernel_ioctls": 0 },
            "cpu_time_ns": { "present": { "p50": 41_000, "p99": 90_000 } },
            "wayland": { "commits": { "explicit": 300, "implicit": 0 }, "lost": 0 },
            "display": { "commits": { "in_fence": 0 } },
        });
        let text = summary(&s, "stats.json");
        assert!(
            text.starts_with("layer statistics (full JSON: stats.json):\n"),
            "{text}"
        );
        assert!(
            text.contains("  swapchains       owned 1, passed to the driver 0\n"),
            "{text}"
        );
        assert!(
            text.contains("  acquires         succeeded 300, timeout 0\n"),
            "{text}"
        );
        assert!(text.contains("app: no_free_image 3× 12 ms\n"), "{text}");
        assert!(
            text.contains("per present p50 41 µs, p99 90 µs; per acquire p50 0 µs"),
            "{text}"
        );
        assert!(
            text.contains("  wayland          commits explicit 300, implicit 0;"),
            "{text}"
        );
        assert!(!text.contains("  display "), "{text}");
        assert!(!text.contains("  x11 "), "{text}");
    }
}
