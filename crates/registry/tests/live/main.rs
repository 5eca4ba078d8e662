//! The client against a real registry (Debian's docker-registry, distribution 2.8), directly
//! and through a proxy that injects faults: dropped connections, 500s and 429s, truncated and
//! corrupted bodies, a bearer-token auth layer, HTML answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy;
mod registry;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxkit_registry::{
    BlobUpload, Client, ClientOptions, Credentials, Error, FixedCredentials, Pushed, RetryPolicy,
    Secret,
};
use oxkit_spec::{Digest, Reference};
use oxkit_store::oci::{self, Descriptor, ImageManifest, media_type as mt};
use proxy::{Action, Proxy, Req};
use registry::Registry;

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(200),
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        retry: fast_retry(),
        request_timeout: Duration::from_secs(30),
        ..ClientOptions::default()
    }
}

fn client() -> Client {
    Client::new(options())
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

/// Deterministic pseudo-random bytes, incompressible enough for transfer tests.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = oxkit_testkit::Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Pushes a one-config, n-layer OCI image; returns the manifest's bytes and digest.
fn push_image(c: &Client, target: &Reference, layers: &[Vec<u8>]) -> (Vec<u8>, Digest) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let mut uploads = vec![BlobUpload::from_bytes(config.clone())];
    uploads.extend(layers.iter().map(|l| BlobUpload::from_bytes(l.clone())));
    c.push_blobs(target, &uploads).unwrap();
    let m = ImageManifest::new(
        Descriptor::new(mt::OCI_CONFIG, Digest::sha256(&config), config.len() as u64),
        layers
            .iter()
            .map(|l| Descriptor::new(mt::OCI_LAYER_GZIP, Digest::sha256(l), l.len() as u64))
            .collect(),
    );
    let bytes = oci::to_canonical_json(&m).unwrap();
    let d = c.put_manifest(target, mt::OCI_MANIFEST, &bytes).unwrap();
    assert_eq!(d, Digest::sha256(&bytes));
    (bytes, d)
}

fn pull_to_vec(
    c: &Client,
    repo: &Reference,
    d: &Digest,
    size: Option<u64>,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    c.pull_blob(repo, d, size, &mut out)?;
    Ok(out)
}

#[test]
fn round_trip_over_plain_http() {
    let reg = Registry::start();
    let c = client();
    let target = r(&format!("{}/me/app:v1", reg.host()));
    let layer = noise(300_000, 1);
    let (bytes, digest) = push_image(&c, &target, std::slice::from_ref(&layer));

    let m = c.get_manifest(&target).unwrap();
    assert_eq!(m.bytes, bytes, "manifests are stored byte-exact");
    assert_eq!(m.digest, digest);
    assert_eq!(m.media_type, mt::OCI_MANIFEST);
    let by_digest = c.get_manifest(&target.with_digest(digest.clone())).unwrap();
    assert_eq!(by_digest.bytes, bytes);

    let head = c.head_manifest(&target).unwrap().unwrap();
    assert_eq!(
        (head.digest.clone(), head.size),
        (digest.clone(), bytes.len() as u64)
    );
    assert_eq!(
        c.head_manifest(&target.with_tag("nope").unwrap()).unwrap(),
        None
    );

    let got = pull_to_vec(
        &c,
        &target,
        &Digest::sha256(&layer),
        Some(layer.len() as u64),
    )
    .unwrap();
    assert_eq!(got, layer);
    assert_eq!(
        c.blob_exists(&target, &Digest::sha256(&layer)).unwrap(),
        Some(layer.len() as u64)
    );
    assert_eq!(
        c.blob_exists(&target, &Digest::sha256(b"absent")).unwrap(),
        None
    );

    // Pushing again transfers nothing.
    let again = c
        .push_blobs(&target, &[BlobUpload::from_bytes(layer.clone())])
        .unwrap();
    assert_eq!(again, [Pushed::AlreadyThere]);
    // Without the existence check it is sent anyway (small blobs that are almost always new),
    // and the registry accepts it again.
    let unchecked = c
        .push_blobs(
            &target,
            &[BlobUpload::from_bytes(layer.clone()).without_check()],
        )
        .unwrap();
    assert_eq!(unchecked, [Pushed::Transferred]);
    assert_eq!(
        pull_to_vec(&c, &target, &Digest::sha256(&layer), None).unwrap(),
        layer
    );

    c.put_manifest(&target.with_tag("v2").unwrap(), mt::OCI_MANIFEST, &bytes)
        .unwrap();
    let mut tags = c.list_tags(&target).unwrap();
    tags.sort();
    assert_eq!(tags, ["v1", "v2"]);

    c.delete_manifest(&target.without_tag().with_digest(digest.clone()))
        .unwrap();
    let e = c.get_manifest(&target).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let s = e.to_string();
    assert!(
        s.contains("MANIFEST_UNKNOWN")
            && s.contains("404")
            && s.contains("/v2/me/app/manifests/v1"),
        "{s}"
    );
}

