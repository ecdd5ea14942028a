use remq::Json;

#[remq::handler("events.*")]
async fn on_event<T: serde::de::DeserializeOwned + Send + 'static>(Json(event): Json<T>) {
    let _ = event;
}

#[remq::handler("orders.*")]
async fn on_order(body: String)
where
    String: Send,
{
    let _ = body;
}

fn main() {}
