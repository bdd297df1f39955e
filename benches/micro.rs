//! Micro-benchmarks: V1 and V3 signing of a ModifyAccountPassword request, and password
//! generation from the OS CSPRNG. `cargo bench --bench micro`

use criterion::{Criterion, criterion_group, criterion_main};
use pwrotd::cloud::sign::{self, V3Input};
use pwrotd::password::Policy;

fn signing(c: &mut Criterion) {
    let params = [
        ("AccessKeyId", "LTAI5tExampleKeyId01"),
        ("Action", "ModifyAccountPassword"),
        ("Format", "JSON"),
        ("RegionId", "cn-hangzhou"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "c0ffee00-1111-4222-8333-944455556666"),
        ("SignatureVersion", "1.0"),
        ("Timestamp", "2026-11-23T03:00:00Z"),
        ("Version", "2017-08-01"),
        ("DBClusterId", "pc-2zeexample00001"),
        ("AccountName", "app"),
        ("NewAccountPassword", "Ab1!@#$%^&*()_+-=Ab1!@#$%"),
    ];
    c.bench_function("v1 signature (ModifyAccountPassword)", |b| {
        b.iter(|| {
            sign::v1_signature(
                std::hint::black_box("Ex4mple/Secret+Key=&"),
                "POST",
                params.iter().copied(),
            )
        })
    });
    let body = sign::canonical_query(
        params[9..]
            .iter()
            .copied()
            .chain([("RegionId", "cn-hangzhou")]),
    );
    c.bench_function(
        "v3 signature (ModifyAccountPassword, body hash included)",
        |b| {
            b.iter(|| {
                let hash = sign::sha256_hex(body.as_bytes());
                let headers = [
                    ("host", "polardb.aliyuncs.com"),
                    ("x-acs-action", "ModifyAccountPassword"),
                    ("x-acs-version", "2017-08-01"),
                    ("x-acs-date", "2026-11-23T03:00:00Z"),
                    (
                        "x-acs-signature-nonce",
                        "3f9a5c1e-0b7d-4e2a-9c61-5d8e7f0a1b2c",
                    ),
                    ("x-acs-content-sha256", hash.as_str()),
                    ("content-type", "application/x-www-form-urlencoded"),
                ];
                sign::v3_signature(
                    std::hint::black_box("Ex4mple/Secret+Key=&"),
                    &V3Input {
                        method: "POST",
                        path: "/",
                        query: &[],
                        headers: &headers,
                        payload_hash: &hash,
                    },
                )
            })
        },
    );
}

fn generation(c: &mut Criterion) {
    let policy = Policy::default();
    c.bench_function("generate a 24-character password (4 classes)", |b| {
        b.iter(|| policy.generate())
    });
    let short = Policy::new(8, &pwrotd::password::Class::ALL, "!", "").expect("valid");
    c.bench_function(
        "generate an 8-character password (4 classes, one special)",
        |b| b.iter(|| short.generate()),
    );
}

criterion_group!(benches, signing, generation);
criterion_main!(benches);