#[test]
fn large_blob_goes_up_in_chunks_and_comes_back_verified() {
    let reg = Registry::start();
    let counter = Arc::new(AtomicUsize::new(0));
    let seen = counter.clone();
    let p = Proxy::start(reg.addr(), move |req: &Req| {
        if req.method == "PATCH" {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        Action::Forward
    });
    let c = Client::new(ClientOptions {
        chunk_size: 8 << 20,
        ..options()
    });
    let target = r(&format!("{}/big/blob:1", p.host()));
    let big = noise(64 << 20, 7);
    let d = Digest::sha256(&big);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    std::fs::write(&path, &big).unwrap();
    let up = BlobUpload {
        digest: d.clone(),
        size: big.len() as u64,
        source: oxkit_registry::BlobSource::File(path),
        mount_from: Vec::new(),
        check_exists: true,
    };
    assert_eq!(c.push_blob(&target, &up).unwrap(), Pushed::Transferred);
    assert_eq!(
        counter.load(Ordering::SeqCst),
        8,
        "64 MiB in chunks of 8 MiB"
    );
    let got = pull_to_vec(&c, &target, &d, Some(big.len() as u64)).unwrap();
    assert!(got == big, "pulled bytes differ");
}

#[test]
fn an_interrupted_chunked_upload_resumes_where_the_registry_is() {
    let reg = Registry::start();
    let patches = Arc::new(AtomicUsize::new(0));
    let seen = patches.clone();
    // The third chunk never reaches the registry: its connection drops; the fourth chunk's
    // first try gets a 503 from the proxy.
    let p = Proxy::start(reg.addr(), move |req: &Req| {
        if req.method == "PATCH" {
            match seen.fetch_add(1, Ordering::SeqCst) {
                2 => return Action::Drop,
                4 => return Action::status(503),
                _ => {}
            }
        }
        Action::Forward
    });
    let c = Client::new(ClientOptions {
        chunk_size: 1 << 20,
        ..options()
    });
    let target = r(&format!("{}/resume/me:1", p.host()));
    let data = noise(5 << 20, 3);
    let up = BlobUpload::from_bytes(data.clone());
    assert_eq!(c.push_blob(&target, &up).unwrap(), Pushed::Transferred);
    let log = p.log();
    let posts = log.iter().filter(|e| e.method == "POST").count();
    let status_checks = log
        .iter()
        .filter(|e| e.method == "GET" && e.target.contains("/blobs/uploads/"))
        .count();
    let patches_sent = log.iter().filter(|e| e.method == "PATCH").count();
    assert_eq!(posts, 1, "resumed, not restarted: {log:#?}");
    assert_eq!(
        status_checks, 2,
        "asked the registry for its range after each failure: {log:#?}"
    );
    assert_eq!(
        patches_sent,
        5 + 2,
        "five chunks plus the two failed tries: {log:#?}"
    );
    assert_eq!(pull_to_vec(&c, &target, &up.digest, None).unwrap(), data);
}

#[test]
fn a_chunk_cut_off_inside_the_registry_restarts_the_upload() {
    let reg = Registry::start();
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    // Half of the second chunk reaches the registry: distribution then refuses the old
    // upload state, so the client must start over, and still succeed.
    let p = Proxy::start(reg.addr(), move |req: &Req| {
        if req.method == "PATCH" && seen.fetch_add(1, Ordering::SeqCst) == 1 {
            return Action::ForwardPartial(req.body_len / 2);
        }
        Action::Forward
    });
    let c = Client::new(ClientOptions {
        chunk_size: 1 << 20,
        ..options()
    });
    let target = r(&format!("{}/restart/me:1", p.host()));
    let data = noise(3 << 20, 5);
    let up = BlobUpload::from_bytes(data.clone());
    assert_eq!(c.push_blob(&target, &up).unwrap(), Pushed::Transferred);
    assert_eq!(p.count(|e| e.method == "POST"), 2, "{:#?}", p.log());
    assert_eq!(pull_to_vec(&c, &target, &up.digest, None).unwrap(), data);
}

#[test]
fn transient_faults_are_retried() {
    let reg = Registry::start();
    // Every third request fails, cycling through the faults. A lost answer to a chunk would
    // kill distribution's upload session for good (see the restart test), so chunks are
    // dropped before reaching the registry instead.
    //
    // A request is failed once at most: its retry goes through. (A fixed cycle can line up
    // with one of the parallel uploads' requests and fail every attempt of it.) Until an answer
    // has been lost, a loss that fell on a chunk is owed to the next request that is not one,
    // so that every kind of fault is injected whatever order those requests come in.
    let seen = AtomicUsize::new(0);
    let blob_gets = AtomicUsize::new(0);
    let failed_once = Mutex::new(HashSet::new());
    let lost_one = AtomicBool::new(false);
    let lose_owed = AtomicBool::new(false);
    let p = Proxy::start(reg.addr(), move |req: &Req| {
        if req.is_blob_get() {
            // Every other download is cut short.
            return if blob_gets.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                Action::Truncate(1000)
            } else {
                Action::Forward
            };
        }
        let key = format!("{} {}", req.method, req.target);
        if failed_once.lock().unwrap().contains(&key) {
            return Action::Forward;
        }
        let fault = if req.method != "PATCH" && lose_owed.swap(false, Ordering::SeqCst) {
            lost_one.store(true, Ordering::SeqCst);
            Action::LoseResponse
        } else {
            let i = seen.fetch_add(1, Ordering::SeqCst);
            if i % 3 != 2 {
                return Action::Forward;
            }
            match (i / 3) % 4 {
                0 => Action::status(500),
                1 => Action::Respond {
                    status: 429,
                    headers: vec![("Retry-After".into(), "0".into())],
                    body: Vec::new(),
                },
                2 => Action::Drop,
                _ if req.method == "PATCH" => {
                    if !lost_one.load(Ordering::SeqCst) {
                        lose_owed.store(true, Ordering::SeqCst);
                    }
                    Action::Drop
                }
                _ => {
                    lost_one.store(true, Ordering::SeqCst);
                    Action::LoseResponse
                }
            }
        };
        failed_once.lock().unwrap().insert(key);
        fault
    });
    let c = Client::new(ClientOptions {
        chunk_size: 256 << 10,
        ..options()
    });
    let target = r(&format!("{}/flaky/app:1", p.host()));
    let layers = [noise(1 << 20, 11), noise(100_000, 12), noise(3000, 13)];
    let (bytes, digest) = push_image(&c, &target, &layers);
    let m = c.get_manifest(&target).unwrap();
    assert_eq!((m.bytes, m.digest), (bytes, digest));
    for l in &layers {
        assert_eq!(
            &pull_to_vec(&c, &target, &Digest::sha256(l), Some(l.len() as u64)).unwrap(),
            l
        );
    }
    let log = p.log();
    for kind in ["Respond", "Drop", "Truncate", "LoseResponse"] {
        assert!(
            log.iter().any(|e| e.action == kind),
            "{kind} never injected: {log:#?}"
        );
    }
}

