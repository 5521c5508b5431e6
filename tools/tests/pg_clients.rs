//! Software we did not write against `journeydb serve`: psql's `\dt`, `\d`, `\d TABLE`, `\l`, `\dn`
//! see the tables with their real types; psql's parameters and quoted literals keep their quotes;
//! the Python drivers (psycopg2, psycopg 3, pg8000, asyncpg) and SQLAlchemy connect,
//! introspect and round-trip values with quotes through bound parameters
//! (`tests/clients/drivers.py`); pgjdbc does the same and pages with a fetch size
//! (`tests/clients/Jdbc.java`); TLS on both ports. `scripts/test.sh` installs psql and the drivers; a missing one
//! fails this test, it is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `journeydb serve` with a token; returns it and the PostgreSQL port.
fn serve(db: &std::path::Path) -> (Server, String) {
    let (s, _, pg) = serve_with(db, &[]);
    (s, pg)
}

/// Starts `journeydb serve` with a token and `extra` options; returns it, the native address
/// and the PostgreSQL port.
fn serve_with(db: &std::path::Path, extra: &[&str]) -> (Server, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["serve", "--db"])
        .arg(db)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--pg-listen",
            "127.0.0.1:0",
            "--token",
            "s3cret",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pg = line
        .split("PostgreSQL protocol on ")
        .nth(1)
        .and_then(|r| r.split([',', ' ', '\n']).next())
        .expect("the PostgreSQL address in the banner");
    let port = pg.rsplit(':').next().unwrap().to_string();
    let native = line
        .split(" on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the native address in the banner")
        .to_string();
    (Server(child), native, port)
}

fn psql(port: &str, commands: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new("psql");
    cmd.args([
        "-X",
        "-h",
        "127.0.0.1",
        "-p",
        port,
        "-U",
        "analyst",
        "-d",
        "journeydb",
    ])
    .args(["-v", "ON_ERROR_STOP=1"])
    .env("PGPASSWORD", "s3cret")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for c in commands {
        cmd.args(["-c", c]);
    }
    let mut child = cmd
        .spawn()
        .expect("psql is installed (scripts/test.sh installs postgresql-client)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "psql {commands:?} failed:\n{text}");
    text
}

#[test]
fn psql_sees_the_catalog_and_keeps_quotes() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = serve(&dir.path().join("db"));
    psql(
        &port,
        &[
            "CREATE TABLE onboarding (customer_id VARCHAR PRIMARY KEY, stage1 TIMESTAMP MERGE MIN, score DOUBLE MERGE MAX, n BIGINT MERGE SUM, active BOOLEAN MERGE LAST, country VARCHAR MERGE LAST)",
            "INSERT INTO onboarding (customer_id, n, country) VALUES ('O''Brien', 1, 'L''Aquila')",
        ],
        None,
    );
    let dt = psql(&port, &["\\dt"], None);
    assert!(dt.contains("public | onboarding | table"), "{dt}");
    // A table created a moment ago shows up: no special case for any query text.
    psql(&port, &["CREATE TABLE later (k VARCHAR PRIMARY KEY)"], None);
    let d = psql(&port, &["\\d"], None);
    assert!(d.contains("onboarding") && d.contains("later"), "{d}");
    let dt = psql(&port, &["\\d onboarding"], None);
    for line in [
        "Table \"public.onboarding\"",
        "customer_id | character varying           |           | not null |",
        "stage1      | timestamp without time zone |",
        "score       | double precision            |",
        "n           | bigint                      |",
        "active      | boolean                     |",
    ] {
        assert!(dt.contains(line), "\\d onboarding lacks {line:?}:\n{dt}");
    }
    // The token is proved by SCRAM: a wrong one is refused.
    let wrong = Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "analyst",
            "-d",
            "journeydb",
            "-c",
            "SELECT 1",
        ])
        .env("PGPASSWORD", "not-the-token")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("password authentication failed"));
    let l = psql(&port, &["\\l"], None);
    assert!(l.contains("journeydb") && l.contains("UTF8"), "{l}");
    let dn = psql(&port, &["\\dn"], None);
    assert!(dn.contains("public"), "{dn}");
    // Quotes survive literals; \gdesc describes a statement with a parameter (extended protocol).
    // (Bound parameters are checked through the drivers below: psql 15 has no \bind.)
    let out = psql(
        &port,
        &[],
        Some(
            "SELECT n FROM onboarding WHERE country = 'L''Aquila';\n\
             SELECT count(*) AS injected FROM onboarding WHERE country = 'zzz'' OR ''1''=''1';\n\
             SELECT customer_id FROM onboarding WHERE n = $1 \\gdesc\n",
        ),
    );
    assert!(out.starts_with(" n \n---\n 1\n(1 row)"), "{out}");
    assert!(out.contains("injected \n----------\n        0"), "{out}");
    assert!(out.contains("customer_id |"), "{out}");
    // psql's \copy: CSV with a header, quotes, commas and newlines inside fields; all or nothing.
    let csv = dir.path().join("in.csv");
    std::fs::write(
        &csv,
        "customer_id,n,country\nc1,1,\"Rome, \"\"Italy\"\"\"\nc2,2,\"two\nlines\"\nc3,,\n",
    )
    .unwrap();
    let out = psql(
        &port,
        &[
            &format!("\\copy onboarding (customer_id, n, country) FROM '{}' CSV HEADER", csv.display()),
            "SELECT customer_id, n, country FROM onboarding WHERE customer_id BETWEEN 'c' AND 'cz' ORDER BY customer_id",
        ],
        None,
    );
    assert!(out.contains("COPY 3"), "{out}");
    assert!(out.contains("Rome, \"Italy\""), "{out}");
    assert!(
        out.contains("two          +\n             |   | lines"),
        "{out}"
    );
    assert!(
        out.contains(" c3          |   | \n"),
        "an empty CSV field is NULL: {out}"
    );
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "customer_id,n\nd1,1\nd2,not-a-number\n").unwrap();
    let failed = Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "analyst",
            "-d",
            "journeydb",
            "-c",
        ])
        .arg(format!(
            "\\copy onboarding (customer_id, n) FROM '{}' CSV HEADER",
            bad.display()
        ))
        .env("PGPASSWORD", "s3cret")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        !failed.status.success() && err.contains("line 3") && err.contains("column n"),
        "{err}"
    );
    let none = psql(
        &port,
        &["SELECT count(*) FROM onboarding WHERE customer_id BETWEEN 'd' AND 'dz'"],
        None,
    );
    assert!(
        none.contains("     0\n"),
        "a failed COPY committed rows: {none}"
    );
    // Text format from standard input.
    let out = psql(
        &port,
        &[],
        Some("COPY onboarding (customer_id, country) FROM STDIN;\nt1\ttab\\there\nt2\t\\N\n\\.\nSELECT count(*) FROM onboarding WHERE customer_id BETWEEN 't' AND 'tz' AND country IS NULL;\n"),
    );
    assert!(out.contains("COPY 2") && out.contains("     1\n"), "{out}");
    // SELECT 1, version(), SHOW and SET, as health checks and drivers send them.
    let misc = psql(
        &port,
        &[
            "SELECT 1 AS one",
            "SELECT version()",
            "SHOW server_version",
            "SET application_name = 'ci'",
        ],
        None,
    );
    assert!(
        misc.contains("one") && misc.contains("journeydb") && misc.contains("14.0"),
        "{misc}"
    );
}

