#[remq::handler("events.*")]
fn on_event(message: remq::Message) {
    let _ = message;
}

fn main() {
    on_event(remq::Message::new(remq::MessageId::ZERO, "c", ""));
}
