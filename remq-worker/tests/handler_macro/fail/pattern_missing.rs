#[remq::handler]
async fn on_event() {}

#[remq::handler(name = "billing")]
async fn on_order() {}

fn main() {
    // No "cannot find function" errors here: the functions are still emitted.
    let _ = (on_event, on_order);
}
