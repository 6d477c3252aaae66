//! ChaCha20-Poly1305 from the system's OpenSSL 3 (`libcrypto.so.3`), loaded at run time.
//!
//! ChaCha20-Poly1305 is what an ESP8266 picks, and sealing it is half of a download's CPU.
//! aws-lc has AVX2 code for it; OpenSSL 3 also has AVX-512 ChaCha20 and Poly1305, measured 1.8×
//! as fast on the benchmark machine (bench/README.md). Nearly every Linux system has it (nginx,
//! curl and Python use it), so it is looked for, never required: nothing links against it, and
//! without it, with another version, or with `OTAFORGE_NO_SYSTEM_CRYPTO` set, aws-lc seals. The
//! library is used only if it seals a test record byte for byte as aws-lc does.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

type Ctx = *mut c_void;
type Cipher = *const c_void;

/// `EVP_CTRL_AEAD_GET_TAG`.
const GET_TAG: c_int = 0x10;

/// The functions used, resolved once.
pub(super) struct Api {
    /// Kept loaded for as long as the function pointers live (the process).
    _lib: libloading::Library,
    ctx_new: unsafe extern "C" fn() -> Ctx,
    ctx_free: unsafe extern "C" fn(Ctx),
    init: unsafe extern "C" fn(Ctx, Cipher, *mut c_void, *const u8, *const u8) -> c_int,
    update: unsafe extern "C" fn(Ctx, *mut u8, *mut c_int, *const u8, c_int) -> c_int,
    finish: unsafe extern "C" fn(Ctx, *mut u8, *mut c_int) -> c_int,
    ctrl: unsafe extern "C" fn(Ctx, c_int, c_int, *mut c_void) -> c_int,
    cipher: Cipher,
    /// What was loaded, for the log.
    pub(super) version: String,
}

// SAFETY: `cipher` points to a static, immutable `EVP_CIPHER` of the library; the functions are
// thread-safe in OpenSSL 3 as long as one context is not used by two threads at once, which
// `Chacha` (one per connection, `&mut self`) ensures.
unsafe impl Send for Api {}
unsafe impl Sync for Api {}

/// The system's ChaCha20-Poly1305, if it is there and passed the test; looked for once.
pub(super) fn api() -> Option<&'static Api> {
    static API: OnceLock<Option<Api>> = OnceLock::new();
    API.get_or_init(|| {
        if std::env::var_os("OTAFORGE_NO_SYSTEM_CRYPTO").is_some() {
            return None;
        }
        match load() {
            Ok(api) => {
                log::info!("ChaCha20-Poly1305 records are sealed by the system's {}", api.version);
                Some(api)
            }
            Err(why) => {
                log::info!("ChaCha20-Poly1305 records are sealed by aws-lc ({why})");
                None
            }
        }
    })
    .as_ref()
}

#[cfg(target_os = "linux")]
fn load() -> Result<Api, String> {
    // SAFETY: loading libcrypto runs its initialisers, which have no preconditions; every symbol
    // is given the type of its OpenSSL 3 declaration (evp.h, crypto.h).
    unsafe {
        let lib =
            libloading::Library::new("libcrypto.so.3").map_err(|e| format!("no libcrypto.so.3: {e}"))?;
        let version_num: unsafe extern "C" fn() -> std::ffi::c_ulong = *sym(&lib, b"OpenSSL_version_num\0")?;
        let version_text: unsafe extern "C" fn(c_int) -> *const std::ffi::c_char =
            *sym(&lib, b"OpenSSL_version\0")?;
        let num = version_num();
        if num < 0x3000_0000 {
            return Err(format!("libcrypto.so.3 reports version {num:#x}"));
        }
        let chacha: unsafe extern "C" fn() -> Cipher = *sym(&lib, b"EVP_chacha20_poly1305\0")?;
        let api = Api {
            ctx_new: *sym(&lib, b"EVP_CIPHER_CTX_new\0")?,
            ctx_free: *sym(&lib, b"EVP_CIPHER_CTX_free\0")?,
            init: *sym(&lib, b"EVP_EncryptInit_ex\0")?,
            update: *sym(&lib, b"EVP_EncryptUpdate\0")?,
            finish: *sym(&lib, b"EVP_EncryptFinal_ex\0")?,
            ctrl: *sym(&lib, b"EVP_CIPHER_CTX_ctrl\0")?,
            cipher: chacha(),
            version: std::ffi::CStr::from_ptr(version_text(0)).to_string_lossy().into_owned(),
            _lib: lib,
        };
        if api.cipher.is_null() {
            return Err("libcrypto.so.3 has no ChaCha20-Poly1305".into());
        }
        self_test(&api)?;
        Ok(api)
    }
}

#[cfg(not(target_os = "linux"))]
fn load() -> Result<Api, String> {
    Err("looked for on Linux only".into())
}

