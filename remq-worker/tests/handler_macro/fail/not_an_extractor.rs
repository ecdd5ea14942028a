#[remq::handler("events.*")]
async fn on_event(message: remq::Message, x: u32) {
    let _ = (message, x);
}

fn main() {}
