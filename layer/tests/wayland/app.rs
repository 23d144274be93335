//! The application side: this process's own connection to weston (its own
//! `wl_display`, default queue and all), with a mapped toplevel surface, as
//! a Vulkan application would have before calling `vkCreateWaylandSurfaceKHR`.

use std::ffi::c_void;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use libtest_mimic::Failed;
use wayland_client::globals::{registry_queue_init, GlobalListContents};
use wayland_client::protocol::{wl_callback, wl_compositor, wl_registry, wl_surface};
use wayland_client::{delegate_noop, Connection, Dispatch, EventQueue, Proxy, QueueHandle};
use wayland_protocols::xdg::shell::client::{xdg_surface, xdg_toplevel, xdg_wm_base};

use crate::Weston;

#[derive(Default)]
pub struct AppState {
    configured: bool,
    /// `wl_display.sync` answers the application received.
    pub synced: u32,
}

pub struct App {
    pub conn: Connection,
    pub queue: EventQueue<AppState>,
    pub state: AppState,
    pub surface: wl_surface::WlSurface,
    _shell: (xdg_surface::XdgSurface, xdg_toplevel::XdgToplevel),
}

impl App {
    /// Connects to `weston` and maps a toplevel (committed once, without a
    /// buffer, and its first configure acknowledged).
    pub fn connect(weston: &Weston) -> Result<App, Failed> {
        Self::connect_to(&weston.socket)
    }

    /// Likewise, to the compositor on `socket` (in `XDG_RUNTIME_DIR`).
    pub fn connect_to(socket: &str) -> Result<App, Failed> {
        let runtime =
            PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR").ok_or("no XDG_RUNTIME_DIR")?);
        let stream = UnixStream::connect(runtime.join(socket))?;
        let conn = Connection::from_socket(stream)?;
        let (globals, mut queue) = registry_queue_init::<AppState>(&conn)?;
        let qh = queue.handle();
        let compositor: wl_compositor::WlCompositor = globals.bind(&qh, 4..=5, ())?;
        let wm: xdg_wm_base::XdgWmBase = globals.bind(&qh, 1..=1, ())?;
        let surface = compositor.create_surface(&qh, ());
        let xdg = wm.get_xdg_surface(&surface, &qh, ());
        let toplevel = xdg.get_toplevel(&qh, ());
        toplevel.set_title("syncfile-wsi wayland test".into());
        surface.commit();
        let mut state = AppState::default();
        while !state.configured {
            queue.blocking_dispatch(&mut state)?;
        }
        Ok(App {
            conn,
            queue,
            state,
            surface,
            _shell: (xdg, toplevel),
        })
    }

    /// A child scenario's connection, to the compositor `WAYLAND_DISPLAY`
    /// names.
    pub fn for_child() -> crate::common::child::Result<App> {
        let socket = std::env::var("WAYLAND_DISPLAY")?;
        App::connect_to(&socket).map_err(|e| format!("{e:?}").into())
    }

    /// The `wl_display*` a Vulkan application passes in its surface create info.
    pub fn display_ptr(&self) -> *mut c_void {
        self.conn.backend().display_ptr().cast()
    }

    /// The `wl_surface*`, likewise.
    pub fn surface_ptr(&self) -> *mut c_void {
        self.surface.id().as_ptr().cast()
    }

    /// Sends a `wl_display.sync` on the application's queue.
    pub fn sync(&self) {
        self.conn.display().sync(&self.queue.handle(), ());
        let _ = self.conn.flush();
    }
}

impl Dispatch<wl_registry::WlRegistry, GlobalListContents> for AppState {
    fn event(
        _: &mut Self,
        _: &wl_registry::WlRegistry,
        _: wl_registry::Event,
        _: &GlobalListContents,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

impl Dispatch<xdg_wm_base::XdgWmBase, ()> for AppState {
    fn event(
        _: &mut Self,
        wm: &xdg_wm_base::XdgWmBase,
        event: xdg_wm_base::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_wm_base::Event::Ping { serial } = event {
            wm.pong(serial);
        }
    }
}

impl Dispatch<xdg_surface::XdgSurface, ()> for AppState {
    fn event(
        state: &mut Self,
        xdg: &xdg_surface::XdgSurface,
        event: xdg_surface::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_surface::Event::Configure { serial } = event {
            xdg.ack_configure(serial);
            state.configured = true;
        }
    }
}

impl Dispatch<wl_callback::WlCallback, ()> for AppState {
    fn event(
        state: &mut Self,
        _: &wl_callback::WlCallback,
        _: wl_callback::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        state.synced += 1;
    }
}

delegate_noop!(AppState: ignore wl_compositor::WlCompositor);
delegate_noop!(AppState: ignore wl_surface::WlSurface);
delegate_noop!(AppState: ignore xdg_toplevel::XdgToplevel);
