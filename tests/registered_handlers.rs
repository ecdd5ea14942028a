//! Handlers registered with `#[remq::handler]` run: a worker that keeps its
//! registered handlers consumes with them, and the handler a registration's
//! `make` builds runs the function on a delivery.
//!
//! Its own test binary, because the registry holds every handler of a binary.
//! The registrations' patterns and names are checked in
//! `remq-worker/tests/handler_registry.rs`; running a handler needs a
//! [`Delivery`], which only a worker makes, so that check lives here, next to a
//! redis-server.

use std::sync::Mutex;
use std::time::Duration;

use remq::__private::{Registration, registrations};
use remq::{Client, Delivery, Json, MessageId, StartFrom, State, Worker};
use remq_testkit::{RedisServer, RunningWorker, wait_for};

/// What `welcome` did: (account, greeting), in order.
static WELCOMED: Mutex<Vec<(u64, &str)>> = Mutex::new(Vec::new());
/// Every delivery `audit` was given, in order.
static AUDITED: Mutex<Vec<Delivery>> = Mutex::new(Vec::new());
/// The ids `nested::orders` handled, in order.
static ORDERS: Mutex<Vec<MessageId>> = Mutex::new(Vec::new());

#[derive(serde::Deserialize)]
struct Signup {
    account_id: u64,
}

#[derive(Clone)]
struct Mailer(&'static str);

#[remq::handler("registry.accounts.*", name = "registry-welcome")]
async fn welcome(Json(signup): Json<Signup>, State(mailer): State<Mailer>) -> Result<(), remq::Error> {
    WELCOMED.lock().unwrap().push((signup.account_id, mailer.0));
    Ok(())
}

#[remq::handler("registry.*")]
async fn audit(delivery: Delivery) {
    AUDITED.lock().unwrap().push(delivery);
}

mod nested {
    #[remq::handler("registry.orders.[ab]")]
    pub(crate) async fn r#orders(id: remq::MessageId) {
        super::ORDERS.lock().unwrap().push(id);
    }
}

/// The registration of the handler consuming `pattern`.
fn registration(pattern: &str) -> &'static Registration {
    let mut found = registrations().filter(|r| r.pattern == pattern);
    let registration = found.next().unwrap_or_else(|| panic!("no handler registered for {pattern:?}"));
    assert!(found.next().is_none(), "two handlers registered for {pattern:?}");
    registration
}

/// The delivery `audit` got of the message `id`.
fn audited(id: MessageId) -> Delivery {
    let audited = AUDITED.lock().unwrap();
    audited.iter().find(|d| d.message.id == id).cloned().unwrap_or_else(|| panic!("{id} was not audited"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registered_handler_can_be_built() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let signup = client.publish("registry.accounts.created", r#"{"account_id":7}"#).await.unwrap();
    let order = client.publish("registry.orders.a", "order").await.unwrap();
    let other = client.publish("registry.other", "audited only").await.unwrap();
    client.publish("unrelated", "nobody's").await.unwrap();

    // A worker that keeps its registered handlers runs each on its pattern.
    let worker = Worker::new(server.url())
        .without_signal_handlers()
        .start_from(StartFrom::Earliest)
        .state(Mailer("hello"));
    let running = RunningWorker::start(worker);
    wait_for(Duration::from_secs(10), "every registered handler to run", || {
        AUDITED.lock().unwrap().len() >= 3
            && !WELCOMED.lock().unwrap().is_empty()
            && !ORDERS.lock().unwrap().is_empty()
    })
    .await;
    server.wait_for_cursor("registered_handlers::audit", other.get(), Duration::from_secs(10)).await;
    running.stop().await.unwrap();
    let ids: Vec<_> = AUDITED.lock().unwrap().iter().map(|d| d.message.id).collect();
    assert_eq!(ids, [signup, order, other], "registry.* got its three messages, once each");
    assert_eq!(*WELCOMED.lock().unwrap(), [(7, "hello")], "the JSON body and the state reached welcome");
    assert_eq!(*ORDERS.lock().unwrap(), [order]);

    // What `make` builds runs the function: given a worker's delivery of a
    // message on its pattern, each handler does what its function does.
    for (pattern, id) in
        [("registry.accounts.*", signup), ("registry.*", other), ("registry.orders.[ab]", order)]
    {
        let handler = (registration(pattern).make)();
        assert!(format!("{handler:?}").contains("BoxedHandler"));
        handler.call(audited(id)).await.unwrap_or_else(|e| panic!("{pattern}: {e}"));
    }
    assert_eq!(*WELCOMED.lock().unwrap(), [(7, "hello"), (7, "hello")]);
    assert_eq!(AUDITED.lock().unwrap().last().map(|d| d.message.id), Some(other));
    assert_eq!(*ORDERS.lock().unwrap(), [order, order]);
    // A delivery the function cannot take fails instead of running it.
    let (registration, not_json) = (registration("registry.accounts.*"), audited(order));
    let err = (registration.make)().call(not_json).await.unwrap_err();
    assert!(matches!(err, remq::Error::Deserialize { .. }), "{err:?}");
    assert_eq!(WELCOMED.lock().unwrap().len(), 2, "welcome did not run on a body it cannot read");
    // The functions themselves are still there, unchanged.
    let _ = (welcome, audit, nested::orders);
}
