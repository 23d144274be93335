//! syncfile: safe wrappers over the Linux dma-buf and sync_file ioctls.
