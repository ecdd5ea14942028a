#[remq::handler("*")]
async fn ping() {}

mod nested {
    #[remq::handler("heartbeat.?")]
    pub(crate) async fn beat() -> Result<(), std::io::Error> {
        Ok(())
    }
}

fn main() {
    let _ = (ping, nested::beat);
}