#[test]
fn truncated_downloads_resume_with_range() {
    let reg = Registry::start();
    let c0 = client();
    let target0 = r(&format!("{}/trunc/x:1", reg.host()));
    let data = noise(2 << 20, 21);
    c0.push_blob(&target0, &BlobUpload::from_bytes(data.clone()))
        .unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    let p = Proxy::start(reg.addr(), move |req: &Req| {
        if req.is_blob_get() && seen.fetch_add(1, Ordering::SeqCst) < 2 {
            return Action::Truncate(700_000);
        }
        Action::Forward
    });
    let c = client();
    let target = r(&format!("{}/trunc/x:1", p.host()));
    let got = pull_to_vec(&c, &target, &Digest::sha256(&data), Some(data.len() as u64)).unwrap();
    assert!(got == data);
    let ranges: Vec<_> = p
        .log()
        .iter()
        .filter(|e| e.method == "GET" && e.target.contains("/blobs/sha256:"))
        .map(|e| e.status)
        .collect();
    // Two cut-off answers, then partial content from where they stopped.
    assert_eq!(ranges, [Some(200), Some(206), Some(206)], "{:#?}", p.log());
}

#[test]
fn corrupted_downloads_are_refused() {
    let reg = Registry::start();
    let c0 = client();
    let target0 = r(&format!("{}/corrupt/x:1", reg.host()));
    let (_, mdigest) = push_image(&c0, &target0, &[noise(50_000, 31)]);
    let layer = noise(50_000, 31);
    let p = Proxy::start(reg.addr(), |_req: &Req| Action::Corrupt);
    let c = client();
    let target = r(&format!("{}/corrupt/x:1", p.host()));
    let want = Digest::sha256(&layer);
    let e = pull_to_vec(&c, &target, &want, Some(layer.len() as u64)).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{s}");
    assert!(
        s.contains(want.as_str()) && s.contains(&format!("{}/v2/corrupt/x/blobs/", p.host())),
        "{s}"
    );
    let e = c.get_manifest(&target.with_digest(mdigest)).unwrap_err();
    assert!(
        matches!(e, Error::DigestMismatch { .. } | Error::NotJson { .. }),
        "{e}"
    );
}

