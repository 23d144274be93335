//! The layer's Wayland protocol side on the application's display: its own
//! queue, the compositor's offer, dma-buf `wl_buffer`s, commits with frame
//! callbacks and releases (implicit and explicit), and failures.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use ash::vk;
use libtest_mimic::{Completion, Failed};
use syncfile::sources::{vgem::Vgem, Source};
use syncfile::{Access, DmaBuf};
use wayland_client::protocol::wl_buffer::WlBuffer;
use VkLayer_syncfile_wsi::bridge;
use VkLayer_syncfile_wsi::wayland::formats::{self, MOD_LINEAR, XRGB8888};
use VkLayer_syncfile_wsi::wayland::{
    display_failed, BufferDesc, Client, Commit, Events, Offer, Plane, Release, SurfaceLink,
    WaylandError,
};

use crate::app::App;
use crate::{check, missing, weston_missing, Outcome, Weston};

/// Any one wait on weston: generous, for a software-emulated guest.
const TIMEOUT: Duration = Duration::from_secs(10);
const SIZE: u32 = 64;
const STRIDE: u32 = SIZE * 4;

/// Weston (with `args`) and the application, or why not.
fn start(args: &[&str], sources: &[Source]) -> Result<Result<(Weston, App), Outcome>, Failed> {
    if let Some(why) = weston_missing() {
        return Ok(Err(missing(why)));
    }
    if let Some(why) = sources.iter().find_map(|s| s.missing()) {
        return Ok(Err(missing(why)));
    }
    let weston = Weston::start(args)?;
    let app = App::connect(&weston)?;
    Ok(Ok((weston, app)))
}

/// The layer's connection, as a swapchain has it: requests (any thread)
/// and its own event queue, here both on the test's thread.
struct Conn {
    client: Client,
    events: Events,
}

impl Conn {
    fn offer(&self) -> &Offer {
        self.client.offer()
    }

    fn create_buffer(
        &mut self,
        desc: &BufferDesc<'_>,
        image: u32,
    ) -> Result<WlBuffer, WaylandError> {
        self.client.create_buffer(desc, image)
    }

    fn roundtrip(&mut self) -> Result<(), WaylandError> {
        self.events.roundtrip()
    }

    fn dispatch(&mut self, timeout: Duration) -> Result<usize, WaylandError> {
        self.events.dispatch(timeout, None)
    }

    fn frames_done(&self) -> u64 {
        self.events.frames_done()
    }

    fn take_released(&mut self) -> Vec<(u32, Release)> {
        self.events.take_released()
    }
}

fn connect(app: &App) -> Result<Conn, Failed> {
    // SAFETY: the application's display outlives the client in every test.
    let (client, events) = unsafe { Client::connect(app.display_ptr(), TIMEOUT) }?;
    Ok(Conn { client, events })
}

fn link(conn: &Conn, app: &App, explicit: bool) -> Result<SurfaceLink, WaylandError> {
    // SAFETY: the application's surface outlives the link in every test.
    unsafe { SurfaceLink::new(&conn.client, app.surface_ptr(), explicit) }
}

/// Commits `buffer` as image `image` (frame `image` too), asking for a
/// frame callback, damaging all of it.
fn commit(
    link: &SurfaceLink,
    conn: &Conn,
    buffer: &WlBuffer,
    image: u32,
    acquire: Option<&syncfile::SyncFile>,
) -> Result<(), WaylandError> {
    let c = Commit {
        buffer,
        image,
        acquire,
        seq: image.into(),
        frame_callback: true,
        damage: None,
    };
    link.commit(&conn.client, &c)
}

/// Two 64×64 XRGB8888 LINEAR images and their `wl_buffer`s, accepted by the
/// compositor.
fn images(client: &mut Conn) -> Result<Vec<(DmaBuf, WlBuffer)>, Failed> {
    let mut out = Vec::new();
    for i in 0..2 {
        let dma = Source::Udmabuf.alloc((STRIDE * SIZE) as usize)?;
        let buffer = client.create_buffer(&desc(&dma, SIZE), i)?;
        out.push((dma, buffer));
    }
    client.roundtrip()?;
    Ok(out)
}

fn desc(dma: &DmaBuf, width: u32) -> BufferDesc<'_> {
    BufferDesc {
        width,
        height: SIZE,
        format: XRGB8888,
        modifier: MOD_LINEAR,
        planes: vec![Plane {
            fd: dma.as_fd(),
            offset: 0,
            stride: STRIDE,
        }],
    }
}

