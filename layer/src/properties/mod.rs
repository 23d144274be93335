//! Property tests of every parser that reads outside input: the settings
//! (environment and file), the compositor's dma-buf feedback and format
//! table, and the application's `pNext` chains. Each property holds for
//! any input proptest makes; the inputs that once broke one, and files a
//! fuzzer would start from, are kept in `tests/corpus/` and replayed by
//! [`corpus`] on every run.
//!
//! They are host tests (`cargo test`): no parser here needs a kernel or a
//! driver. Create infos with extreme values, which only mean something to
//! a real driver, are the guest's (`tests/headless`, `faults::bad_create_infos`).

mod chains;
mod corpus;
mod formats;
mod settings;
