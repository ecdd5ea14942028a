#[remq::handler("events.*
")]
async fn on_event() {}

fn main() {}
