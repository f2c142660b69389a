//! The HTTP side of the agent: one keep-alive connection pool (a ureq
//! `Agent`) shared by every fetch thread, retries with exponential backoff
//! while the master is unreachable or restarting, and byte counters for
//! what crossed the wire.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vnfs_store::{ObjectId, ObjectKind, StoredObject};

use crate::delta::{self, DELTA_HEADER, DeltaHeader, DeltaStatus, Group};
use crate::error::{AgentError, Result};
use crate::proto::{self, CheckinReply, CheckinRequest, FRAME_HEADER, FrameHeader, Refusal};

/// How long and how often to retry a request the master did not answer.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Give up after this long without success.
    pub give_up_after: Duration,
    /// First pause.
    pub first: Duration,
    /// Longest pause.
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            give_up_after: Duration::from_secs(300),
            first: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

/// Bytes and requests that crossed the wire.
#[derive(Debug, Default)]
pub struct Counters {
    /// Response bytes received (bodies plus status line and headers).
    pub received: AtomicU64,
    /// Request bytes sent (bodies plus request line and headers, estimated
    /// from what the agent set).
    pub sent: AtomicU64,
    /// Requests made (retries included).
    pub requests: AtomicU64,
    /// Objects received and verified.
    pub objects: AtomicU64,
    /// Requests that failed and were retried.
    pub retries: AtomicU64,
}

impl Counters {
    /// Bytes in both directions.
    pub fn wire_bytes(&self) -> u64 {
        self.received.load(Ordering::Relaxed) + self.sent.load(Ordering::Relaxed)
    }
}

/// A connection to the master.
pub struct Master {
    base: String,
    agent: ureq::Agent,
    retry: Retry,
    /// What crossed the wire.
    pub counters: Counters,
}

/// Whether a failure is worth retrying.
enum Failure {
    Retry(String),
    Fatal(AgentError),
}

impl Master {
    /// A client for the master at `base` (`http://10.0.0.1:9873`).
    pub fn new(base: &str, retry: Retry) -> Master {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_per_read(Some(Duration::from_secs(30)))
            .max_idle_connections_per_host(64)
            .user_agent(concat!("vnfs-node/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Master {
            base: base.trim_end_matches('/').to_string(),
            agent,
            retry,
            counters: Counters::default(),
        }
    }

    /// The master's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Runs `attempt` until it succeeds, fails fatally, or the retry time
    /// is used up; pauses double from `first` to `max`.
    fn with_retry<T>(
        &self,
        url: &str,
        mut attempt: impl FnMut() -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        let start = Instant::now();
        let mut pause = self.retry.first;
        loop {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            match attempt() {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(reason)) => {
                    if start.elapsed() + pause > self.retry.give_up_after {
                        return Err(AgentError::Http {
                            url: url.to_string(),
                            reason: format!(
                                "{reason} (gave up after {:.1} s of retries)",
                                start.elapsed().as_secs_f64()
                            ),
                        });
                    }
                    tracing::warn!("{url}: {reason}; retrying in {pause:?}");
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(self.retry.max);
                }
            }
        }
    }

    fn count_response(&self, r: &ureq::http::Response<ureq::Body>) {
        let head: usize = r
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>()
            + 17;
        self.counters
            .received
            .fetch_add(head as u64, Ordering::Relaxed);
    }

    fn count_request(&self, url: &str, body: usize) {
        // Request line, Host, User-Agent, Accept, Content-Length/-Type:
        // what ureq writes for our requests, give or take a few bytes.
        let head = url.len() + 120;
        self.counters
            .sent
            .fetch_add((head + body) as u64, Ordering::Relaxed);
    }