#[test]
fn persistent_failures_give_up_with_a_clear_error() {
    let reg = Registry::start();
    let p = Proxy::start(reg.addr(), |req: &Req| {
        if req.method == "PATCH" || (req.method == "PUT" && req.is_upload()) {
            Action::status(500)
        } else {
            Action::Forward
        }
    });
    let c = Client::new(ClientOptions {
        chunk_size: 64 << 10,
        ..options()
    });
    let target = r(&format!("{}/down/x:1", p.host()));
    let e = c
        .push_blob(&target, &BlobUpload::from_bytes(noise(200_000, 41)))
        .unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("500") && s.contains("attempt") && s.contains(&p.host()),
        "{s}"
    );
    assert!(s.contains("upload blob sha256:"), "{s}");
}

#[test]
fn retry_after_is_honoured() {
    let reg = Registry::start();
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    let p = Proxy::start(reg.addr(), move |req: &Req| {
        if req.method == "GET"
            && req.path().ends_with("/tags/list")
            && seen.fetch_add(1, Ordering::SeqCst) == 0
        {
            return Action::Respond {
                status: 429,
                headers: vec![("Retry-After".into(), "1".into())],
                body: b"slow down".to_vec(),
            };
        }
        Action::Forward
    });
    let c = Client::new(ClientOptions {
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_secs(5),
        },
        ..options()
    });
    let target = r(&format!("{}/slow/x:1", p.host()));
    push_image(&c, &target, &[]);
    let t = Instant::now();
    assert_eq!(c.list_tags(&target).unwrap(), ["1"]);
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn blobs_mount_across_repositories() {
    let reg = Registry::start();
    let p = Proxy::start(reg.addr(), |_: &Req| Action::Forward);
    let c = client();
    let a = r(&format!("{}/team/base:1", p.host()));
    let b = r(&format!("{}/team/app:1", p.host()));
    let data = noise(10_000, 51);
    c.push_blob(&a, &BlobUpload::from_bytes(data.clone()))
        .unwrap();
    let mut up = BlobUpload::from_bytes(data.clone());
    up.mount_from = vec!["team/base".into()];
    assert_eq!(c.push_blob(&b, &up).unwrap(), Pushed::Mounted);
    assert!(
        p.count(|e| e.method == "POST"
            && e.target.contains("mount=sha256")
            && e.target.contains("from=team%2Fbase"))
            == 1
    );
    assert_eq!(pull_to_vec(&c, &b, &up.digest, None).unwrap(), data);
    // A source that lacks the blob: the registry opens an ordinary upload instead.
    let other = BlobUpload {
        mount_from: vec!["team/nothing".into()],
        ..BlobUpload::from_bytes(noise(5000, 52))
    };
    assert_eq!(c.push_blob(&b, &other).unwrap(), Pushed::Transferred);
}

#[test]
fn uploads_run_in_parallel_within_the_limit() {
    let reg = Registry::start();
    let p = Proxy::start(reg.addr(), |req: &Req| {
        if req.is_upload() && req.method == "PUT" {
            Action::Delay(Duration::from_millis(150))
        } else {
            Action::Forward
        }
    });
    let c = Client::new(ClientOptions {
        max_concurrent_uploads: 3,
        ..options()
    });
    let target = r(&format!("{}/par/x:1", p.host()));
    let blobs: Vec<_> = (0..9)
        .map(|i| BlobUpload::from_bytes(noise(20_000, 60 + i)))
        .collect();
    let mut with_dup = blobs.clone();
    with_dup.push(blobs[0].clone());
    let out = c.push_blobs(&target, &with_dup).unwrap();
    assert_eq!(out.len(), 10);
    assert!(out.iter().all(|p| *p == Pushed::Transferred));
    assert_eq!(p.count(|e| e.method == "PUT"), 9, "each digest once");
    let max = p.max_in_flight_uploads();
    assert!((2..=3).contains(&max), "max in flight {max}");
}

