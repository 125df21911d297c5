//! A real nginx (Debian `nginx-light`) terminating TLS in front of a
//! server on this machine, with basic auth or an API key check, started by
//! the test on a free port with its own config, pid file and logs in the
//! test's directory (`daemon off`); killed on drop.

use super::{die_with_parent, free_port, TlsFiles};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What nginx asks of clients.
#[derive(Clone, Debug)]
pub enum ProxyAuth {
    /// `auth_basic` with one user; the htpasswd line made with `openssl passwd -apr1`.
    Basic { user: String, password: String },
    /// `Authorization: ApiKey <key>` exactly, else 401 (an nginx `map`).
    ApiKey(String),
}

/// nginx on `127.0.0.1:port` with TLS, proxying to `upstream`.
pub struct TlsProxy {
    child: Option<Child>,
    dir: PathBuf,
    pub port: u16,
    upstream: u16,
    tls: TlsFiles,
    /// `ssl_verify_client on` against the test CA.
    pub verify_client: bool,
}

fn nginx_bin() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("nginx (Debian nginx-light; scripts/test.sh installs it)")
}

impl TlsProxy {
    /// Starts nginx in `dir/nginx` with `auth`, in front of `127.0.0.1:upstream`.
    pub fn start(dir: &Path, tls: &TlsFiles, upstream: u16, auth: ProxyAuth, verify_client: bool) -> TlsProxy {
        let dir = dir.join("nginx");
        std::fs::create_dir_all(&dir).unwrap();
        let mut p = TlsProxy { child: None, dir, port: free_port(), upstream, tls: tls.clone(), verify_client };
        p.write_config(&auth);
        let child = die_with_parent(
            Command::new(nginx_bin())
                .arg("-p")
                .arg(&p.dir)
                .arg("-c")
                .arg(p.dir.join("nginx.conf"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .spawn()
        .expect("start nginx");
        p.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", p.port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen: {}", p.error_log());
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// Requests nginx answered with `status` so far (its access log).
    pub fn answered(&self, status: u16) -> usize {
        let log = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        let want = status.to_string();
        log.lines().filter(|l| l.split(' ').nth(8) == Some(want.as_str())).count()
    }

    /// Rewrites the config with `auth` and reloads it (SIGHUP), as an
    /// operator fixing a password would.
    pub fn reload(&mut self, auth: ProxyAuth) {
        self.write_config(&auth);
        let pid = self.child.as_ref().unwrap().id() as i32;
        unsafe { libc::kill(pid, libc::SIGHUP) };
        std::thread::sleep(Duration::from_millis(500));
    }

    fn write_config(&self, auth: &ProxyAuth) {
        let d = self.dir.display();
        let (map, check) = match auth {
            ProxyAuth::Basic { user, password } => {
                let out = Command::new("openssl").args(["passwd", "-apr1", password]).output().expect("openssl");
                assert!(out.status.success());
                let hash = String::from_utf8(out.stdout).unwrap();
                std::fs::write(self.dir.join("htpasswd"), format!("{user}:{}\n", hash.trim())).unwrap();
                (String::new(), format!("auth_basic \"es\";\n            auth_basic_user_file {d}/htpasswd;"))
            }
            ProxyAuth::ApiKey(key) => (
                format!("map $http_authorization $key_ok {{\n        default 0;\n        \"ApiKey {key}\" 1;\n    }}"),
                "if ($key_ok = 0) { return 401; }".to_string(),
            ),
        };
        let verify = if self.verify_client {
            format!("ssl_client_certificate {};\n        ssl_verify_client on;", self.tls.ca.display())
        } else {
            String::new()
        };
        let conf = format!(
            "user root;\nworker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n    access_log {d}/access.log;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
             \x20   fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\
             \x20   client_max_body_size 200m;\n    {map}\n\
             \x20   server {{\n        listen 127.0.0.1:{port} ssl;\n        ssl_certificate {cert};\n        ssl_certificate_key {key};\n\
             \x20       {verify}\n        location / {{\n            {check}\n            proxy_pass http://127.0.0.1:{up};\n\
             \x20           proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n            proxy_read_timeout 120s;\n        }}\n    }}\n}}\n",
            port = self.port,
            cert = self.tls.server_cert.display(),
            key = self.tls.server_key.display(),
            up = self.upstream,
        );
        std::fs::write(self.dir.join("nginx.conf"), conf).unwrap();
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM: nginx's fast shutdown, which takes its worker along
            // (SIGKILL would leave the worker behind).
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}
