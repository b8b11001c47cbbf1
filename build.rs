//! Generates the wire messages from the specs' own `.proto` files (`proto/`), compiled
//! in Rust by protox so the build needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const FILES: [&str; 2] = ["proto/circuit.proto", "proto/rendezvous.proto"];
    for file in FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(FILES, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