#[cfg(target_os = "linux")]
unsafe fn sym<'l, T>(lib: &'l libloading::Library, name: &[u8]) -> Result<libloading::Symbol<'l, T>, String> {
    // SAFETY: the caller gives `T` the symbol's declared type.
    unsafe { lib.get(name) }
        .map_err(|e| format!("libcrypto.so.3 lacks {}: {e}", String::from_utf8_lossy(name)))
}

/// Seals a record with both libraries, with and without extra plaintext (TLS 1.3's inner type),
/// and refuses the library unless every byte agrees.
fn self_test(api: &Api) -> Result<(), String> {
    let key = [0x5au8; 32];
    let nonce = [0xa5u8; 12];
    let aad = [1u8, 2, 3, 4, 5, 6, 7, 8, 23, 3, 3, 0, 77];
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
    let reference =
        LessSafeKey::new(UnboundKey::new(&aead::CHACHA20_POLY1305, &key).map_err(|_| "aws-lc key")?);
    let mut ours = Chacha::new(api, &key).ok_or("no cipher context")?;
    for extra in [&[][..], &[23u8][..]] {
        let (mut a, mut a_tail) = (vec![0u8; data.len()], vec![0u8; extra.len() + 16]);
        let (mut b, mut b_tail) = (a.clone(), a_tail.clone());
        reference
            .seal_out_of_place_scatter(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &data,
                &mut a,
                extra,
                &mut a_tail,
            )
            .map_err(|_| "aws-lc sealing failed")?;
        ours.seal(&nonce, &aad, &data, &mut b, extra, &mut b_tail).map_err(|_| "sealing failed")?;
        if (a, a_tail) != (b, b_tail) {
            return Err("its ChaCha20-Poly1305 disagrees with aws-lc's".into());
        }
    }
    Ok(())
}

/// One connection's ChaCha20-Poly1305 sealing key in libcrypto.
pub(super) struct Chacha<'a> {
    api: &'a Api,
    ctx: Ctx,
}

// SAFETY: the context is owned by this value alone and only used through `&mut self`.
unsafe impl Send for Chacha<'_> {}

impl<'a> Chacha<'a> {
    pub(super) fn new(api: &'a Api, key: &[u8; 32]) -> Option<Chacha<'a>> {
        // SAFETY: a new context, set up with the static cipher and a 32-byte key (the nonce comes
        // per record); freed in `drop` only.
        unsafe {
            let ctx = (api.ctx_new)();
            if ctx.is_null() {
                return None;
            }
            let c = Chacha { api, ctx };
            ((api.init)(ctx, api.cipher, std::ptr::null_mut(), key.as_ptr(), std::ptr::null()) == 1)
                .then_some(c)
        }
    }

    /// Seals `data` into `out` (its length) and `extra` plus the tag into `extra_and_tag`, as
    /// aws-lc's `seal_out_of_place_scatter` does.
    pub(super) fn seal(
        &mut self,
        nonce: &[u8; 12],
        aad: &[u8],
        data: &[u8],
        out: &mut [u8],
        extra: &[u8],
        extra_and_tag: &mut [u8],
    ) -> Result<(), ()> {
        if out.len() != data.len() || extra_and_tag.len() != extra.len() + 16 {
            return Err(());
        }
        let len = |n: usize| c_int::try_from(n).map_err(|_| ());
        let (data_len, aad_len, extra_len) = (len(data.len())?, len(aad.len())?, len(extra.len())?);
        let api = self.api;
        let mut n: c_int = 0;
        // SAFETY: every pointer is valid for the length passed with it (`out` is as long as
        // `data`, `extra_and_tag` as `extra` plus the 16-byte tag, checked above); ChaCha20 is a
        // stream cipher, so each update writes exactly as many bytes as it is given and the
        // final one none.
        let ok = unsafe {
            (api.init)(self.ctx, std::ptr::null(), std::ptr::null_mut(), std::ptr::null(), nonce.as_ptr())
                == 1
                && (api.update)(self.ctx, std::ptr::null_mut(), &mut n, aad.as_ptr(), aad_len) == 1
                && (data.is_empty()
                    || (api.update)(self.ctx, out.as_mut_ptr(), &mut n, data.as_ptr(), data_len) == 1)
                && (extra.is_empty()
                    || (api.update)(self.ctx, extra_and_tag.as_mut_ptr(), &mut n, extra.as_ptr(), extra_len)
                        == 1)
                && (api.finish)(self.ctx, extra_and_tag[extra.len()..].as_mut_ptr(), &mut n) == 1
                && n == 0
                && (api.ctrl)(self.ctx, GET_TAG, 16, extra_and_tag[extra.len()..].as_mut_ptr().cast()) == 1
        };
        if ok { Ok(()) } else { Err(()) }
    }
}

impl Drop for Chacha<'_> {
    fn drop(&mut self) {
        // SAFETY: made by `ctx_new` in `new`, freed once.
        unsafe { (self.api.ctx_free)(self.ctx) }
    }
}
