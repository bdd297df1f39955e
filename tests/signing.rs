//! The signer reproduces every signature the official Python SDK computed
//! (tests/vectors/signatures.json, a copy of shared/vectors/signatures.json), and the validator
//! agrees with every documented policy case (tests/vectors/passwords.json).

use std::collections::BTreeMap;

use pwrotd::cloud::sign::{self, V3Input};
use pwrotd::password;
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    v1: Vec<V1Vector>,
    v3: Vec<V3Vector>,
}

#[derive(Deserialize)]
struct V1Vector {
    name: String,
    method: String,
    secret: String,
    params: BTreeMap<String, String>,
    signature: String,
}

#[derive(Deserialize)]
struct V3Vector {
    name: String,
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    body: String,
    signed_headers: BTreeMap<String, String>,
    access_key_id: String,
    secret: String,
    authorization: String,
}

fn vectors() -> Vectors {
    serde_json::from_str(include_str!("vectors/signatures.json")).expect("signatures.json parses")
}

#[test]
fn every_v1_vector() {
    let vectors = vectors().v1;
    assert!(vectors.len() >= 7);
    for v in &vectors {
        let got = sign::v1_signature(
            &v.secret,
            &v.method,
            v.params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        assert_eq!(got, v.signature, "V1 vector {:?}", v.name);
    }
}

#[test]
fn every_v3_vector() {
    let vectors = vectors().v3;
    assert!(vectors.len() >= 2);
    for v in &vectors {
        let payload_hash = &v.signed_headers["x-acs-content-sha256"];
        assert_eq!(
            &sign::sha256_hex(v.body.as_bytes()),
            payload_hash,
            "body hash of {:?}",
            v.name
        );
        let query: Vec<(&str, &str)> = v
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let headers: Vec<(&str, &str)> = v
            .signed_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let signature = sign::v3_signature(
            &v.secret,
            &V3Input {
                method: &v.method,
                path: &v.path,
                query: &query,
                headers: &headers,
                payload_hash,
            },
        );
        assert_eq!(
            signature.authorization(&v.access_key_id),
            v.authorization,
            "V3 vector {:?}",
            v.name
        );
    }
}

#[test]
fn the_form_body_is_the_canonical_query() {
    // The first V3 vector's body is what the client sends: the canonical query of its params.
    let v = &vectors().v3[0];
    let params: Vec<(String, String)> = form_urlencoded::parse(v.body.as_bytes())
        .into_owned()
        .collect();
    let rebuilt = sign::canonical_query(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert_eq!(*rebuilt, v.body);
}

#[derive(Deserialize)]
struct PolicyCases {
    cases: Vec<PolicyCase>,
}

#[derive(Deserialize)]
struct PolicyCase {
    password: String,
    valid: bool,
    why: String,
}

#[test]
fn every_documented_policy_case() {
    let cases: PolicyCases = serde_json::from_str(include_str!("vectors/passwords.json"))
        .expect("passwords.json parses");
    assert!(cases.cases.len() >= 14);
    for case in &cases.cases {
        let result = password::validate(&case.password);
        assert_eq!(
            result.is_ok(),
            case.valid,
            "{:?} ({}): {result:?}",
            case.password,
            case.why
        );
    }
}
