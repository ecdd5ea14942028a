#[remq::handler("events.*", timeout = "soon")]
async fn bad_timeout() {}

#[remq::handler("events.*", retries = -1)]
async fn bad_retries() {}

#[remq::handler("events.*", dead_letter = "dead.*")]
async fn bad_dead_letter() {}

fn main() {}
