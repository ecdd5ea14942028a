#[remq::handler("events.*", name = "billing", name = "receipts")]
async fn on_event() {}

fn main() {}
