#[remq::handler("events.*", name = "")]
async fn on_event() {}

fn main() {}
