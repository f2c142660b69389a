//! vnfs patch: an `sqfs_file_t` backed by an open Rust `File`.
//!
//! libsquashfs's own file object (`sqfs_open_file`) opens the output by
//! name and reports a failed write only as `SQFS_ERROR_IO` ("Generic I/O
//! failure"), losing errno. This one writes through a file the caller
//! already opened (e.g. an exclusively created temporary file, or a block
//! device) and keeps the first OS error, so the caller can say "No space
//! left on device" and name its output.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::bindings::*;
use crate::ManagedPointer;

/// What the file object shares with its owner: the logical size and the
/// first I/O error.
#[derive(Debug, Default)]
pub(crate) struct FileState {
	size: AtomicU64,
	error: Mutex<Option<io::Error>>,
}

impl FileState {
	/// The first I/O error a read, write or truncate met, if any.
	pub(crate) fn take_error(&self) -> Option<io::Error> {
		self.error.lock().ok().and_then(|mut e| e.take())
	}

	/// Bytes in the file as libsquashfs sees it.
	pub(crate) fn size(&self) -> u64 {
		self.size.load(Ordering::SeqCst)
	}

	fn record(&self, e: io::Error) -> i32 {
		if let Ok(mut slot) = self.error.lock() {
			slot.get_or_insert(e);
		}
		SQFS_ERROR_SQFS_ERROR_IO
	}
}

/// The object libsquashfs holds; `base` must come first so that a pointer
/// to it is a pointer to the whole.
#[repr(C)]
struct RustFile {
	base: sqfs_file_t,
	file: File,
	// Regular files can be truncated; a block device keeps its size and
	// only the logical size moves.
	regular: bool,
	state: Arc<FileState>,
}

/// Wraps `file` (written from offset 0) as an `sqfs_file_t`.
pub(crate) fn wrap(file: File) -> io::Result<(ManagedPointer<sqfs_file_t>, Arc<FileState>)> {
	let regular = file.metadata()?.file_type().is_file();
	if regular {
		file.set_len(0)?;
	}
	let state = Arc::new(FileState::default());
	let obj = Box::new(RustFile {
		base: sqfs_file_t {
			base: sqfs_object_t { destroy: Some(destroy), copy: None },
			read_at: Some(read_at),
			write_at: Some(write_at),
			get_size: Some(get_size),
			truncate: Some(truncate),
		},
		file,
		regular,
		state: Arc::clone(&state),
	});
	let ptr = Box::into_raw(obj) as *mut sqfs_file_t;
	Ok((ManagedPointer::new(ptr, crate::sfs_destroy), state))
}

/// # Safety
/// `f` is a pointer made by [`wrap`] and not yet destroyed.
unsafe fn this<'a>(f: *const sqfs_file_t) -> &'a RustFile {
	&*(f as *const RustFile)
}

unsafe extern "C" fn destroy(obj: *mut sqfs_object_t) {
	if !obj.is_null() {
		drop(Box::from_raw(obj as *mut RustFile));
	}
}

unsafe extern "C" fn read_at(f: *mut sqfs_file_t, offset: sqfs_u64, buf: *mut libc::c_void, size: usize) -> i32 {
	if size == 0 {
		// The buffer may be NULL then; a slice must not be made from it.
		return 0;
	}
	let me = this(f);
	if offset.saturating_add(size as u64) > me.state.size() {
		return SQFS_ERROR_SQFS_ERROR_OUT_OF_BOUNDS;
	}
	let out = std::slice::from_raw_parts_mut(buf as *mut u8, size);
	match me.file.read_exact_at(out, offset) {
		Ok(()) => 0,
		Err(e) => me.state.record(e),
	}
}

unsafe extern "C" fn write_at(f: *mut sqfs_file_t, offset: sqfs_u64, buf: *const libc::c_void, size: usize) -> i32 {
	if size == 0 {
		return 0;
	}
	let me = this(f);
	let data = std::slice::from_raw_parts(buf as *const u8, size);
	match me.file.write_all_at(data, offset) {
		Ok(()) => {
			me.state.size.fetch_max(offset + size as u64, Ordering::SeqCst);
			0
		}
		Err(e) => me.state.record(e),
	}
}

unsafe extern "C" fn get_size(f: *const sqfs_file_t) -> sqfs_u64 {
	this(f).state.size()
}

unsafe extern "C" fn truncate(f: *mut sqfs_file_t, size: sqfs_u64) -> i32 {
	let me = this(f);
	if me.regular {
		if let Err(e) = me.file.set_len(size) {
			return me.state.record(e);
		}
	}
	me.state.size.store(size, Ordering::SeqCst);
	0
}