    /// Checks in; a 403 becomes [`AgentError::Refused`].
    pub fn checkin(&self, req: &CheckinRequest) -> Result<CheckinReply> {
        let url = format!("{}/v1/checkin", self.base);
        let body = serde_json::to_vec(req).map_err(|e| AgentError::Invalid(e.to_string()))?;
        let (status, text) = self.post(&url, "application/json", &body)?;
        match status {
            200 => serde_json::from_slice(&text).map_err(|e| AgentError::Protocol {
                url,
                reason: e.to_string(),
            }),
            _ => {
                let r: Refusal = serde_json::from_slice(&text).unwrap_or(Refusal {
                    reason: format!("http-{status}"),
                    error: String::from_utf8_lossy(&text).into_owned(),
                });
                Err(AgentError::Refused {
                    mac: req.mac.clone(),
                    reason: r.reason,
                    error: r.error,
                })
            }
        }
    }

    /// POSTs a body; retries transport failures and 5xx; returns the status
    /// and body of anything else.
    pub fn post(&self, url: &str, ctype: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        self.with_retry(url, || {
            self.count_request(url, body.len());
            let mut r = self
                .agent
                .post(url)
                .header("content-type", ctype)
                .send(body)
                .map_err(|e| Failure::Retry(e.to_string()))?;
            self.count_response(&r);
            let status = r.status().as_u16();
            if status >= 500 {
                return Err(Failure::Retry(format!("HTTP {status}")));
            }
            let data = r
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_vec()
                .map_err(|e| Failure::Retry(e.to_string()))?;
            self.counters
                .received
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            Ok((status, data))
        })
    }

