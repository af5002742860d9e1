//! The gRPC server with TLS (`grpc.tls_cert_path`/`grpc.tls_key_path`): a self-signed certificate
//! made at test time, a client trusting it calls an RPC, and a plaintext client is refused.

use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use payd::grpc::proto;
use payd::grpc::proto::auth_client::AuthClient;

use crate::common::{settings, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};

#[actix_web::test]
async fn grpc_serves_over_tls_and_refuses_plaintext() {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = made.cert.pem();
    let dir = std::env::temp_dir().join(format!("payd-grpc-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, made.signing_key.serialize_pem()).unwrap();
    let mut s = settings();
    s.grpc.tls_cert_path = cert_path.to_string_lossy().into_owned();
    s.grpc.tls_key_path = key_path.to_string_lossy().into_owned();
    let app = TestApp::spawn_with(s).await;
    assert_ne!(app.grpc_port, 0, "the gRPC server is not running");

    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&cert_pem)).domain_name("localhost");
    let ch = Channel::from_shared(format!("https://127.0.0.1:{}", app.grpc_port))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("a client trusting the certificate connects");
    let pair = AuthClient::new(ch)
        .login(proto::LoginRequest { email: ADMIN_EMAIL.into(), password: ADMIN_PASSWORD.into() })
        .await
        .expect("login over TLS")
        .into_inner();
    assert!(!pair.access_token.is_empty());

    // Plaintext HTTP/2 to the TLS port: the connection or the call fails, nothing is answered.
    let plain = async {
        let Ok(ch) = Channel::from_shared(format!("http://127.0.0.1:{}", app.grpc_port)).unwrap().connect().await
        else {
            return false;
        };
        AuthClient::new(ch)
            .login(proto::LoginRequest { email: ADMIN_EMAIL.into(), password: ADMIN_PASSWORD.into() })
            .await
            .is_ok()
    };
    let answered = tokio::time::timeout(std::time::Duration::from_secs(10), plain).await;
    assert!(!matches!(answered, Ok(true)), "a plaintext client was answered");

    // A client that does not trust the certificate is refused too.
    let untrusted = Channel::from_shared(format!("https://127.0.0.1:{}", app.grpc_port))
        .unwrap()
        .tls_config(ClientTlsConfig::new().domain_name("localhost"))
        .unwrap()
        .connect()
        .await;
    assert!(untrusted.is_err(), "a client without the certificate connected");
    std::fs::remove_dir_all(&dir).unwrap();
}