#[test]
fn a_batch_says_when_its_first_round_is_past_the_round_trips() {
    let reg = Registry::start();
    // Each blob's bytes take 300 ms to land; the checks and session openings are quick.
    let p = Proxy::start(reg.addr(), |req: &Req| {
        if req.is_upload() && req.method == "PUT" {
            Action::Delay(Duration::from_millis(300))
        } else {
            Action::Forward
        }
    });
    let c = Client::new(ClientOptions {
        max_concurrent_uploads: 2,
        ..options()
    });
    let target = r(&format!("{}/noting/x:1", p.host()));
    let blobs: Vec<_> = (0..5)
        .map(|i| BlobUpload::from_bytes(noise(10_000, 90 + i)))
        .collect();
    let start = Instant::now();
    let noted = Mutex::new(Vec::new());
    c.push_blobs_noting(&target, &blobs, &|| {
        let opened = p.count(|e| e.method == "POST" && e.target.contains("/blobs/uploads/"));
        noted.lock().unwrap().push((start.elapsed(), opened));
    })
    .unwrap();
    let total = start.elapsed();
    let noted = noted.into_inner().unwrap();
    assert_eq!(noted.len(), 1, "once: {noted:?}");
    let (at, opened) = noted[0];
    // Both workers' first blobs had their sessions open, and none had landed yet.
    assert_eq!(opened, 2, "{noted:?}");
    assert!(at < Duration::from_millis(250), "{at:?}");
    assert!(total >= Duration::from_millis(900), "{total:?}");

    // Blobs that are there already are done at once: the batch is under way (and over).
    let called = AtomicUsize::new(0);
    c.push_blobs_noting(&target, &blobs, &|| {
        called.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    assert_eq!(called.load(Ordering::SeqCst), 1);
}

#[test]
fn referrers_fall_back_to_the_digest_tag() {
    let reg = Registry::start();
    let c = client();
    let target = r(&format!("{}/ref/app:1", reg.host()));
    let (subject_bytes, subject) = push_image(&c, &target, &[noise(1000, 71)]);
    let empty = b"{}".to_vec();
    c.push_blob(&target, &BlobUpload::from_bytes(empty.clone()))
        .unwrap();
    let mut sig = ImageManifest::new(
        Descriptor::new(mt::OCI_EMPTY, Digest::sha256(&empty), 2),
        Vec::new(),
    );
    sig.artifact_type = Some("application/vnd.example.sig".into());
    sig.subject = Some(Descriptor::new(
        mt::OCI_MANIFEST,
        subject.clone(),
        subject_bytes.len() as u64,
    ));
    let sig_bytes = oci::to_canonical_json(&sig).unwrap();
    let sig_digest = c
        .put_manifest(
            &target.without_tag().with_digest(Digest::sha256(&sig_bytes)),
            mt::OCI_MANIFEST,
            &sig_bytes,
        )
        .unwrap();
    let all = c.referrers(&target, &subject, None).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].digest, sig_digest);
    assert_eq!(
        all[0].artifact_type.as_deref(),
        Some("application/vnd.example.sig")
    );
    assert_eq!(
        c.referrers(&target, &subject, Some("application/vnd.example.sig"))
            .unwrap()
            .len(),
        1
    );
    assert!(
        c.referrers(&target, &subject, Some("other/type"))
            .unwrap()
            .is_empty()
    );
    assert!(
        c.referrers(&target, &Digest::sha256(b"nothing"), None)
            .unwrap()
            .is_empty()
    );
    // Pushing the same referrer again does not duplicate it.
    c.put_manifest(
        &target.without_tag().with_digest(sig_digest),
        mt::OCI_MANIFEST,
        &sig_bytes,
    )
    .unwrap();
    assert_eq!(c.referrers(&target, &subject, None).unwrap().len(), 1);
    let tags = c.list_tags(&target).unwrap();
    assert!(
        tags.contains(&format!("sha256-{}", subject.hex())),
        "{tags:?}"
    );
}

#[test]
fn basic_auth_behind_tls() {
    let reg = Registry::start_with(registry::Opts {
        basic_auth: Some(("alice".into(), "wonder-land".into())),
        tls: true,
        ..Default::default()
    });
    let home = tempfile::tempdir().unwrap();
    let certs = reg.certs_d(home.path());
    let with = |creds: Option<Credentials>, certs_dirs: Vec<std::path::PathBuf>| {
        Client::new(ClientOptions {
            certs_dirs,
            credentials: creds.map(|c| {
                Arc::new(FixedCredentials {
                    registry: reg.host(),
                    credentials: c,
                }) as Arc<dyn oxkit_registry::CredentialSource>
            }),
            ..options()
        })
    };
    let good = Credentials::Basic {
        username: "alice".into(),
        password: Secret::new("wonder-land"),
    };
    let target = r(&format!("{}/secure/app:1", reg.host()));
    let c = with(Some(good.clone()), vec![certs.clone()]);
    c.check_login(&reg.host()).unwrap();
    push_image(&c, &target, &[noise(5000, 81)]);
    assert!(c.get_manifest(&target).is_ok());

    let bad = with(
        Some(Credentials::Basic {
            username: "alice".into(),
            password: Secret::new("not-the-password"),
        }),
        vec![certs.clone()],
    );
    let e = bad.get_manifest(&target).unwrap_err();
    let s = format!("{e} {e:?}");
    assert!(matches!(e, Error::Unauthorized(_)), "{s}");
    assert!(s.contains(&format!("oxkit login {}", reg.host())), "{s}");
    assert!(!s.contains("not-the-password"), "{s}");
    assert!(bad.check_login(&reg.host()).is_err());

    let anon = with(None, vec![certs]);
    let e = anon.get_manifest(&target).unwrap_err();
    assert!(matches!(e, Error::CredentialsRequired(_)), "{e}");

    let no_ca = with(Some(good), Vec::new());
    let e = no_ca.get_manifest(&target).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, Error::Tls { .. }), "{s}");
    assert!(s.contains("certs.d") && s.contains(&reg.host()), "{s}");
}

