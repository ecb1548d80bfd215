//! The LiteRT runtime, loaded at run time from `libLiteRt.so`.
//!
//! Why our own thin layer over `edgefirst-tflite-sys` rather than the safe
//! `edgefirst_tflite::litert` types: those borrow the environment and model by
//! lifetime, which a long-running daemon that reloads models cannot hold, and
//! they can neither set the CPU thread count nor allocate output buffers
//! larger than the (sometimes empty) shapes in the file. The function table
//! itself is the crate's ABI-checked one.
//!
//! The library is loaded once and never unloaded: unloading it and then
//! exiting crashes in glibc's exit handlers.

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use edgefirst_tflite_sys::litert::{
    self as lr, kLiteRtHwAcceleratorCpu, kLiteRtStatusOk, kLiteRtTensorBufferLockModeRead,
    kLiteRtTensorBufferLockModeWrite, kLiteRtTensorBufferTypeHostMemory, LiteRtFunctions,
};

use super::error::InferError;

/// Symbols outside `LiteRtFunctions` that we need: opaque options (thread
/// count, XNNPACK switch) and readable status strings.
type CreateOpaqueFn = unsafe extern "C" fn(
    *const c_char,
    *mut c_void,
    Option<unsafe extern "C" fn(*mut c_void)>,
    *mut *mut c_void,
) -> lr::Status;
type AddOpaqueFn = unsafe extern "C" fn(lr::Options, *mut c_void) -> lr::Status;
type StatusStringFn = unsafe extern "C" fn(lr::Status) -> *const c_char;

/// The loaded runtime: the library, its function table and one environment.
pub struct Runtime {
    _lib: libloading::Library,
    fns: LiteRtFunctions,
    create_opaque: Option<CreateOpaqueFn>,
    add_opaque: Option<AddOpaqueFn>,
    status_string: Option<StatusStringFn>,
    env: lr::Environment,
    path: PathBuf,
    /// From `libLiteRt.so.version` beside the library, if present.
    version: Option<String>,
}

// SAFETY: the environment is created once and only read afterwards; LiteRT's
// environment is shared by every compiled model in the process.
unsafe impl Send for Runtime {}
unsafe impl Sync for Runtime {}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Where to look for `libLiteRt.so`, in order.
#[derive(Debug, Clone, Default)]
pub struct RuntimeSearch {
    /// `--runtime PATH` on the command line.
    pub cli: Option<PathBuf>,
    /// `runtime` in the config file.
    pub config: Option<PathBuf>,
}

/// The file name set-up and packages use.
pub const LIBRARY_NAME: &str = "libLiteRt.so";
/// Environment variable that names the library.
pub const ENV_VAR: &str = "EDGEVISION_LITERT";

impl RuntimeSearch {
    /// Explicit choices (command line, config, environment): the first one
    /// given is the only one tried, so a typo is an error, not a silent
    /// fall-back to another copy.
    fn explicit(&self) -> Option<(String, PathBuf)> {
        if let Some(p) = &self.cli {
            return Some(("--runtime".into(), p.clone()));
        }
        if let Some(p) = &self.config {
            return Some(("config key `runtime`".into(), p.clone()));
        }
        match std::env::var_os(ENV_VAR) {
            Some(v) if !v.is_empty() => Some((format!("${ENV_VAR}"), PathBuf::from(v))),
            _ => None,
        }
    }

    /// Default places: where `scripts/setup` puts it (relative to the working
    /// directory and to the executable), where the installer puts it, then
    /// the system library path.
    fn defaults() -> Vec<PathBuf> {
        let arch = std::env::consts::ARCH;
        let rel = Path::new("runtime").join(arch).join(LIBRARY_NAME);
        let mut out = Vec::new();
        if let Ok(cwd) = std::env::current_dir() {
            out.push(cwd.join(&rel));
        }
        if let Ok(exe) = std::env::current_exe() {
            let mut dir = exe.parent().map(Path::to_path_buf);
            for _ in 0..4 {
                let Some(d) = dir else { break };
                out.push(d.join(&rel));
                out.push(d.join(LIBRARY_NAME));
                // PREFIX/bin/edgevision -> PREFIX/lib/edgevision/ (install.sh).
                out.push(d.join("lib/edgevision").join(LIBRARY_NAME));
                dir = d.parent().map(Path::to_path_buf);
            }
        }
        out.push(PathBuf::from("/usr/lib/edgevision").join(LIBRARY_NAME));
        out.push(PathBuf::from("/usr/local/lib/edgevision").join(LIBRARY_NAME));
        out.dedup();
        out
    }
}

