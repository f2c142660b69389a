//! Downloads with bounded retries. `http://`, `https://` (system trust
//! store) and `file://` URLs; every error names the URL.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

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
    /// The build was interrupted ([`Fetcher::stopping_on`]).
    #[error("{url}: interrupted")]
    Interrupted {
        /// The URL being fetched.
        url: String,
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
    stop: Option<Arc<AtomicBool>>,
}

/// How often a caller waiting for a stoppable fetch looks at the flag.
const STOP_POLL: Duration = Duration::from_millis(50);

/// What a stoppable fetch's thread tells the caller.
enum Report<T> {
    Bytes(u64),
    Done(Result<T, FetchError>),
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
            agent: ureq::Agent::with_parts(
                config,
                DefaultConnector::new(),
                CachingResolver::new(DefaultResolver::default()),
            ),
            attempts: attempts.max(1),
            stop: None,
        }
    }

    /// This client, stopping with [`FetchError::Interrupted`] within a
    /// twentieth of a second once `stop` is set, even while a read waits
    /// on a server that has stopped answering (each fetch then runs on a
    /// thread of its own, which is left to end by itself: it gives up at
    /// its next read, removing its partial file, or ends with the process).
    pub fn stopping_on(mut self, stop: Arc<AtomicBool>) -> Fetcher {
        self.stop = Some(stop);
        self
    }

    fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }

    /// Runs `job` on a thread of its own while this one forwards its
    /// progress and watches the stop flag; without a flag, runs it here.
    fn stoppable<T: Send + 'static>(
        &self,
        url: &str,
        progress: &(dyn Fn(u64) + Sync),
        job: impl FnOnce(&Fetcher, &(dyn Fn(u64) + Sync)) -> Result<T, FetchError> + Send + 'static,
    ) -> Result<T, FetchError> {
        let Some(stop) = &self.stop else {
            return job(self, progress);
        };
        let interrupted = || FetchError::Interrupted {
            url: url.to_string(),
        };
        if stop.load(Ordering::Relaxed) {
            return Err(interrupted());
        }
        let (tx, rx) = channel();
        let fetcher = self.clone();
        std::thread::spawn(move || {
            let bytes = tx.clone();
            let forward = move |n| {
                let _ = bytes.send(Report::Bytes(n));
            };
            let _ = tx.send(Report::Done(job(&fetcher, &forward)));
        });
        loop {
            match rx.recv_timeout(STOP_POLL) {
                Ok(Report::Bytes(n)) => progress(n),
                Ok(Report::Done(r)) => return r,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(FetchError::Transport {
                        url: url.to_string(),
                        message: "the download thread ended without a result".into(),
                        attempts: 1,
                    });
                }
            }
            if stop.load(Ordering::Relaxed) {
                return Err(interrupted());
            }
        }
    }

    /// Reads a whole (index) file into memory.
    pub fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let owned = url.to_string();
        self.stoppable(url, &|_| {}, move |f, _| f.get_here(&owned))
    }

    fn get_here(&self, url: &str) -> Result<Vec<u8>, FetchError> {
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
        let (owned, dest) = (url.to_string(), dest.to_path_buf());
        let (sha256, size) = (expect.sha256.to_string(), expect.size);
        self.stoppable(url, progress, move |f, progress| {
            let expect = Expect {
                sha256: &sha256,
                size,
            };
            f.download_here(&owned, &dest, expect, progress)
        })
    }

    fn download_here(
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
            // Held while writing: a cleanup removes only unlocked parts.
            f.lock()?;
            hasher = Sha256::new();
            written = 0;
            let mut buf = vec![0u8; 256 << 10];
            loop {
                if self.stopped() {
                    return Err(std::io::Error::other("interrupted"));
                }
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
            if self.stopped() {
                return Err(FetchError::Interrupted {
                    url: url.to_string(),
                });
            }
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

/// How long a host's resolved addresses are reused.
const RESOLVE_TTL: Duration = Duration::from_secs(60);

/// Remembers each host's addresses for [`RESOLVE_TTL`]. ureq looks the
/// name up before every request, even one that goes out on a pooled
/// connection, and a cold build makes hundreds of requests: on a network
/// whose DNS server drops one of glibc's parallel A/AAAA queries every
/// lookup can wait 5 s for the retry, which made downloads on the
/// development machine take 30 s instead of 5.
#[derive(Debug)]
struct CachingResolver<R> {
    inner: R,
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl<R> CachingResolver<R> {
    fn new(inner: R) -> Self {
        CachingResolver {
            inner,
            cache: Mutex::default(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, ResolvedSocketAddrs)>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<R: Resolver> Resolver for CachingResolver<R> {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or(""),
            uri.authority().map_or("", |a| a.as_str())
        );
        // Held while resolving: parallel downloads starting together wait
        // for one lookup instead of each making its own.
        let mut cache = self.cache();
        if let Some((at, addrs)) = cache.get(&key)
            && at.elapsed() < RESOLVE_TTL
        {
            return Ok(addrs.clone());
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        cache.insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts lookups and answers with the loopback address.
    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    impl Resolver for Counting {
        fn resolve(
            &self,
            uri: &ureq::http::Uri,
            _: &ureq::config::Config,
            _: NextTimeout,
        ) -> Result<ResolvedSocketAddrs, ureq::Error> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let mut out = self.empty();
            out.push(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                uri.port_u16().unwrap_or(80),
            )));
            Ok(out)
        }
    }

    #[test]
    fn each_host_is_looked_up_once_however_many_requests() {
        let r = CachingResolver::new(Counting::default());
        let config = ureq::config::Config::default();
        let timeout = || NextTimeout {
            after: ureq::unversioned::transport::time::Duration::NotHappening,
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        let uri = |u: &str| u.parse::<ureq::http::Uri>().unwrap();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for p in ["a.deb", "b.deb", "dists/x/InRelease"] {
                        let got = r
                            .resolve(&uri(&format!("http://mirror.test/{p}")), &config, timeout())
                            .unwrap();
                        assert_eq!(got.len(), 1);
                    }
                });
            }
        });
        assert_eq!(r.inner.0.load(Ordering::SeqCst), 1);
        // Another host, or the same host on another port, is its own entry.
        let other = r
            .resolve(&uri("http://mirror.test:8080/a.deb"), &config, timeout())
            .unwrap();
        assert_eq!(other[0].port(), 8080);
        r.resolve(&uri("https://other.test/a.deb"), &config, timeout())
            .unwrap();
        assert_eq!(r.inner.0.load(Ordering::SeqCst), 3);
    }
}
