#[remq::handler("orders.*", name = "billing")]
async fn bill(body: String) {
    let _ = body;
}

// Trailing comma, raw identifier.
#[remq::handler("orders.paid", name = "receipts",)]
async fn r#ref(_id: remq::MessageId, _channel: remq::Channel, _body: remq::Body) {}

fn main() {}
