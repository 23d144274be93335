//! The child's side of the X11 tests: a window of its own on the X server
//! `DISPLAY` names, an `xcb_connection_t` for `vkCreateXcbSurfaceKHR` (from
//! the system's libxcb, as applications make one), and the server's own
//! account of what it showed, on a connection of the test's that the layer
//! knows nothing of: Present's `CompleteNotify` events for the window (how
//! each frame was shown: copy, flip, skipped) and `GetImage` of it.

use std::ffi::{c_char, c_int, c_void};
use std::time::{Duration, Instant};

use ash::vk;
use serde_json::{json, Value};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::protocol::{present, Event};
use x11rb::rust_connection::RustConnection;

use crate::client::{Chain, Options, Vk, COLOURS};
use crate::common::child::Result;
use crate::fds;

/// The window's size: `WxH`, or `full` for the whole screen (which the
/// server flips to).
pub const WINDOW_VAR: &str = "SYNCFILE_TEST_X11_WINDOW";

/// The test's window and its two connections.
pub struct Window {
    /// The test's own: made the window, reads the server's account.
    pub oracle: RustConnection,
    pub id: u32,
    pub width: u16,
    pub height: u16,
    /// The application's, for the surface.
    xcb: *mut c_void,
    disconnect: unsafe extern "C" fn(*mut c_void),
}

impl Window {
    /// A mapped window on the default screen, as [`WINDOW_VAR`] asks,
    /// with the Present events the test reads selected.
    pub fn open() -> Result<Self> {
        let (oracle, screen) = RustConnection::connect(None)?;
        let root = &oracle.setup().roots[screen];
        let (root_id, sw, sh) = (root.root, root.width_in_pixels, root.height_in_pixels);
        let spec = std::env::var(WINDOW_VAR).unwrap_or_else(|_| "64x64".into());
        let (width, height) = match spec.as_str() {
            "full" => (sw, sh),
            wh => {
                let (w, h) = wh.split_once('x').ok_or("the window is WxH or full")?;
                (w.parse()?, h.parse()?)
            }
        };
        let id = oracle.generate_id()?;
        oracle.create_window(
            x11rb::COPY_DEPTH_FROM_PARENT,
            id,
            root_id,
            0,
            0,
            width,
            height,
            0,
            xproto::WindowClass::INPUT_OUTPUT,
            x11rb::COPY_FROM_PARENT,
            &xproto::CreateWindowAux::new()
                .background_pixel(0)
                .override_redirect(1),
        )?;
        oracle.map_window(id)?;
        let eid = oracle.generate_id()?;
        present::select_input(&oracle, eid, id, present::EventMask::COMPLETE_NOTIFY)?;
        oracle.get_input_focus()?.reply()?;
        // SAFETY: libxcb's own functions, by their C signatures; the
        // library stays loaded (the handle is never closed).
        let (xcb, disconnect) = unsafe {
            let lib = libc::dlopen(c"libxcb.so.1".as_ptr(), libc::RTLD_NOW);
            if lib.is_null() {
                return Err("libxcb.so.1 cannot be loaded".into());
            }
            let connect = libc::dlsym(lib, c"xcb_connect".as_ptr());
            let disconnect = libc::dlsym(lib, c"xcb_disconnect".as_ptr());
            if connect.is_null() || disconnect.is_null() {
                return Err("libxcb.so.1 lacks xcb_connect".into());
            }
            let connect: unsafe extern "C" fn(*const c_char, *mut c_int) -> *mut c_void =
                std::mem::transmute(connect);
            let disconnect: unsafe extern "C" fn(*mut c_void) = std::mem::transmute(disconnect);
            (connect(std::ptr::null(), std::ptr::null_mut()), disconnect)
        };
        Ok(Self {
            oracle,
            id,
            width,
            height,
            xcb,
            disconnect,
        })
    }

    /// A surface on the window, made through the application's connection.
    pub fn surface(&self, entry: &ash::Entry, instance: &ash::Instance) -> Result<vk::SurfaceKHR> {
        let info = vk::XcbSurfaceCreateInfoKHR::default()
            .connection(self.xcb.cast())
            .window(self.id);
        // SAFETY: the live connection and window; the caller destroys the
        // surface before the window goes.
        Ok(unsafe {
            ash::khr::xcb_surface::Instance::new(entry, instance).create_xcb_surface(&info, None)?
        })
    }

