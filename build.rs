//! Rebuilds the crate when a migration changes (`embed_migrations!` reads `migrations/` at compile
//! time), and compiles the gRPC protos (`proto/payd/v1`) with the pure-Rust `protox`: no system
//! `protoc`. The descriptor set is written next to the generated code for reflection and for the
//! backward-compatibility test against the committed `proto/descriptor.bin`.

use std::path::PathBuf;

/// Every proto of the API, one file per service (plus the shared types).
const PROTOS: &[&str] = &[
    "payd/v1/common.proto",
    "payd/v1/auth.proto",
    "payd/v1/users.proto",
    "payd/v1/cards.proto",
    "payd/v1/ledger.proto",
    "payd/v1/payments.proto",
    "payd/v1/merchants.proto",
    "payd/v1/roles.proto",
    "payd/v1/stats.proto",
    "payd/v1/admin.proto",
    "payd/v1/webhooks.proto",
    "payd/v1/notifications.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("payd_descriptor.bin"), protox::prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
