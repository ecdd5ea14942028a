#[remq::handler("events.*")]
fn on_event(message: remq::Message) {
    let _ = message;
}

fn main() {
    on_event(remq::Message { id: remq::MessageId::ZERO, channel: String::new(), body: Default::default() });
}
