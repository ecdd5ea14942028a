struct Service;

impl Service {
    #[remq::handler("events.*")]
    async fn on_event(&self, message: remq::Message) {
        let _ = message;
    }
}

fn main() {}
