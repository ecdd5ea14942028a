//! Throwaway TLS certificates for tests: a CA, a server certificate for
//! `localhost` / 127.0.0.1, and a client certificate, made with `openssl`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// A fresh CA with a server and a client certificate signed by it, as PEM files
/// in a temporary directory (removed on drop).
#[derive(Debug)]
pub struct TlsFiles {
    /// Holds the files.
    dir: TempDir,
}

impl TlsFiles {
    /// Generates the certificates (EC P-256, valid for a day).
    ///
    /// # Errors
    /// When `openssl` is missing or fails.
    pub fn generate() -> io::Result<TlsFiles> {
        let files = TlsFiles { dir: tempfile::Builder::new().prefix("remq-tls-").tempdir()? };
        std::fs::write(files.path("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n")?;
        std::fs::write(files.path("client.ext"), "extendedKeyUsage=clientAuth\n")?;
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        files.openssl(
            &["req", "-x509"],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=remq test CA"],
        )?;
        for name in ["server", "client"] {
            let (key, csr, crt, ext) =
                (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
            let subject = if name == "server" { "/CN=localhost" } else { "/CN=remq test client" };
            files.openssl(&["req"], &ec, &["-keyout", &key, "-out", &csr, "-subj", subject])?;
            files.openssl(
                &["x509", "-req", "-in", &csr],
                &[],
                &[
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &crt,
                    "-days",
                    "1",
                    "-extfile",
                    &ext,
                ],
            )?;
        }
        Ok(files)
    }

    /// The path of one of the files: `ca.crt`, `server.crt`, `server.key`,
    /// `client.crt`, `client.key`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The contents of one of the files.
    ///
    /// # Panics
    /// When the file cannot be read.
    pub fn pem(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn openssl(&self, command: &[&str], key_args: &[&str], rest: &[&str]) -> io::Result<()> {
        let output = Command::new("openssl")
            .args(command)
            .args(key_args)
            .args(rest)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("could not run openssl: {e}")))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "openssl {command:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }
}
