//! The application's side of X11: which server its connection (an
//! `xcb_connection_t` or an Xlib `Display`) talks to. The layer opens its
//! own connection to that server, so that nothing it asks for or hears
//! ever mixes with the application's requests and events; it reads the
//! application's connection only for the socket's peer address, through
//! the library the application itself has loaded.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::fd::BorrowedFd;

use rustix::net::SocketAddrAny;

use super::X11Error;

/// The application's connection to its X server.
#[derive(Clone, Copy, Debug)]
pub enum AppConnection {
    /// An `xcb_connection_t *` (`VK_KHR_xcb_surface`).
    Xcb(*mut c_void),
    /// An Xlib `Display *` (`VK_KHR_xlib_surface`).
    Xlib(*mut c_void),
}

impl AppConnection {
    /// The display name of the server behind this connection (`:1`,
    /// `host:0`), for the layer's own connection.
    ///
    /// # Safety
    /// The pointer is the application's live connection.
    pub unsafe fn display_name(self) -> Result<String, X11Error> {
        let (library, symbol, connection) = match self {
            AppConnection::Xcb(c) => (c"libxcb.so.1", c"xcb_get_file_descriptor", c),
            AppConnection::Xlib(d) => (c"libX11.so.6", c"XConnectionNumber", d),
        };
        if connection.is_null() {
            return Err(X11Error::BadHandle);
        }
        // SAFETY: both functions take the connection and return its
        // socket; the library is the one the application made it with.
        let fd = unsafe {
            let get: unsafe extern "C" fn(*mut c_void) -> c_int = loaded(library, symbol)?;
            get(connection)
        };
        if fd < 0 {
            return Err(X11Error::BadHandle);
        }
        // SAFETY: the connection's socket, open while the connection is,
        // which outlives this call; only its peer address is read.
        let socket = unsafe { BorrowedFd::borrow_raw(fd) };
        let peer = rustix::net::getpeername(socket)
            .map_err(|e| X11Error::Peer(e.to_string()))?
            .ok_or_else(|| X11Error::Peer("the socket has no peer".into()))?;
        display_of(&peer)
    }
}

/// A function of a library the process has already loaded (never loads
/// one: an application that made an X connection has the library).
///
/// # Safety
/// `F` is the function's true type.
unsafe fn loaded<F: Copy>(library: &CStr, symbol: &CStr) -> Result<F, X11Error> {
    let missing = || X11Error::NoLibrary(library.to_string_lossy().into_owned());
    // SAFETY: RTLD_NOLOAD only looks the library up; the handle is never
    // closed, so the function stays valid (the library stays loaded).
    let handle = unsafe {
        libc::dlopen(
            library.as_ptr() as *const c_char,
            libc::RTLD_NOLOAD | libc::RTLD_LAZY,
        )
    };
    if handle.is_null() {
        return Err(missing());
    }
    // SAFETY: a symbol of the live handle; the caller names its type.
    let f = unsafe { libc::dlsym(handle, symbol.as_ptr()) };
    if f.is_null() {
        return Err(missing());
    }
    debug_assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: a non-null function address of type `F` (the caller's word).
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&f) })
}

/// The display name of the X server at socket address `peer`: the local
/// sockets are `/tmp/.X11-unix/X<n>` (or that name in the abstract
/// namespace), TCP ports are 6000 + n.
fn display_of(peer: &SocketAddrAny) -> Result<String, X11Error> {
    let unknown = || X11Error::Peer(format!("{peer:?} is not an X server's address"));
    if let Ok(unix) = rustix::net::SocketAddrUnix::try_from(peer.clone()) {
        let name: Vec<u8> = match (unix.path_bytes(), unix.abstract_name()) {
            (Some(p), _) => p.to_vec(),
            (None, Some(a)) => a.to_vec(),
            (None, None) => return Err(unknown()),
        };
        return local_display(&name).ok_or_else(unknown);
    }
    if let Ok(inet) = std::net::SocketAddr::try_from(peer.clone()) {
        let n = inet.port().checked_sub(6000).ok_or_else(unknown)?;
        return Ok(match inet.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]:{n}"),
            ip => format!("{ip}:{n}"),
        });
    }
    Err(unknown())
}

/// `:<n>` for a local socket named `…/X<n>`.
fn local_display(name: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(name).ok()?;
    let (_, n) = name.rsplit_once("/X")?;
    let n: u32 = n.parse().ok()?;
    Some(format!(":{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_sockets_name_their_display() {
        assert_eq!(local_display(b"/tmp/.X11-unix/X1").as_deref(), Some(":1"));
        assert_eq!(local_display(b"/tmp/.X11-unix/X12").as_deref(), Some(":12"));
        assert_eq!(local_display(b"/run/user/0/wayland-0"), None);
        assert_eq!(local_display(b"/tmp/.X11-unix/Xa"), None);
    }

    #[test]
    fn tcp_ports_name_their_display() {
        let peer = SocketAddrAny::from(std::net::SocketAddr::from(([10, 0, 0, 2], 6003)));
        assert_eq!(display_of(&peer).unwrap(), "10.0.0.2:3");
        let low = SocketAddrAny::from(std::net::SocketAddr::from(([10, 0, 0, 2], 22)));
        assert!(display_of(&low).is_err());
    }
}
