//! `#[remq::handler]` registers each function with its pattern and name. That
//! the registered handler runs the function is checked in the root package's
//! `tests/registered_handlers.rs`, which has a redis-server for a worker to
//! make the deliveries (`Delivery` has no public constructor).

use remq::__private::{Registration, registrations};
use remq::{Json, Message, State};

#[derive(serde::Deserialize)]
struct Signup {
    account_id: u64,
}

#[derive(Clone)]
struct Mailer;

#[remq::handler("registry.accounts.*", name = "registry-welcome")]
async fn welcome(Json(signup): Json<Signup>, State(mailer): State<Mailer>) -> Result<(), remq::Error> {
    let _ = (signup.account_id, mailer);
    Ok(())
}

#[remq::handler("registry.*")]
async fn audit(message: Message) {
    let _ = message;
}

mod nested {
    #[remq::handler("registry.orders.[ab]")]
    pub(crate) async fn r#orders() {}
}

/// The registration of the handler consuming `pattern`.
fn registration(pattern: &str) -> &'static Registration {
    let mut found = registrations().filter(|r| r.pattern == pattern);
    let registration = found.next().unwrap_or_else(|| panic!("no handler registered for {pattern:?}"));
    assert!(found.next().is_none(), "two handlers registered for {pattern:?}");
    registration
}

#[test]
fn an_explicit_name_is_kept() {
    assert_eq!(registration("registry.accounts.*").name, "registry-welcome");
}

#[test]
fn the_default_name_is_the_function_path() {
    assert_eq!(registration("registry.*").name, "handler_registry::audit");
    assert_eq!(registration("registry.orders.[ab]").name, "handler_registry::nested::orders");
}

#[test]
fn every_handler_is_registered_once() {
    let mut ours: Vec<_> =
        registrations().filter(|r| r.pattern.starts_with("registry.")).map(|r| (r.pattern, r.name)).collect();
    ours.sort_unstable();
    assert_eq!(
        ours,
        [
            ("registry.*", "handler_registry::audit"),
            ("registry.accounts.*", "registry-welcome"),
            ("registry.orders.[ab]", "handler_registry::nested::orders"),
        ]
    );
}