impl Runtime {
    /// Loads the runtime (once per process). Later calls return the loaded
    /// one whatever they ask for, since a second copy cannot be loaded safely.
    pub fn load(search: &RuntimeSearch) -> Result<&'static Runtime, InferError> {
        if let Some(rt) = RUNTIME.get() {
            return Ok(rt);
        }
        // One loader at a time, so racing threads never open a second copy.
        static LOADING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = LOADING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rt) = RUNTIME.get() {
            return Ok(rt);
        }
        let rt = Self::find_and_open(search)?;
        Ok(RUNTIME.get_or_init(|| rt))
    }

    /// The runtime if one is loaded already.
    pub fn get() -> Option<&'static Runtime> {
        RUNTIME.get()
    }

    fn find_and_open(search: &RuntimeSearch) -> Result<Runtime, InferError> {
        if let Some((origin, path)) = search.explicit() {
            if !path.is_file() {
                return Err(InferError::RuntimeNotFound {
                    tried: vec![format!("{} ({origin}): no such file", path.display())],
                });
            }
            return Self::open(&path);
        }
        let mut tried = Vec::new();
        for path in RuntimeSearch::defaults() {
            if path.is_file() {
                return Self::open(&path);
            }
            tried.push(format!("{}: no such file", path.display()));
        }
        // Last: the dynamic loader's own search (LD_LIBRARY_PATH, ld.so.cache).
        match Self::open(Path::new(LIBRARY_NAME)) {
            Ok(rt) => Ok(rt),
            Err(e) => {
                tried.push(format!("{LIBRARY_NAME} on the system library path: {e}"));
                Err(InferError::RuntimeNotFound { tried })
            }
        }
    }

    fn open(path: &Path) -> Result<Runtime, InferError> {
        let invalid = |reason: String| InferError::RuntimeInvalid {
            path: path.to_path_buf(),
            reason,
        };
        // SAFETY: loading a shared library runs its initialisers; we only
        // load files that the user or set-up named as the LiteRT runtime.
        let lib =
            unsafe { libloading::Library::new(path.as_os_str()) }.map_err(|e| invalid(e.to_string()))?;
        // SAFETY: the table is only used while `lib` lives, and `lib` lives
        // in the process-wide static for the rest of the process.
        let fns = unsafe { LiteRtFunctions::try_load(&lib) }.map_err(|m| {
            invalid(format!(
                "not a LiteRT runtime: symbol {} is missing (a classic TensorFlow Lite \
                 library will not do; use libLiteRt.so from ai-edge-litert 2.3.0)",
                m.name()
            ))
        })?;
        // SAFETY: optional symbols with the signatures of LiteRT 2.x's C API.
        let (create_opaque, add_opaque, status_string) = unsafe {
            (
                lib.get::<CreateOpaqueFn>(b"LiteRtCreateOpaqueOptions\0")
                    .ok()
                    .map(|s| *s),
                lib.get::<AddOpaqueFn>(b"LiteRtAddOpaqueOptions\0")
                    .ok()
                    .map(|s| *s),
                lib.get::<StatusStringFn>(b"LiteRtGetStatusString\0")
                    .ok()
                    .map(|s| *s),
            )
        };
        let mut env: lr::Environment = std::ptr::null_mut();
        // SAFETY: no options; `env` is an out-pointer.
        let (status, _log) = super::quiet::capture_stderr(|| unsafe {
            (fns.create_environment)(0, std::ptr::null(), &mut env)
        });
        let rt = Runtime {
            _lib: lib,
            fns,
            create_opaque,
            add_opaque,
            status_string,
            env,
            path: path.to_path_buf(),
            version: read_version(path),
        };
        rt.check(status, "LiteRtCreateEnvironment")?;
        if rt.env.is_null() {
            return Err(invalid("LiteRtCreateEnvironment returned no environment".into()));
        }
        tracing::debug!(path = %rt.path.display(), "loaded LiteRT runtime");
        Ok(rt)
    }

    /// The runtime's release (`2.3.0`), when set-up or the package wrote
    /// it beside the library: the library itself exports no version.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The file the runtime was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn fns(&self) -> &LiteRtFunctions {
        &self.fns
    }

    pub(crate) fn env(&self) -> lr::Environment {
        self.env
    }

    pub(crate) fn check(&self, status: lr::Status, what: &'static str) -> Result<(), InferError> {
        if status == kLiteRtStatusOk {
            return Ok(());
        }
        let text = self
            .status_string
            // SAFETY: returns a static C string for any status value.
            .map(|f| unsafe { f(status) })
            .filter(|p| !p.is_null())
            // SAFETY: non-null, NUL-terminated, static.
            .map(|p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("status {status}"));
        Err(InferError::Runtime {
            call: what,
            message: text,
        })
    }

    /// Compilation options: CPU, with the XNNPACK thread count and switch.
    pub(crate) fn create_options(&self, threads: usize, xnnpack: bool) -> Result<Options<'_>, InferError> {
        let mut raw: lr::Options = std::ptr::null_mut();
        // SAFETY: out-pointer.
        self.check(
            unsafe { (self.fns.create_options)(&mut raw) },
            "LiteRtCreateOptions",
        )?;
        let opts = Options { rt: self, raw };
        // SAFETY: `raw` is a live options object.
        self.check(
            unsafe { (self.fns.set_options_hardware_accelerators)(raw, kLiteRtHwAcceleratorCpu) },
            "LiteRtSetOptionsHardwareAccelerators",
        )?;
        let mut payload = format!("num_threads = {}\n", threads.max(1));
        if !xnnpack {
            payload.push_str("kernel_mode = \"builtin\"\n");
        }
        match (self.create_opaque, self.add_opaque) {
            (Some(create), Some(add)) => {
                let data = CString::new(payload).expect("no NUL in payload").into_raw();
                let mut opaque: *mut c_void = std::ptr::null_mut();
                // SAFETY: the identifier is copied by LiteRT; the payload is
                // owned by the opaque options and freed by `free_payload`.
                let status =
                    unsafe { create(c"xnnpack".as_ptr(), data.cast(), Some(free_payload), &mut opaque) };
                if status != kLiteRtStatusOk {
                    // SAFETY: LiteRT did not take ownership.
                    drop(unsafe { CString::from_raw(data) });
                    self.check(status, "LiteRtCreateOpaqueOptions")?;
                }
                // SAFETY: ownership of `opaque` moves into the options.
                self.check(unsafe { add(raw, opaque) }, "LiteRtAddOpaqueOptions")?;
            }
            _ => tracing::warn!(
                "this LiteRT build has no opaque options: thread count and XNNPACK switch ignored"
            ),
        }
        Ok(opts)
    }
}

