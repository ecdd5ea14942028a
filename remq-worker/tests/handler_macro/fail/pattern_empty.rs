#[remq::handler("")]
async fn on_event() {}

fn main() {}