/// Dispatches the layer's queue until `done`, for at most `TIMEOUT`.
fn wait(
    client: &mut Conn,
    what: &str,
    mut done: impl FnMut(&mut Conn) -> bool,
) -> Result<(), Failed> {
    let deadline = Instant::now() + TIMEOUT;
    while !done(client) {
        check(Instant::now() < deadline, || {
            format!("no {what} within {TIMEOUT:?}")
        })?;
        client.dispatch(Duration::from_millis(100))?;
    }
    Ok(())
}

pub fn globals_and_formats() -> Outcome {
    let (_weston, app) = match start(&[], &[])? {
        Ok(w) => w,
        Err(skip) => return skip,
    };
    let client = connect(&app)?;
    let offer = client.offer();
    check(offer.dmabuf_version >= 3, || {
        format!("zwp_linux_dmabuf_v1 v{}", offer.dmabuf_version)
    })?;
    for f in [formats::ARGB8888, XRGB8888] {
        check(offer.formats.contains(f, MOD_LINEAR), || {
            format!("no LINEAR {f:#x} in {offer:?}")
        })?;
    }
    let opaque = formats::drm_format(vk::Format::B8G8R8A8_UNORM, true).ok_or("no DRM format")?;
    check(
        offer.formats.negotiate(opaque, &[MOD_LINEAR]) == [MOD_LINEAR],
        || format!("{offer:?}"),
    )?;
    check(offer.explicit_sync, || {
        "weston 14 with GL offers explicit sync".into()
    })?;
    check(!offer.drm_syncobj, || "weston 14 has no drm syncobj".into())?;
    Ok(Completion::Completed)
}

pub fn pixman_offers_no_dma_buf() -> Outcome {
    let (_weston, app) = match start(&["--renderer=pixman"], &[Source::Udmabuf])? {
        Ok(w) => w,
        Err(skip) => return skip,
    };
    let mut client = connect(&app)?;
    check(
        client.offer().dmabuf_version == 0 && client.offer().formats.is_empty(),
        || format!("{:?}", client.offer()),
    )?;
    let dma = Source::Udmabuf.alloc((STRIDE * SIZE) as usize)?;
    let refused = client.create_buffer(&desc(&dma, SIZE), 0);
    check(matches!(refused, Err(WaylandError::NotOffered(_))), || {
        format!("{refused:?}")
    })?;
    Ok(Completion::Completed)
}

pub fn own_queue_leaves_app_events() -> Outcome {
    let (_weston, mut app) = match start(&[], &[])? {
        Ok(w) => w,
        Err(skip) => return skip,
    };
    let mut client = connect(&app)?;
    // The application's sync is answered before the layer's; the layer's
    // roundtrip reads both from the socket but dispatches only its own.
    app.sync();
    client.roundtrip()?;
    check(app.state.synced == 0, || {
        "the layer dispatched the application's event".into()
    })?;
    app.queue.dispatch_pending(&mut app.state)?;
    check(app.state.synced == 1, || {
        "the application's event was lost".into()
    })?;
    Ok(Completion::Completed)
}

pub fn implicit_commit_frame_release() -> Outcome {
    let (_weston, app) = match start(&[], &[Source::Udmabuf])? {
        Ok(w) => w,
        Err(skip) => return skip,
    };
    let mut client = connect(&app)?;
    let link = link(&client, &app, false)?;
    let imgs = images(&mut client)?;
    commit(&link, &client, &imgs[0].1, 0, None)?;
    wait(&mut client, "frame callback", |c| c.frames_done() >= 1)?;
    commit(&link, &client, &imgs[1].1, 1, None)?;
    let mut released = Vec::new();
    wait(&mut client, "release of image 0", |c| {
        released.extend(c.take_released());
        released.iter().any(|(i, _)| *i == 0)
    })?;
    check(matches!(released[..], [(0, Release::Buffer)]), || {
        format!("{released:?}")
    })?;
    for (_, b) in imgs {
        b.destroy();
    }
    client.roundtrip()?;
    Ok(Completion::Completed)
}