unsafe extern "C" fn free_payload(p: *mut c_void) {
    if !p.is_null() {
        // SAFETY: created by `CString::into_raw` in `create_options`.
        drop(unsafe { CString::from_raw(p.cast()) });
    }
}

/// Owned compilation options.
pub(crate) struct Options<'rt> {
    rt: &'rt Runtime,
    pub(crate) raw: lr::Options,
}

impl Drop for Options<'_> {
    fn drop(&mut self) {
        // SAFETY: created by LiteRtCreateOptions, destroyed once.
        unsafe { (self.rt.fns.destroy_options)(self.raw) }
    }
}

/// A host-memory tensor buffer of a known size.
pub(crate) struct TensorBuf {
    rt: &'static Runtime,
    pub(crate) raw: lr::TensorBuffer,
    pub(crate) size: usize,
}

// SAFETY: a tensor buffer is plain host memory owned by this value.
unsafe impl Send for TensorBuf {}

impl TensorBuf {
    /// Allocates `size` bytes for a tensor of type `ty`. The size is ours,
    /// not the runtime's: outputs whose shape is empty in the file (the SSD
    /// postprocess op) would otherwise get 4 bytes and be overrun.
    pub(crate) fn new(
        rt: &'static Runtime,
        ty: &lr::RankedTensorType,
        size: usize,
    ) -> Result<Self, InferError> {
        let mut raw: lr::TensorBuffer = std::ptr::null_mut();
        // SAFETY: `ty` is a valid tensor type; out-pointer.
        let status = unsafe {
            (rt.fns.create_managed_tensor_buffer)(
                rt.env,
                kLiteRtTensorBufferTypeHostMemory,
                ty,
                size,
                &mut raw,
            )
        };
        rt.check(status, "LiteRtCreateManagedTensorBuffer")?;
        let mut actual = 0usize;
        // SAFETY: live buffer; out-pointer.
        rt.check(
            unsafe { (rt.fns.get_tensor_buffer_size)(raw, &mut actual) },
            "LiteRtGetTensorBufferSize",
        )?;
        let buf = TensorBuf { rt, raw, size };
        if actual < size {
            return Err(InferError::Runtime {
                call: "LiteRtCreateManagedTensorBuffer",
                message: format!("asked for {size} bytes, got {actual}"),
            });
        }
        Ok(buf)
    }