#[test]
fn client_certificates_from_certs_d() {
    let reg = Registry::start_with(registry::Opts {
        client_certs: true,
        ..Default::default()
    });
    let home = tempfile::tempdir().unwrap();
    let target = r(&format!("{}/mtls/app:1", reg.host()));
    let with_cert = Client::new(ClientOptions {
        certs_dirs: vec![reg.certs_d_with_client(home.path())],
        ..options()
    });
    push_image(&with_cert, &target, &[noise(3000, 85)]);
    assert!(with_cert.get_manifest(&target).is_ok());

    let other = tempfile::tempdir().unwrap();
    let ca_only = Client::new(ClientOptions {
        certs_dirs: vec![reg.certs_d(other.path())],
        ..options()
    });
    let e = ca_only.get_manifest(&target).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Tls { .. } | Error::Transport { .. } | Error::Connect { .. }
        ),
        "{e}"
    );
}

#[test]
fn insecure_registries_skip_the_certificate_check_only_when_listed() {
    let reg = Registry::start_with(registry::Opts {
        tls: true,
        ..Default::default()
    });
    let target = r(&format!("{}/insecure/app:1", reg.host()));
    // A certificate from a CA nobody trusts: refused, unless the registry is listed.
    let e = client().get_manifest(&target).unwrap_err();
    assert!(matches!(e, Error::Tls { .. }), "{e}");
    let insecure = Client::new(ClientOptions {
        insecure_registries: vec![reg.host()],
        ..options()
    });
    push_image(&insecure, &target, &[noise(2000, 87)]);
    assert!(insecure.get_manifest(&target).is_ok());
    // Listing another registry changes nothing for this one.
    let other = Client::new(ClientOptions {
        insecure_registries: vec!["127.0.0.1:1".into()],
        ..options()
    });
    assert!(matches!(
        other.get_manifest(&target),
        Err(Error::Tls { .. })
    ));
}

/// A bearer-token auth layer in front of an open registry: `/token` checks basic
/// credentials and records the scopes asked for; `/v2/` wants the token.
fn token_layer(
    p_host: Arc<std::sync::Mutex<String>>,
    scopes: Arc<std::sync::Mutex<Vec<String>>>,
) -> impl FnMut(&Req) -> Action + Send {
    move |req: &Req| {
        let host = p_host.lock().unwrap().clone();
        if req.path() == "/token" {
            let ok = req.header("authorization") == Some("Basic Ym9iOmJ1aWxkZXI="); // bob:builder
            if !ok {
                return Action::Respond {
                    status: 401,
                    headers: vec![("Content-Type".into(), "application/json".into())],
                    body: br#"{"details":"incorrect username or password"}"#.to_vec(),
                };
            }
            let q = req.target.split_once('?').map(|x| x.1).unwrap_or("");
            let mut s = scopes.lock().unwrap();
            for kv in q.split('&') {
                if let Some(v) = kv.strip_prefix("scope=") {
                    s.push(
                        v.replace("%3A", ":")
                            .replace("%2F", "/")
                            .replace("%2C", ","),
                    );
                }
            }
            return Action::Respond {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: br#"{"token":"tok-123","expires_in":300}"#.to_vec(),
            };
        }
        if req.header("authorization") != Some("Bearer tok-123") {
            return Action::Respond {
                status: 401,
                headers: vec![
                    ("Content-Type".into(), "application/json".into()),
                    (
                        "WWW-Authenticate".into(),
                        format!(r#"Bearer realm="http://{host}/token",service="test-registry""#),
                    ),
                ],
                body:
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                        .to_vec(),
            };
        }
        Action::Forward
    }
}

#[test]
fn bearer_tokens_with_scopes() {
    let reg = Registry::start();
    let host = Arc::new(std::sync::Mutex::new(String::new()));
    let scopes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let p = Proxy::start(reg.addr(), token_layer(host.clone(), scopes.clone()));
    *host.lock().unwrap() = p.host();
    let creds = |pw: &str| {
        Arc::new(FixedCredentials {
            registry: p.host(),
            credentials: Credentials::Basic {
                username: "bob".into(),
                password: Secret::new(pw),
            },
        }) as Arc<dyn oxkit_registry::CredentialSource>
    };
    let c = Client::new(ClientOptions {
        credentials: Some(creds("builder")),
        ..options()
    });
    let base = r(&format!("{}/org/base:1", p.host()));
    let app = r(&format!("{}/org/app:1", p.host()));
    let data = noise(4000, 91);
    c.push_blob(&base, &BlobUpload::from_bytes(data.clone()))
        .unwrap();
    let mut up = BlobUpload::from_bytes(data);
    up.mount_from = vec!["org/base".into()];
    assert_eq!(c.push_blob(&app, &up).unwrap(), Pushed::Mounted);
    let asked = scopes.lock().unwrap().clone();
    assert!(
        asked.contains(&"repository:org/base:pull,push".to_string()),
        "{asked:?}"
    );
    assert!(
        asked.contains(&"repository:org/app:pull,push".to_string()),
        "{asked:?}"
    );
    assert!(
        asked.contains(&"repository:org/base:pull".to_string()),
        "mount needs the source's pull scope: {asked:?}"
    );
    // Tokens are cached: far fewer token requests than API requests.
    let token_requests = p.count(|e| e.target.starts_with("/token"));
    let api_requests = p.count(|e| e.target.starts_with("/v2/"));
    assert!(
        token_requests <= 5 && api_requests > token_requests,
        "{:#?}",
        p.log()
    );

    let wrong = Client::new(ClientOptions {
        credentials: Some(creds("wrong")),
        ..options()
    });
    let e = wrong.blob_exists(&app, &up.digest).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, Error::Unauthorized(_)), "{s}");
    assert!(
        s.contains(&format!("oxkit login {}", p.host())) && s.contains("/token"),
        "{s}"
    );
    assert!(!s.contains("wrong"), "{s}");
}