pub fn explicit_commit_and_release() -> Outcome {
    let (_weston, app) = match start(&[], &[Source::Udmabuf])? {
        Ok(w) => w,
        Err(skip) => return skip,
    };
    let mut client = connect(&app)?;
    let link = link(&client, &app, true)?;
    check(link.explicit(), || "no synchronization object".into())?;
    let imgs = images(&mut client)?;
    for (i, (dma, buffer)) in imgs.iter().enumerate() {
        // Idle images: the acquire fence is already signalled.
        let acquire = dma.export_sync_file(Access::Write)?;
        commit(&link, &client, buffer, i as u32, Some(&acquire))?;
        wait(&mut client, "frame callback", |c| {
            c.frames_done() > i as u64
        })?;
    }
    let mut released = Vec::new();
    wait(&mut client, "explicit release of image 0", |c| {
        released.extend(c.take_released());
        released
            .iter()
            .any(|(i, r)| *i == 0 && !matches!(r, Release::Buffer))
    })?;
    eprintln!("releases with explicit sync: {released:?}");
    for (i, r) in released {
        // A fence the compositor returns goes into the image's dma-buf.
        let fenced = matches!(r, Release::Fenced(_));
        let added = match r.fence() {
            Some(f) => bridge::carry_release_fence(&imgs[i as usize].0, &f).map(|()| true)?,
            None => false,
        };
        check(added == fenced, || {
            format!("image {i}: fenced {fenced}, added {added}")
        })?;
    }
    client.roundtrip()?;
    Ok(Completion::Completed)
}

pub fn release_fence_holds_next_writer() -> Outcome {
    if let Some(why) = [Source::Udmabuf, Source::Vgem]
        .iter()
        .find_map(|s| s.missing())
    {
        return missing(why);
    }
    let dma = Source::Udmabuf.alloc(4096)?;
    let (fence, pending) = Vgem::open()?.pending_sync_file()?;
    check(Release::Immediate.fence().is_none(), || {
        "immediate release has a fence".into()
    })?;
    let fence_of_release = Release::Fenced(pending)
        .fence()
        .ok_or("fenced release has no fence")?;
    bridge::carry_release_fence(&dma, &fence_of_release)?;
    // The next writer (the acquire side's WRITE export) waits for the
    // compositor's reads; another reader does not.
    check(!dma.export_sync_file(Access::Write)?.is_signaled()?, || {
        "writer not held".into()
    })?;
    check(dma.export_sync_file(Access::Read)?.is_signaled()?, || {
        "reader held".into()
    })?;
    fence.signal()?;
    check(dma.export_sync_file(Access::Write)?.is_signaled()?, || {
        "writer still held".into()
    })?;
    Ok(Completion::Completed)
}

pub fn protocol_error_is_lost() -> Outcome {
    let (_weston, app) = match start(&[], &[Source::Udmabuf])? {
        Ok(w) => w,
        Err(skip) => return skip,
    };
    let mut client = connect(&app)?;
    let link = link(&client, &app, false)?;
    let dma = Source::Udmabuf.alloc((STRIDE * SIZE) as usize)?;
    // A zero width is the protocol error invalid_dimensions.
    let buffer = client.create_buffer(&desc(&dma, 0), 0)?;
    let started = Instant::now();
    let answer = client.roundtrip();
    check(matches!(answer, Err(WaylandError::Lost(_))), || {
        format!("{answer:?}")
    })?;
    check(started.elapsed() < TIMEOUT, || {
        "the error took the whole timeout".into()
    })?;
    let commit = commit(&link, &client, &buffer, 0, None);
    check(matches!(commit, Err(WaylandError::Lost(_))), || {
        format!("{commit:?}")
    })?;
    eprintln!(
        "protocol error: {}",
        answer.err().map(|e| e.to_string()).unwrap_or_default()
    );
    Ok(Completion::Completed)
}

pub fn killed_compositor_is_lost() -> Outcome {
    let (weston, app) = match start(&[], &[Source::Udmabuf])? {
        Ok(w) => w,
        Err(skip) => return skip,
    };
    let mut client = connect(&app)?;
    let link = link(&client, &app, false)?;
    let imgs = images(&mut client)?;
    commit(&link, &client, &imgs[0].1, 0, None)?;
    weston.kill()?;
    let started = Instant::now();
    let lost = loop {
        match client.dispatch(Duration::from_millis(200)) {
            Err(e) => break e,
            Ok(_) => check(started.elapsed() < TIMEOUT, || {
                "no error after weston died".into()
            })?,
        }
    };
    check(matches!(lost, WaylandError::Lost(_)), || {
        format!("{lost:?}")
    })?;
    let commit = commit(&link, &client, &imgs[1].1, 1, None);
    check(matches!(commit, Err(WaylandError::Lost(_))), || {
        format!("{commit:?}")
    })?;
    check(
        matches!(client.roundtrip(), Err(WaylandError::Lost(_))),
        || "roundtrip".into(),
    )?;
    // The failure is the application's display's, for good: what the layer
    // keys a lost surface on, and why a new connection on it is refused.
    // SAFETY: the application's display is alive.
    check(unsafe { display_failed(app.display_ptr()) }, || {
        "the application's display does not say it failed".into()
    })?;
    let again = connect(&app).map(|_| ());
    check(again.is_err(), || {
        "a new connection on a dead display".into()
    })?;
    Ok(Completion::Completed)
}