#[test]
fn python_drivers_and_sqlalchemy() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = serve(&dir.path().join("db"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/drivers.py");
    let out = Command::new("python3")
        .args([script, "127.0.0.1", &port, "s3cret"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "drivers.py failed:\n{text}");
    assert!(text.contains("checks passed"), "{text}");
}

/// A CA and a server certificate for `localhost` / 127.0.0.1 signed by it, made with openssl.
fn certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=journeydb test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[test]
fn tls_on_both_ports() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    let (_server, native, port) = serve_with(
        &dir.path().join("db"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    // psql with sslmode=require: the session is encrypted.
    let out = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} user=u dbname=journeydb sslmode=require"
        ))
        .args(["-X", "-c", "SELECT 40 + 2 AS answer", "-c", "\\conninfo"])
        .env("PGPASSWORD", "s3cret")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("42") && text.contains("SSL connection"),
        "{text}"
    );
    // Verified against the CA, as a careful client does.
    let out = Command::new("psql")
        .arg(format!(
            "host=localhost port={port} user=u dbname=journeydb sslmode=verify-full sslrootcert={}",
            dir.path().join("ca.pem").display()
        ))
        .args(["-X", "-c", "SELECT 1"])
        .env("PGPASSWORD", "s3cret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The native port speaks only TLS: the shell connects with the CA, and not without TLS.
    let ok = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args(["sql", "--connect", &native, "--token", "s3cret", "--tls-ca"])
        .arg(dir.path().join("ca.pem"))
        .args(["--format", "csv", "-c", "SELECT 7 AS seven"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "seven\n7\n");
    let plain = Command::new(env!("CARGO_BIN_EXE_journeydb"))
        .args([
            "sql",
            "--connect",
            &native,
            "--token",
            "s3cret",
            "-c",
            "SELECT 1",
        ])
        .output()
        .unwrap();
    assert!(!plain.status.success());
}

#[test]
fn jdbc_driver() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = serve(&dir.path().join("db"));
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/Jdbc.java");
    let out = Command::new("java")
        .args([
            "-cp",
            "/usr/share/java/postgresql.jar",
            source,
            &port,
            "s3cret",
        ])
        .output()
        .expect(
            "java is installed (scripts/test.sh installs pgjdbc; Java 17 comes with the machine)",
        );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "Jdbc.java failed:\n{text}");
    assert!(text.contains("checks passed"), "{text}");
}
