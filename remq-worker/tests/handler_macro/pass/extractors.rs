use remq::{Json, Message, State};

#[derive(serde::Deserialize)]
struct AccountCreated {
    account_id: u64,
}

#[derive(Clone)]
struct Db;

#[remq::handler("events.accounts.*")]
async fn on_account(
    Json(event): Json<AccountCreated>,
    message: Message,
    State(db): State<Db>,
) -> Result<(), remq::Error> {
    let _ = (event.account_id, message.id, db);
    Ok(())
}

fn main() {
    // The function is still there, unchanged, to be called directly.
    let _ = on_account;
}
