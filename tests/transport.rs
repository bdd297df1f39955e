//! What the network can throw at the client: a corpus of bad replies from a raw loopback
//! server, a slowloris, and TLS with a self-signed (test) CA.

use std::sync::Arc;
use std::time::Duration;

use pwrotd::cloud::{
    Api, Class, Credentials, Grant, GrantAccountPrivilege, Privilege, SetPassword, SignatureVersion,
};
use pwrotd::password::Policy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::{self, KEY_ID, SECRET};

/// What the raw server does with each request.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Http(u16, &'static str),
    Huge,
    CloseAtOnce,
    Slowloris,
    HalfHeaders,
}

/// Serves `reply` to every connection until the test ends.
async fn raw_server(reply: Reply) -> reqwest::Url {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = reqwest::Url::parse(&format!("http://{}", listener.local_addr().expect("addr")))
        .expect("url");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                common::read_http_request(&mut stream).await;
                let head = |status: u16, length: usize| {
                    format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: text/html\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
                    )
                };
                match reply {
                    Reply::Http(status, body) => {
                        let _ = stream
                            .write_all(format!("{}{body}", head(status, body.len())).as_bytes())
                            .await;
                    }
                    Reply::Huge => {
                        let body =
                            format!("{{\"RequestId\":\"{}\"}}", "x".repeat(10 * 1024 * 1024));
                        let _ = stream.write_all(head(200, body.len()).as_bytes()).await;
                        let _ = stream.write_all(body.as_bytes()).await;
                    }
                    Reply::CloseAtOnce => {}
                    Reply::Slowloris => {
                        let _ = stream.write_all(head(200, 1000).as_bytes()).await;
                        for _ in 0..100 {
                            if stream.write_all(b" ").await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    Reply::HalfHeaders => {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-le").await;
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    url
}

#[tokio::test]
async fn bad_replies_are_classified_and_nothing_crashes() {
    let cases: [(Reply, Class, Class, &str, u32); 12] = [
        // (reply, class for a password change, class for a grant, code, attempts of a password
        // change with max_attempts = 2)
        (
            Reply::Http(200, "garbage \u{0} bytes"),
            Class::Ambiguous,
            Class::Transient,
            "MalformedReply",
            1,
        ),
        (
            Reply::Http(200, ""),
            Class::Ambiguous,
            Class::Transient,
            "MalformedReply",
            1,
        ),
        (
            Reply::Http(200, "<html><body>OK</body></html>"),
            Class::Ambiguous,
            Class::Transient,
            "MalformedReply",
            1,
        ),
        (
            Reply::Http(200, r#"{"Success":true}"#),
            Class::Ambiguous,
            Class::Transient,
            "MalformedReply",
            1,
        ),
        (
            Reply::Http(502, "<html>Bad Gateway</html>"),
            Class::Ambiguous,
            Class::Transient,
            "MalformedReply",
            1,
        ),
        (
            Reply::Http(
                503,
                r#"{"Code":"ServiceUnavailable","Message":"busy","RequestId":"R"}"#,
            ),
            Class::Ambiguous,
            Class::Ambiguous,
            "ServiceUnavailable",
            2,
        ),
        (
            Reply::Http(
                400,
                r#"{"Code":"InvalidAccountName.NotFound","RequestId":"R"}"#,
            ),
            Class::Permanent,
            Class::Permanent,
            "InvalidAccountName.NotFound",
            1,
        ),
        (
            Reply::Http(404, "not json"),
            Class::Ambiguous,
            Class::Transient,
            "MalformedReply",
            1,
        ),
        (
            Reply::Huge,
            Class::Ambiguous,
            Class::Transient,
            "MalformedReply",
            1,
        ),
        (
            Reply::CloseAtOnce,
            Class::Ambiguous,
            Class::Transient,
            "Network",
            1,
        ),
        (
            Reply::HalfHeaders,
            Class::Ambiguous,
            Class::Transient,
            "Network",
            1,
        ),
        (
            Reply::Slowloris,
            Class::Ambiguous,
            Class::Transient,
            "Timeout",
            1,
        ),
    ];
    for (reply, password_class, grant_class, code, attempts) in cases {
        let url = raw_server(reply).await;
        let mut config = common::client_config(url, SignatureVersion::V1);
        config.timeout = Duration::from_millis(800);
        config.max_attempts = 2;
        let client = common::client_with(config, Credentials::new(KEY_ID, SECRET));
        let password = Policy::default().generate().expect("generate");
        let op = SetPassword::new(
            Api::ModifyAccountPassword,
            "pc-1",
            "app",
            password.clone(),
            "t",
            None,
        );
        let err = client.call(&op).await.expect_err("no valid reply");
        assert_eq!(
            (err.class(), err.code()),
            (password_class, code),
            "{reply:?}: {err}"
        );
        assert_eq!(err.attempts, attempts, "{reply:?}");
        assert_eq!(
            err.may_have_applied(),
            password_class == Class::Ambiguous,
            "{reply:?}"
        );
        assert!(!err.to_string().contains(password.expose()), "{reply:?}");

        let grant = GrantAccountPrivilege::new(
            "pc-1",
            "app",
            &[Grant {
                db: "d".into(),
                privilege: Privilege::ReadOnly,
            }],
        );
        let err = client.call(&grant).await.expect_err("no valid reply");
        assert_eq!(
            (err.class(), err.code()),
            (grant_class, code),
            "grant {reply:?}: {err}"
        );
    }
}

pub fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls::{self, pki_types};
    let cert = pki_types::CertificateDer::from(include_bytes!("tls/leaf.der").to_vec());
    let key = pki_types::PrivateKeyDer::try_from(include_bytes!("tls/leaf.key.der").to_vec())
        .expect("a PKCS#8 key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .expect("a valid certificate");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

#[tokio::test]
async fn a_self_signed_https_endpoint_is_refused_unless_its_ca_is_configured() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = reqwest::Url::parse(&format!("https://{}", listener.local_addr().expect("addr")))
        .expect("url");
    let acceptor = tls_acceptor();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = vec![0u8; 65536];
                let _ = tls.read(&mut buf).await;
                let body = r#"{"RequestId":"TLS-OK"}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let op = SetPassword::new(
        Api::ResetAccountPassword,
        "rm-1",
        "u",
        Policy::default().generate().expect("generate"),
        "t",
        None,
    );

    let untrusting = common::client_with(
        common::client_config(url.clone(), SignatureVersion::V3),
        Credentials::new(KEY_ID, SECRET),
    );
    let err = untrusting
        .call(&op)
        .await
        .expect_err("an untrusted certificate");
    assert_eq!(
        (err.class(), err.code()),
        (Class::Transient, "Network"),
        "{err}"
    );
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    let mut config = common::client_config(url, SignatureVersion::V3);
    config.ca_file =
        Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls/ca.pem"));
    let trusting = common::client_with(config, Credentials::new(KEY_ID, SECRET));
    assert_eq!(
        trusting
            .call(&op)
            .await
            .expect("the CA is trusted")
            .request_id,
        "TLS-OK"
    );
}

/// Serves `replies` in order, one per connection, then closes every further connection.
async fn scripted_server(replies: Vec<(u16, String)>) -> reqwest::Url {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = reqwest::Url::parse(&format!("http://{}", listener.local_addr().expect("addr")))
        .expect("url");
    tokio::spawn(async move {
        let mut replies = replies.into_iter();
        while let Ok((mut stream, _)) = listener.accept().await {
            let request =
                String::from_utf8_lossy(&common::read_http_request(&mut stream).await).into_owned();
            let Some((status, body)) = replies.next() else {
                continue;
            };
            // A gateway that echoes what it was sent: `{password}` stands for the password.
            let password = request
                .split(['&', '\n'])
                .find_map(|kv| kv.strip_prefix("NewAccountPassword="))
                .map(|v| {
                    form_urlencoded::parse(format!("x={v}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            let body = body.replace("{password}", &password);
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    url
}

fn set_password(password: &pwrotd::password::Password) -> SetPassword {
    SetPassword::new(
        Api::ModifyAccountPassword,
        "pc-1",
        "app",
        password.clone(),
        "t",
        None,
    )
}

/// docs/protocol.md#failure-rules: a call keeps "may have been applied" from any attempt, whatever the last
/// attempt said. A server error that was applied, then throttling: the password may be live.
#[tokio::test]
async fn a_server_error_then_throttling_may_have_applied() {
    let throttled = r#"{"Code":"Throttling.User","Message":"slow down","RequestId":"R2"}"#;
    for first in [
        (503, r#"{"Code":"ServiceUnavailable","RequestId":"R1"}"#),
        (500, r#"{"Code":"InternalError","RequestId":"R1"}"#),
        (400, r#"{"Code":"LockTimeout","RequestId":"R1"}"#),
        (400, r#"{"Code":"Database.ConnectError","RequestId":"R1"}"#),
    ] {
        let url = scripted_server(vec![
            (first.0, first.1.to_owned()),
            (400, throttled.to_owned()),
            (400, throttled.to_owned()),
        ])
        .await;
        let mut config = common::client_config(url, SignatureVersion::V1);
        config.max_attempts = 3;
        let client = common::client_with(config, Credentials::new(KEY_ID, SECRET));
        let password = Policy::default().generate().expect("generate");
        let err = client
            .call(&set_password(&password))
            .await
            .expect_err("throttled at the end");
        assert_eq!(
            (
                err.class(),
                err.code(),
                err.attempts,
                err.may_have_applied()
            ),
            (Class::Transient, "Throttling.User", 3, true),
            "{first:?}: {err}"
        );
    }
}

/// Codes the rule does not name as a refusal may have been applied: they are not retried
/// blindly, and never read as "nothing happened".
#[tokio::test]
async fn unknown_and_update_error_codes_may_have_applied() {
    for (status, body) in [
        (400, r#"{"Code":"Account.UpdateError","RequestId":"R"}"#),
        (400, r#"{"Code":"SomethingNew.Unknown","RequestId":"R"}"#),
        (400, r#"{"Code":"Forbidden.RAM","RequestId":"R"}"#),
        (
            400,
            r#"{"Code":"DB Operation Failed:timeout","RequestId":"R"}"#,
        ),
    ] {
        let url = scripted_server(vec![(status, body.to_owned())]).await;
        let client = common::client_with(
            common::client_config(url, SignatureVersion::V1),
            Credentials::new(KEY_ID, SECRET),
        );
        let password = Policy::default().generate().expect("generate");
        let err = client
            .call(&set_password(&password))
            .await
            .expect_err("an error");
        assert_eq!(
            (err.class(), err.attempts, err.may_have_applied()),
            (Class::Ambiguous, 1, true),
            "{body}: {err}"
        );
    }
}

/// An error code, request id or message that echoes the password never carries it further:
/// a code of an unexpected shape, or holding a secret, is `Other`.
#[tokio::test]
async fn an_echoed_password_never_leaves_the_reply() {
    for body in [
        r#"{"Code":"Bad{password}","Message":"was {password}","RequestId":"{password}"}"#,
        r#"{"Code":"{password}","Recommend":"{password}","RequestId":"R-{password}"}"#,
    ] {
        let url = scripted_server(vec![(400, body.to_owned())]).await;
        let client = common::client_with(
            common::client_config(url, SignatureVersion::V1),
            Credentials::new(KEY_ID, SECRET),
        );
        let password = Policy::default().generate().expect("generate");
        let err = client
            .call(&set_password(&password))
            .await
            .expect_err("an error");
        assert_eq!(err.code(), "Other", "{err}");
        let text = format!("{err} {err:?}");
        assert!(!text.contains(password.expose()), "{text}");
        assert!(
            err.request_id()
                .is_none_or(|id| !id.contains(password.expose()))
        );
    }
    // An alphanumeric password fits the code's shape: it is caught by value.
    let policy = Policy::new(
        16,
        &[
            pwrotd::password::Class::Upper,
            pwrotd::password::Class::Lower,
            pwrotd::password::Class::Digit,
        ],
        "",
        "",
    )
    .expect("policy");
    let password = policy.generate().expect("generate");
    let url = scripted_server(vec![(
        400,
        r#"{"Code":"Throttling.{password}","RequestId":"R"}"#.to_owned(),
    )])
    .await;
    let client = common::client_with(
        common::client_config(url, SignatureVersion::V1),
        Credentials::new(KEY_ID, SECRET),
    );
    let err = client
        .call(&set_password(&password))
        .await
        .expect_err("an error");
    assert_eq!((err.code(), err.may_have_applied()), ("Other", true));
}
