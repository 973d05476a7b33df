//! The built-in broadcast on a loopback port: an in-process tuner simulator serving the built-in
//! clip, for commands that run with no hardware (`record` without `--input`, the demo).

use crate::capture::Source;
use crate::hdhr::sim::server::{BindError, Server};
use crate::hdhr::sim::Simulator;
use crate::hdhr::GuideNumber;
use crate::stop::StopFlag;
use std::net::{Ipv4Addr, SocketAddr};
use std::thread::JoinHandle;

/// A running in-process simulator; stops when dropped.
pub struct LocalTuner {
    addr: SocketAddr,
    stop: StopFlag,
    thread: Option<JoinHandle<()>>,
}

impl LocalTuner {
    /// Starts the built-in broadcast on `127.0.0.1` and a free port.
    pub fn start() -> Result<LocalTuner, BindError> {
        let server = Server::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = server.local_addr();
        let stop = StopFlag::default();
        let thread = std::thread::Builder::new()
            .name("tuner-sim".into())
            .spawn({
                let stop = stop.clone();
                move || server.run(&Simulator::builtin(), &stop)
            })
            .map_err(BindError::Listener)?;
        Ok(LocalTuner {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Its HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The source that captures channel 5.1 from it.
    pub fn source(&self) -> Source {
        Source::Hdhr {
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
            guide: GuideNumber::parse("5.1").expect("5.1 is a valid guide number"),
        }
    }
}

impl Drop for LocalTuner {
    fn drop(&mut self) {
        self.stop.set();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
