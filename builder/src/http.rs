//! Downloads with bounded retries. `http://`, `https://` (system trust
//! store) and `file://` URLs; every error names the URL.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Largest index file read into memory (Packages files are ≈ 50 MB unpacked).
const MEMORY_LIMIT: u64 = 512 << 20;

/// A failed download.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server answered with an error status (404 etc.).
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// Transport failure after all retries.
    #[error("{url}: {message} (after {attempts} attempts)")]
    Transport {
        /// The URL.
        url: String,
        /// The last error.
        message: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The body does not have the hash the signed index promises.
    #[error("{url}: sha256 mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        /// The URL.
        url: String,
        /// The hash from the signed index or lock file.
        expected: String,
        /// The hash of what arrived.
        actual: String,
    },
    /// The body does not have the size the signed index promises.
    #[error("{url}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The URL.
        url: String,
        /// The promised size.
        expected: u64,
        /// The received size.
        actual: u64,
    },
    /// Writing the downloaded file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The local file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// What a download must match.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// Lower-case hex sha256.
    pub sha256: &'a str,
    /// Size in bytes, when known.
    pub size: Option<u64>,
}

/// An HTTP client with retry policy.
#[derive(Debug, Clone)]
pub struct Fetcher {
    agent: ureq::Agent,
    attempts: u32,
}

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher::new(4)
    }
}

impl Fetcher {
    /// A client that tries each URL up to `attempts` times on transport
    /// errors and 5xx answers, with exponential backoff. 4xx fail at once.
    pub fn new(attempts: u32) -> Fetcher {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("vnfs-builder/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher {
            agent: ureq::Agent::new_with_config(config),
            attempts: attempts.max(1),
        }
    }

    /// Reads a whole (index) file into memory.
    pub fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let mut out = Vec::new();
        self.with_retries(url, |r| {
            out.clear();
            r.take(MEMORY_LIMIT).read_to_end(&mut out).map(|_| ())
        })?;
        Ok(out)
    }

    /// Streams `url` into `dest` (created or truncated), checking size and
    /// sha256; `progress` gets each chunk's length. On any failure `dest`
    /// is removed.
    pub fn download(
        &self,
        url: &str,
        dest: &Path,
        expect: Expect<'_>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), FetchError> {
        let io = |source| FetchError::Io {
            path: dest.to_path_buf(),
            source,
        };
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        let result = self.with_retries(url, |r| {
            let mut f = std::fs::File::create(dest)?;
            hasher = Sha256::new();
            written = 0;
            let mut buf = vec![0u8; 256 << 10];
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                f.write_all(&buf[..n])?;
                written += n as u64;
                progress(n as u64);
            }
            f.flush()
        });
        let check = || -> Result<(), FetchError> {
            result?;
            if let Some(size) = expect.size
                && size != written
            {
                return Err(FetchError::SizeMismatch {
                    url: url.to_string(),
                    expected: size,
                    actual: written,
                });
            }
            let actual = hex::encode(hasher.clone().finalize());
            if !actual.eq_ignore_ascii_case(expect.sha256) {
                return Err(FetchError::HashMismatch {
                    url: url.to_string(),
                    expected: expect.sha256.to_string(),
                    actual,
                });
            }
            Ok(())
        };
        match check() {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Err(rm) = std::fs::remove_file(dest)
                    && rm.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(io(rm));
                }
                Err(e)
            }
        }
    }

    fn with_retries(
        &self,
        url: &str,
        mut body: impl FnMut(&mut dyn Read) -> std::io::Result<()>,
    ) -> Result<(), FetchError> {
        if let Some(path) = url.strip_prefix("file://") {
            return match std::fs::File::open(path) {
                Ok(mut f) => body(&mut f).map_err(|e| FetchError::Transport {
                    url: url.to_string(),
                    message: e.to_string(),
                    attempts: 1,
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FetchError::Status {
                    url: url.to_string(),
                    status: 404,
                }),
                Err(e) => Err(FetchError::Transport {
                    url: url.to_string(),
                    message: e.to_string(),
                    attempts: 1,
                }),
            };
        }
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            if attempt > 1 {
                std::thread::sleep(Duration::from_millis(250 << (attempt - 2)));
                tracing::info!("retrying {url} (attempt {attempt})");
            }
            match self.agent.get(url).call() {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if (400..500).contains(&status) {
                        return Err(FetchError::Status {
                            url: url.to_string(),
                            status,
                        });
                    }
                    if status >= 500 {
                        last = format!("HTTP status {status}");
                        continue;
                    }
                    let mut reader = resp.into_body().into_reader();
                    match body(&mut reader) {
                        Ok(()) => return Ok(()),
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(FetchError::Transport {
            url: url.to_string(),
            message: last,
            attempts: self.attempts,
        })
    }
}
