#[remq::handler("events.*", retry = 5)]
async fn on_event() {}

fn main() {}