#[test]
fn html_instead_of_a_registry_is_named() {
    let reg = Registry::start();
    let p = Proxy::start(reg.addr(), |_: &Req| Action::Respond {
        status: 200,
        headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
        body: b"<html><body>Welcome to nginx</body></html>".to_vec(),
    });
    let e = client()
        .get_manifest(&r(&format!("{}/x/y:1", p.host())))
        .unwrap_err();
    let s = e.to_string();
    assert!(
        matches!(e, Error::Html { .. }) && s.contains("HTML") && s.contains(&p.host()),
        "{s}"
    );
}

#[test]
fn unknown_hosts_and_refused_connections_say_so() {
    let e = client()
        .get_manifest(&r("no-such-host.invalid/x/y:1"))
        .unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, Error::Dns { .. }), "{s}");
    assert!(
        s.contains("no-such-host.invalid") && s.contains("DNS"),
        "{s}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = client()
        .get_manifest(&r(&format!("127.0.0.1:{port}/x/y:1")))
        .unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains(&format!("127.0.0.1:{port}")) && s.contains("running"),
        "{s}"
    );
}

#[test]
fn unknown_manifest_media_types_are_refused() {
    let reg = Registry::start();
    let c = client();
    let target = r(&format!("{}/odd/x:1", reg.host()));
    push_image(&c, &target, &[]);
    let p = Proxy::start(reg.addr(), |req: &Req| {
        if req.path().contains("/manifests/") {
            Action::Respond {
                status: 200,
                headers: vec![(
                    "Content-Type".into(),
                    "application/vnd.example.thing+json".into(),
                )],
                body: br#"{"mediaType":"application/vnd.example.thing+json"}"#.to_vec(),
            }
        } else {
            Action::Forward
        }
    });
    let e = client()
        .get_manifest(&r(&format!("{}/odd/x:1", p.host())))
        .unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, Error::UnknownMediaType { .. }), "{s}");
    assert!(
        s.contains("application/vnd.example.thing+json") && s.contains("/odd/x:1"),
        "{s}"
    );
}

mod transfer {
    use super::*;
    use oxkit_registry::transfer::{self, Platforms};
    use oxkit_spec::Platform;
    use oxkit_store::Store;

    /// A two-platform image in a fresh store: per platform a config and two layers (one
    /// shared between the platforms), and an index over both, tagged `name`.
    fn two_platform_image(store: &Store, name: &Reference) -> Descriptor {
        let shared = store.write_blob(&noise(40_000, 100)).unwrap();
        let mut children = Vec::new();
        for (i, arch) in ["amd64", "arm64"].into_iter().enumerate() {
            let cfg = format!(
                r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
            );
            let cfg = store.write_blob(cfg.as_bytes()).unwrap();
            let own = store
                .write_blob(&noise(30_000 + i * 1000, 101 + i as u64))
                .unwrap();
            let m = ImageManifest::new(
                cfg.descriptor(mt::OCI_CONFIG),
                vec![
                    shared.descriptor(mt::OCI_LAYER_GZIP),
                    own.descriptor(mt::OCI_LAYER_GZIP),
                ],
            );
            let d = store
                .put_json(mt::OCI_MANIFEST, &m)
                .unwrap()
                .with_platform(Platform::linux(arch).unwrap());
            children.push(d);
        }
        store.put_index_for(name, children).unwrap()
    }