    /// Maps the buffer for writing and hands the bytes to `f`.
    pub(crate) fn write<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, InferError> {
        let ptr = self.lock(kLiteRtTensorBufferLockModeWrite)?;
        // SAFETY: the lock maps `size` bytes of host memory we own exclusively.
        let r = f(unsafe { std::slice::from_raw_parts_mut(ptr, self.size) });
        self.unlock()?;
        Ok(r)
    }

    /// Maps the buffer for reading and hands the bytes to `f`.
    pub(crate) fn read<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R, InferError> {
        let ptr = self.lock(kLiteRtTensorBufferLockModeRead)?;
        // SAFETY: as above, read-only.
        let r = f(unsafe { std::slice::from_raw_parts(ptr, self.size) });
        self.unlock()?;
        Ok(r)
    }

    fn lock(&mut self, mode: lr::TensorBufferLockMode) -> Result<*mut u8, InferError> {
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: live buffer; out-pointer.
        let status = unsafe { (self.rt.fns.lock_tensor_buffer)(self.raw, &mut ptr, mode) };
        self.rt.check(status, "LiteRtLockTensorBuffer")?;
        if ptr.is_null() {
            return Err(InferError::Runtime {
                call: "LiteRtLockTensorBuffer",
                message: "null mapping".into(),
            });
        }
        Ok(ptr.cast())
    }

    fn unlock(&mut self) -> Result<(), InferError> {
        // SAFETY: locked just before.
        let status = unsafe { (self.rt.fns.unlock_tensor_buffer)(self.raw) };
        self.rt.check(status, "LiteRtUnlockTensorBuffer")
    }
}

impl Drop for TensorBuf {
    fn drop(&mut self) {
        // SAFETY: created by LiteRtCreateManagedTensorBuffer, destroyed once.
        unsafe { (self.rt.fns.destroy_tensor_buffer)(self.raw) }
    }
}

/// `PATH.version` beside the library: one short line (the release that
/// `scripts/setup` unpacked, or the package shipped). Anything else is ignored.
fn read_version(library: &Path) -> Option<String> {
    let mut file = library.as_os_str().to_owned();
    file.push(".version");
    let text = std::fs::read(file).ok()?;
    let line = std::str::from_utf8(text.get(..text.len().min(64))?).ok()?.trim();
    let ok = !line.is_empty()
        && line
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-+_".contains(c));
    ok.then(|| line.to_string())
}
