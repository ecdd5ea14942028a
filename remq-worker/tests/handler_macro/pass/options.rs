#[remq::handler("orders.*", name = "billing", retries = 3, timeout = "1500ms", timeout_permanent = true, dead_letter = "dead.billing", concurrency = 8, rate_limit = 100)]
async fn bill(_message: remq::Message) -> remq::Result<()> {
    Ok(())
}

fn main() {
    let registration = remq::__private::registrations().find(|r| r.name == "billing").expect("registered");
    assert_eq!(registration.options.retries, Some(3));
    assert_eq!(registration.options.timeout, Some(std::time::Duration::from_millis(1500)));
    assert_eq!(registration.options.dead_letter, Some("dead.billing"));
    assert_eq!(registration.options.concurrency, Some(8));
    assert_eq!(registration.options.rate_limit, Some(100));
    assert_eq!(registration.options.timeout_permanent, Some(true));
    let _ = bill;
}
