//! `rediss://` against a local redis-server serving TLS with throwaway certificates.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use remq::{Client, Error, MessageId};
use remq_testkit::{
    RedisServer, RunningWorker, TlsFiles, local_listener, test_worker, wait_for, wait_for_readiness,
};

#[tokio::test]
async fn the_client_publishes_and_consumes_over_tls_with_a_private_ca() {
    let files = TlsFiles::generate().unwrap();
    let server = RedisServer::builder().tls(&files).unwrap().start();
    let client =
        Client::builder(server.tls_url()).tls_root_cert(files.pem("ca.crt")).connect().await.unwrap();
    assert!(client.addr().to_string().starts_with("rediss://localhost:"), "{}", client.addr());
    let id = client.publish("secure.a", "over tls").await.unwrap();
    let page = client.consume("secure.*", MessageId::ZERO, 10).await.unwrap();
    assert_eq!((page[0].id, &page[0].body[..]), (id, &b"over tls"[..]));
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_clear_tls_error() {
    let files = TlsFiles::generate().unwrap();
    let other_ca = TlsFiles::generate().unwrap();
    let server = RedisServer::builder().tls(&files).unwrap().start();
    for builder in [
        Client::builder(server.tls_url()).tls_root_cert(other_ca.pem("ca.crt")),
        // The system's roots do not know the test CA either.
        Client::builder(server.tls_url()),
    ] {
        let err = builder.connect().await.unwrap_err();
        assert!(matches!(err, Error::Tls { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("was not trusted") && text.contains("CA certificate"), "{text}");
    }
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let files = TlsFiles::generate().unwrap();
    let server = RedisServer::builder().tls(&files).unwrap().arg("--tls-auth-clients").arg("yes").start();
    let without = Client::builder(server.tls_url()).tls_root_cert(files.pem("ca.crt")).connect().await;
    assert!(without.is_err(), "a client without a certificate was let in");
    let client = Client::builder(server.tls_url())
        .tls_root_cert(files.pem("ca.crt"))
        .tls_client_cert(files.pem("client.crt"), files.pem("client.key"))
        .connect()
        .await
        .unwrap();
    client.publish("mtls", "ok").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_consumes_over_tls() {
    let files = TlsFiles::generate().unwrap();
    let server = RedisServer::builder().tls(&files).unwrap().start();
    let client =
        Client::builder(server.tls_url()).tls_root_cert(files.pem("ca.crt")).connect().await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let (listener, addr) = local_listener();
    let worker = test_worker(server.tls_url())
        .tls_root_cert(files.pem("ca.crt"))
        .metrics_listener(listener)
        .named_handler("tls", "t.*", move |id: MessageId| {
            let record = record.clone();
            async move { record.lock().unwrap().push(id) }
        });
    let running = RunningWorker::start(worker);
    let first = client.publish("t.1", "replayed").await.unwrap();
    wait_for(Duration::from_secs(10), "the replayed message", || !seen.lock().unwrap().is_empty()).await;
    // Caught up and following pushes: the next message comes over TLS pub/sub.
    wait_for_readiness(addr, "tls", "live").await;
    let second = client.publish("t.2", "live").await.unwrap();
    wait_for(Duration::from_secs(10), "the worker to consume over TLS", || seen.lock().unwrap().len() >= 2)
        .await;
    assert_eq!(*seen.lock().unwrap(), [first, second]);
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_and_the_client_run_on_a_cluster_over_tls() {
    let files = TlsFiles::generate().unwrap();
    let cluster = remq_testkit::RedisCluster::start_tls(&files);
    let client = Client::builder(cluster.tls_seed_url())
        .namespace("remq:{tls}")
        .tls_root_cert(files.pem("ca.crt"))
        .replicas(1)
        .connect()
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let (listener, addr) = local_listener();
    let worker = test_worker(cluster.tls_seed_url())
        .namespace("remq:{tls}")
        .tls_root_cert(files.pem("ca.crt"))
        .metrics_listener(listener)
        .named_handler("tls-cluster", "t.*", move |id: MessageId| {
            let record = record.clone();
            async move { record.lock().unwrap().push(id) }
        });
    let running = RunningWorker::start(worker);
    let first = client.publish("t.1", "replayed").await.unwrap();
    wait_for(Duration::from_secs(20), "the replayed message", || !seen.lock().unwrap().is_empty()).await;
    // Live: the sharded subscription runs over TLS to the namespace's master.
    wait_for_readiness(addr, "tls-cluster", "live").await;
    let second = client.publish_batch("t.2", ["live", "too"]).await.unwrap();
    wait_for(Duration::from_secs(10), "the live messages", || seen.lock().unwrap().len() >= 3).await;
    assert_eq!(*seen.lock().unwrap(), [first, *second.start(), *second.end()]);
    running.stop().await.unwrap();
    // Without the CA, the cluster is not trusted either.
    let error = Client::builder(cluster.tls_seed_url()).namespace("remq:{tls}").connect().await.unwrap_err();
    assert!(matches!(error, Error::Tls { .. }), "{error:?}");
}