    /// Fetches and verifies one object.
    pub fn object(&self, kind: ObjectKind, id: &ObjectId) -> Result<(StoredObject, Vec<u8>)> {
        let url = format!(
            "{}/v1/object/{}/{}",
            self.base,
            proto::kind_segment(kind),
            id.to_hex()
        );
        let got = self.with_retry(&url, || {
            self.count_request(&url, 0);
            let mut r = self
                .agent
                .get(&url)
                .call()
                .map_err(|e| Failure::Retry(e.to_string()))?;
            self.count_response(&r);
            let status = r.status().as_u16();
            if status == 404 {
                return Err(Failure::Fatal(AgentError::Missing {
                    kind,
                    id: *id,
                    url: url.clone(),
                }));
            }
            if status != 200 {
                return Err(Failure::Retry(format!("HTTP {status}")));
            }
            let header = |name: &str| {
                r.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let compression = header(proto::HDR_COMPRESSION)
                .as_deref()
                .and_then(proto::parse_compression);
            let raw_len = header(proto::HDR_RAW_LENGTH).and_then(|v| v.parse::<u32>().ok());
            let (Some(compression), Some(raw_len)) = (compression, raw_len) else {
                return Err(Failure::Fatal(AgentError::Protocol {
                    url: url.clone(),
                    reason: "missing compression or length header".into(),
                }));
            };
            let data = r
                .body_mut()
                .with_config()
                .limit(u64::from(vnfs_store::pack::MAX_OBJECT))
                .read_to_vec()
                .map_err(|e| Failure::Retry(e.to_string()))?;
            self.counters
                .received
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            Ok(StoredObject {
                kind,
                id: *id,
                compression,
                raw_len,
                data,
            })
        })?;
        let raw = verify(&got, &url)?;
        self.counters.objects.fetch_add(1, Ordering::Relaxed);
        Ok((got, raw))
    }

    /// Fetches many objects in one streamed response per request; `sink`
    /// gets each verified object with its raw bytes. A connection that
    /// breaks mid-stream is retried for the objects not yet received only.
    pub fn batch(
        &self,
        kind: ObjectKind,
        ids: &[ObjectId],
        sink: &mut dyn FnMut(StoredObject, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let url = format!("{}/v1/objects/{}", self.base, proto::kind_segment(kind));
        let mut rest: Vec<ObjectId> = ids.to_vec();
        let start = Instant::now();
        let mut pause = self.retry.first;
        while !rest.is_empty() {
            let n = rest.len().min(proto::MAX_BATCH);
            let body: Vec<u8> = rest[..n].iter().flat_map(|id| id.0).collect();
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let mut done = 0usize;
            let outcome = self.batch_once(&url, kind, &rest[..n], &body, &mut done, sink);
            rest.drain(..done);
            match outcome {
                Ok(()) => {
                    pause = self.retry.first;
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(reason)) => {
                    if done > 0 {
                        // Progress was made: the master is alive, start over.
                        pause = self.retry.first;
                        continue;
                    }
                    if start.elapsed() + pause > self.retry.give_up_after {
                        return Err(AgentError::Http {
                            url,
                            reason: format!("{reason} (gave up after retrying)"),
                        });
                    }
                    tracing::warn!("{url}: {reason}; retrying in {pause:?}");
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(self.retry.max);
                }
            }
        }
        Ok(())
    }

    fn batch_once(
        &self,
        url: &str,
        kind: ObjectKind,
        ids: &[ObjectId],
        body: &[u8],
        done: &mut usize,
        sink: &mut dyn FnMut(StoredObject, Vec<u8>) -> Result<()>,
    ) -> std::result::Result<(), Failure> {
        self.count_request(url, body.len());
        let r = self
            .agent
            .post(url)
            .header("content-type", "application/octet-stream")
            .send(body)
            .map_err(|e| Failure::Retry(e.to_string()))?;
        self.count_response(&r);
        let status = r.status().as_u16();
        if status != 200 {
            return Err(Failure::Retry(format!("HTTP {status}")));
        }
        let mut rd = r.into_body().into_reader();
        for want in ids {
            let mut h = [0u8; FRAME_HEADER];
            rd.read_exact(&mut h)
                .map_err(|e| Failure::Retry(format!("reply cut short: {e}")))?;
            let fh = FrameHeader::decode(&h).ok_or_else(|| {
                Failure::Fatal(AgentError::Protocol {
                    url: url.to_string(),
                    reason: "bad frame header".into(),
                })
            })?;
            if fh.id != *want {
                return Err(Failure::Fatal(AgentError::Protocol {
                    url: url.to_string(),
                    reason: format!("expected {kind} {want}, got {}", fh.id),
                }));
            }
            if !fh.present {
                return Err(Failure::Fatal(AgentError::Missing {
                    kind,
                    id: *want,
                    url: url.to_string(),
                }));
            }
            if fh.stored_len > vnfs_store::pack::MAX_OBJECT {
                return Err(Failure::Fatal(AgentError::Protocol {
                    url: url.to_string(),
                    reason: format!("{kind} {want} declares {} bytes", fh.stored_len),
                }));
            }
            let mut data = vec![0u8; fh.stored_len as usize];
            rd.read_exact(&mut data)
                .map_err(|e| Failure::Retry(format!("reply cut short: {e}")))?;
            self.counters
                .received
                .fetch_add((FRAME_HEADER + data.len()) as u64, Ordering::Relaxed);
            let obj = StoredObject {
                kind,
                id: *want,
                compression: fh.compression,
                raw_len: fh.raw_len,
                data,
            };
            let raw = verify(&obj, url).map_err(Failure::Fatal)?;
            self.counters.objects.fetch_add(1, Ordering::Relaxed);
            sink(obj, raw).map_err(Failure::Fatal)?;
            *done += 1;
        }
        Ok(())
    }
}

/// One group's answer to a delta request.
#[derive(Debug)]
pub enum DeltaReply {
    /// A zstd frame of the targets, made with the bases as prefix
    /// (`with_prefix`) or without one; `lengths` are the targets' raw
    /// lengths. Not yet verified.
    Frame {
        /// Whether the bases are the frame's reference prefix.
        with_prefix: bool,
        /// Raw length of each target, in order.
        lengths: Vec<u32>,
        /// The zstd frame.
        data: Vec<u8>,
    },
    /// The master cannot supply this target.
    Missing(ObjectId),
}

impl Master {
    /// Asks for `groups` by delta transfer (`POST /v1/delta/{kind}`); `sink`
    /// gets each group's index and reply, in order. Returns false, having
    /// called `sink` for nothing, when the master does not offer delta
    /// transfer (an older daemon). A connection that breaks mid-stream is
    /// retried for the groups not yet received only.
    pub fn delta(
        &self,
        kind: ObjectKind,
        groups: &[Group],
        sink: &mut dyn FnMut(usize, DeltaReply) -> Result<()>,
    ) -> Result<bool> {
        let url = format!("{}/v1/delta/{}", self.base, proto::kind_segment(kind));
        let mut next = 0usize;
        let start = Instant::now();
        let mut pause = self.retry.first;
        while next < groups.len() {
            let body = delta::encode_request(&groups[next..]);
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let before = next;
            let outcome = self.delta_once(&url, &groups[next..], &body, &mut next, sink);
            match outcome {
                Ok(true) => pause = self.retry.first,
                Ok(false) => return Ok(false),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(reason)) => {
                    if next > before {
                        pause = self.retry.first;
                        continue;
                    }
                    if start.elapsed() + pause > self.retry.give_up_after {
                        return Err(AgentError::Http {
                            url,
                            reason: format!("{reason} (gave up after retrying)"),
                        });
                    }
                    tracing::warn!("{url}: {reason}; retrying in {pause:?}");
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(self.retry.max);
                }
            }
        }
        Ok(true)
    }

    /// One delta request; `next` counts the groups handed to `sink` (it is
    /// an index into the caller's whole list). Ok(false): not offered.
    fn delta_once(
        &self,
        url: &str,
        groups: &[Group],
        body: &[u8],
        next: &mut usize,
        sink: &mut dyn FnMut(usize, DeltaReply) -> Result<()>,
    ) -> std::result::Result<bool, Failure> {
        self.count_request(url, body.len());
        let r = self
            .agent
            .post(url)
            .header("content-type", "application/octet-stream")
            .send(body)
            .map_err(|e| Failure::Retry(e.to_string()))?;
        self.count_response(&r);
        match r.status().as_u16() {
            200 => {}
            404 | 405 => return Ok(false),
            s => return Err(Failure::Retry(format!("HTTP {s}"))),
        }
        let protocol = |reason: String| {
            Failure::Fatal(AgentError::Protocol {
                url: url.to_string(),
                reason,
            })
        };
        let cut = |e: std::io::Error| Failure::Retry(format!("reply cut short: {e}"));
        let mut rd = r.into_body().into_reader();
        for g in groups {
            let mut h = [0u8; DELTA_HEADER];
            rd.read_exact(&mut h).map_err(cut)?;
            let dh =
                DeltaHeader::decode(&h).ok_or_else(|| protocol("bad delta frame header".into()))?;
            if dh.stored_len > vnfs_store::pack::MAX_OBJECT
                || (dh.status != DeltaStatus::Missing && dh.count as usize != g.targets.len())
            {
                return Err(protocol(format!(
                    "delta frame for {} targets declares {} lengths and {} bytes",
                    g.targets.len(),
                    dh.count,
                    dh.stored_len
                )));
            }
            let mut lengths = vec![0u8; 4 * dh.count as usize];
            rd.read_exact(&mut lengths).map_err(cut)?;
            let mut data = vec![0u8; dh.stored_len as usize];
            rd.read_exact(&mut data).map_err(cut)?;
            self.counters.received.fetch_add(
                (DELTA_HEADER + lengths.len() + data.len()) as u64,
                Ordering::Relaxed,
            );
            let reply = match dh.status {
                DeltaStatus::Missing => {
                    let id = <[u8; 32]>::try_from(&data[..])
                        .map_err(|_| protocol("missing-object frame without an id".into()))?;
                    DeltaReply::Missing(ObjectId(id))
                }
                s => DeltaReply::Frame {
                    with_prefix: s == DeltaStatus::Delta,
                    lengths: lengths
                        .chunks_exact(4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                    data,
                },
            };
            sink(*next, reply).map_err(Failure::Fatal)?;
            *next += 1;
        }
        Ok(true)
    }
}

/// Decompresses and checks an object against its id.
fn verify(obj: &StoredObject, url: &str) -> Result<Vec<u8>> {
    obj.decode(std::path::Path::new(url)).map_err(|e| {
        let why = match e {
            vnfs_store::StoreError::Corrupt { why, .. } => why,
            other => other.to_string(),
        };
        AgentError::Corrupt {
            kind: obj.kind,
            id: obj.id,
            url: url.to_string(),
            why,
        }
    })
}
