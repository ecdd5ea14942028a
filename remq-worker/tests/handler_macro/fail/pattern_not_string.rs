#[remq::handler(events.created)]
async fn on_event() {}

fn main() {}