    #[test]
    fn push_then_pull_every_platform_byte_exact() {
        let reg = Registry::start();
        let dir = tempfile::tempdir().unwrap();
        let src = Store::open(dir.path().join("src")).unwrap();
        let local = r("oxkit.local/multi:1");
        let top = two_platform_image(&src, &local);
        let c = client();
        let remote = r(&format!("{}/multi/img:1", reg.host()));
        let rep = transfer::push(&c, &src, &local, &remote).unwrap();
        assert_eq!(rep.descriptor.digest, top.digest);
        assert_eq!(
            (rep.uploaded, rep.existing, rep.manifests),
            (5, 0, 3),
            "{rep:?}"
        );
        // Again: nothing to upload.
        let rep = transfer::push(&c, &src, &local, &remote).unwrap();
        assert_eq!((rep.uploaded, rep.existing), (0, 5), "{rep:?}");

        let dst = Store::open(dir.path().join("dst")).unwrap();
        let rep = transfer::pull(&c, &dst, &remote, &Platforms::All).unwrap();
        assert_eq!(rep.descriptor.digest, top.digest);
        assert_eq!(rep.remote_digest, top.digest);
        assert_eq!(rep.fetched, 5 + 3);
        let got = dst.resolve(&remote).unwrap().unwrap();
        assert_eq!(got.digest, top.digest);
        // Every blob of the image is there and verified.
        let blobs = dst.image_blobs(&got).unwrap();
        assert_eq!(blobs.len(), 8);
        for b in &blobs {
            assert_eq!(
                dst.read_blob(&b.digest).unwrap(),
                src.read_blob(&b.digest).unwrap()
            );
        }
        let rep = transfer::pull(&c, &dst, &remote, &Platforms::All).unwrap();
        assert_eq!((rep.fetched, rep.present), (0, 8));
    }

    #[test]
    fn pull_one_platform_fetches_only_its_blobs() {
        let reg = Registry::start();
        let dir = tempfile::tempdir().unwrap();
        let src = Store::open(dir.path().join("src")).unwrap();
        let local = r("oxkit.local/multi:1");
        two_platform_image(&src, &local);
        let c = client();
        let remote = r(&format!("{}/multi/img:2", reg.host()));
        transfer::push(&c, &src, &local, &remote).unwrap();

        let dst = Store::open(dir.path().join("dst")).unwrap();
        let arm = Platform::linux("arm64").unwrap();
        let rep = transfer::pull(&c, &dst, &remote, &Platforms::Only(vec![arm.clone()])).unwrap();
        assert_eq!(rep.descriptor.platform.as_ref(), Some(&arm));
        assert_eq!(rep.fetched, 4, "config, two layers, manifest: {rep:?}");
        let d = dst.resolve_platform(&remote, &arm).unwrap().unwrap();
        assert_eq!(d.digest, rep.descriptor.digest);
        let e = transfer::pull(
            &c,
            &dst,
            &remote,
            &Platforms::Only(vec![Platform::linux("riscv64").unwrap()]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("riscv64") && e.contains("arm64") && e.contains("amd64"),
            "{e}"
        );

        // Two of two platforms: a local index over both, with the remote's manifests.
        let both = Store::open(dir.path().join("both")).unwrap();
        let rep = transfer::pull(
            &c,
            &both,
            &remote,
            &Platforms::Only(vec![arm, Platform::linux("amd64").unwrap()]),
        )
        .unwrap();
        let idx = both.read_index(&rep.descriptor.digest).unwrap();
        assert_eq!(idx.manifests.len(), 2);
    }

    #[test]
    fn a_corrupted_pull_leaves_the_store_untouched() {
        let reg = Registry::start();
        let dir = tempfile::tempdir().unwrap();
        let src = Store::open(dir.path().join("src")).unwrap();
        let local = r("oxkit.local/multi:1");
        two_platform_image(&src, &local);
        let c = client();
        let remote = r(&format!("{}/multi/img:3", reg.host()));
        transfer::push(&c, &src, &local, &remote).unwrap();
        let p = Proxy::start(reg.addr(), |req: &Req| {
            if req.is_blob_get() {
                Action::Corrupt
            } else {
                Action::Forward
            }
        });
        let via = r(&format!("{}/multi/img:3", p.host()));
        let dst = Store::open(dir.path().join("dst")).unwrap();
        let e = transfer::pull(&c, &dst, &via, &Platforms::All).unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
        assert!(dst.resolve(&via).unwrap().is_none());
        for b in src
            .image_blobs(&src.resolve(&local).unwrap().unwrap())
            .unwrap()
        {
            if !mt::is_manifest(&b.media_type) && !mt::is_index(&b.media_type) {
                assert!(
                    !dst.has_blob(&b.digest),
                    "corrupt blob {} entered the store",
                    b.digest
                );
            }
        }
    }

    #[test]
    fn pushing_to_another_repository_mounts() {
        let reg = Registry::start();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = client();
        let first = r(&format!("{}/team/one:1", reg.host()));
        two_platform_image(&store, &first);
        transfer::push(&c, &store, &first, &first).unwrap();
        let second = r(&format!("{}/team/two:1", reg.host()));
        let rep = transfer::push(&c, &store, &first, &second).unwrap();
        assert_eq!((rep.mounted, rep.uploaded), (5, 0), "{rep:?}");
        assert_eq!(
            c.get_manifest(&second).unwrap().digest,
            rep.descriptor.digest
        );
    }
}