    /// The frames the server reported complete since last asked, by mode,
    /// with the `CLOCK_MONOTONIC` time (ns) the last one came.
    pub fn completes(&self) -> Result<(Completes, Option<u64>)> {
        let mut c = Completes::default();
        let mut last = None;
        while let Some(e) = self.oracle.poll_for_event()? {
            if let Event::PresentCompleteNotify(e) = e {
                if e.kind != present::CompleteKind::PIXMAP {
                    continue;
                }
                match e.mode {
                    present::CompleteMode::FLIP => c.flip += 1,
                    present::CompleteMode::SKIP => c.skip += 1,
                    _ => c.copy += 1,
                }
                last = Some(monotonic_ns());
            }
        }
        Ok((c, last))
    }

    /// The window's pixels, as the server has them (32-bit BGRX).
    pub fn pixels(&self) -> Result<Vec<u8>> {
        let reply = self
            .oracle
            .get_image(
                xproto::ImageFormat::Z_PIXMAP,
                self.id,
                0,
                0,
                self.width,
                self.height,
                !0,
            )?
            .reply()?;
        Ok(reply.data)
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        if !self.xcb.is_null() {
            // SAFETY: the connection xcb_connect made, used no more.
            unsafe { (self.disconnect)(self.xcb) };
        }
    }
}

#[derive(Clone, Copy, Default, Debug)]
pub struct Completes {
    pub copy: u64,
    pub flip: u64,
    pub skip: u64,
}

impl Completes {
    fn add(&mut self, o: Completes) {
        self.copy += o.copy;
        self.flip += o.flip;
        self.skip += o.skip;
    }

    fn total(&self) -> u64 {
        self.copy + self.flip + self.skip
    }
}

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// What image `index`'s clear colour is in the window's 32-bit pixels.
fn bgrx(index: u32) -> [u8; 3] {
    let c = COLOURS[index as usize % COLOURS.len()];
    let byte = |v: f32| (v * 255.0).round() as u8;
    [byte(c[2]), byte(c[1]), byte(c[0])]
}

/// How many of the window's pixels are not image `index`'s colour.
fn wrong_pixels(pixels: &[u8], index: u32) -> usize {
    let want = bgrx(index);
    pixels.chunks_exact(4).filter(|p| p[..3] != want).count()
}

