//! Compiles the router's ledger contract (`../proto`) into a tonic client with protox
//! (pure Rust: no system protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto");
    let descriptors = protox::compile(["leadrouter/v1/ledger.proto"], ["../proto"])?;
    tonic_prost_build::configure().build_server(false).compile_fds(descriptors)?;
    Ok(())
}
