//! The tokio example's run loop, run as a test: two nodes on 127.0.0.1 driven from tokio, a put on
//! one and a get on the other, within a deadline.

#[path = "../examples/tokio_node.rs"]
#[allow(dead_code)] // its `main` runs only as the example
mod example;

#[tokio::test(flavor = "current_thread")]
async fn a_node_driven_from_tokio_puts_and_gets_a_value() {
    let got = tokio::time::timeout(std::time::Duration::from_secs(20), example::put_then_get())
        .await
        .expect("no result within 20 s");
    assert_eq!(got.as_deref(), Ok(&b"hello from tokio"[..]));
}