/// Waits until the server has reported `want` frames complete (or 10 s).
fn settle(w: &Window, seen: &mut Completes, want: u64) -> Result<Option<u64>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = None;
    loop {
        let (c, at) = w.completes()?;
        seen.add(c);
        last = at.or(last);
        if seen.total() >= want || Instant::now() > deadline {
            return Ok(last);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Instance, device and surface on a window of the child's own.
fn on_window() -> Result<Vk> {
    Vk::with(&Options {
        x11: true,
        ..Options::default()
    })
}

/// A FIFO swapchain on `vk`'s window.
fn fifo(vk: &Vk) -> Result<Chain<'_>> {
    Chain::new(vk, vk::PresentModeKHR::FIFO, 0, 0, vk::SwapchainKHR::null())
}

/// `PARAM` = `MODE:N`: N frames on the window in that mode; then what the
/// server says it did with them and how many of the window's pixels are
/// not the last frame's colour.
pub fn frames(mode: vk::PresentModeKHR, n: u32) -> Result<Value> {
    let vk = on_window()?;
    let w = vk.window.as_ref().ok_or("no window")?;
    let mut chain = Chain::new(&vk, mode, 0, 0, vk::SwapchainKHR::null())?;
    let mut last = 0;
    for _ in 0..n {
        last = chain.frame()?;
    }
    chain.wait_idle()?;
    let mut seen = Completes::default();
    settle(w, &mut seen, n.into())?;
    let pixels = w.pixels()?;
    let wrong = wrong_pixels(&pixels, last);
    drop(chain);
    Ok(json!({
        "frames": n,
        "completes": { "copy": seen.copy, "flip": seen.flip, "skip": seen.skip },
        "pixels": pixels.len() / 4,
        "wrong_pixels": wrong,
        "extent": [w.width, w.height],
    }))
}

/// How long the test leaves the foreign fence pending after the present:
/// far longer than a present that did not wait takes.
const PENDING: Duration = Duration::from_millis(500);

/// A few frames; then one whose render is complete but whose image's
/// dma-buf (every one of the layer's, in fact) holds a pending vgem write
/// fence, presented; the fence signalled [`PENDING`] later. What the
/// window showed while it was pending, and when the server reported the
/// frame complete.
pub fn held() -> Result<Value> {
    let vk = on_window()?;
    let w = vk.window.as_ref().ok_or("no window")?;
    let mut chain = fifo(&vk)?;
    let mut seen = Completes::default();
    for _ in 0..4 {
        chain.frame()?;
    }
    chain.wait_idle()?;
    settle(w, &mut seen, 4)?;
    let index = chain.render_unpresented()?;
    let before = wrong_pixels(&w.pixels()?, index) == 0;
    let (fence, dma_bufs) = fds::fence_every_dma_buf()?;
    let presented = monotonic_ns();
    chain
        .present(index, &[chain.rendered[index as usize]])
        .map_err(|e| format!("vkQueuePresentKHR: {e:?}"))?;
    std::thread::sleep(PENDING);
    // Still pending: the server must not have shown the frame yet. (A
    // flipped window's pixels are the buffer on the screen, which holds
    // the pending fence too: reading them would wait for it.)
    let (early, _) = w.completes()?;
    let flip = std::env::var(WINDOW_VAR).is_ok_and(|v| v == "full");
    let shown_early = if flip {
        None
    } else {
        Some(wrong_pixels(&w.pixels()?, index) == 0)
    };
    let signalled = monotonic_ns();
    fence.signal()?;
    seen.add(early);
    let completed = settle(w, &mut seen, 5)?;
    let shown_after = wrong_pixels(&w.pixels()?, index) == 0;
    chain.wait_idle()?;
    drop(chain);
    Ok(json!({
        "dma_bufs": dma_bufs,
        "shown_before_present": before,
        "completed_while_pending": early.total(),
        "shown_while_pending": shown_early,
        "shown_after_signal": shown_after,
        "presented_ns": presented,
        "signalled_ns": signalled,
        "completed_ns": completed,
        "completes": { "copy": seen.copy, "flip": seen.flip, "skip": seen.skip },
    }))
}

/// Frames until a present or acquire fails (the test kills the server
/// meanwhile) or 120 s pass: the result that ended it.
pub fn until_lost() -> Result<Value> {
    let vk = on_window()?;
    let mut chain = fifo(&vk)?;
    println!("presenting");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut frames = 0u32;
    let ended = loop {
        if Instant::now() > deadline {
            break "TIMEOUT".to_owned();
        }
        match chain.frame() {
            Ok(_) => frames += 1,
            Err(e) => break e.to_string(),
        }
    };
    drop(chain);
    Ok(json!({ "frames": frames, "ended": ended }))
}

/// A few frames; then the window grows by 32 pixels each way (a request
/// of the test's own connection, as a window manager's would be): frames
/// until one fails (at most 60), then a new swapchain replacing the old,
/// whose capabilities and frames follow the new size.
pub fn resized() -> Result<Value> {
    let vk = on_window()?;
    let w = vk.window.as_ref().ok_or("no window")?;
    let mut chain = fifo(&vk)?;
    for _ in 0..5 {
        chain.frame()?;
    }
    let (width, height) = (u32::from(w.width) + 32, u32::from(w.height) + 32);
    w.oracle.configure_window(
        w.id,
        &xproto::ConfigureWindowAux::new()
            .width(width)
            .height(height),
    )?;
    w.oracle.get_input_focus()?.reply()?;
    let mut frames_after = 0;
    let ended = loop {
        match chain.frame() {
            Ok(_) if frames_after < 60 => frames_after += 1,
            Ok(_) => break "no error after 60 frames".to_owned(),
            Err(e) => break e.to_string(),
        }
    };
    chain.wait_idle()?;
    let next = Chain::new(&vk, vk::PresentModeKHR::FIFO, 0, 0, chain.swapchain)?;
    drop(chain);
    let mut next = next;
    for _ in 0..5 {
        next.frame()?;
    }
    next.wait_idle()?;
    let extent = [next.extent.width, next.extent.height];
    drop(next);
    Ok(json!({
        "ended": ended,
        "frames_after_resize": frames_after,
        "new_extent": extent,
        "resized_to": [width, height],
    }))
}
