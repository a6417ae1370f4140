"""docs/DEPLOY.md run as written: its environment file read by the shell as the CLI and cron
read it, and its nginx site by the nginx this machine has (Debian 12's is 1.22): it must load,
serve the shop by its name, and let Prometheus scrape /metrics the way the document's scrape
config says (skipped without nginx and openssl)."""
from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docs" / "DEPLOY.md"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def test_the_environment_file_reads_the_same_in_the_shell_with_a_tls_database_url(tmp_path):
    """Section 4's /etc/shop/shop.env, with section 2's TLS database URL in it, loaded as the
    document says for the CLI and cron (`set -a; . /etc/shop/shop.env; set +a`): every
    variable keeps the value systemd reads (quotes stripped), the URL's `&` included."""
    doc = DEPLOY.read_text()
    tls_url = re.search(r"`(mysql\+pymysql://[^`]*&ssl_ca=[^`]*)`", doc).group(1)
    env_file = doc.split("`/etc/shop/shop.env`", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    line = re.search(r"^DATABASE_URL=(.*)$", env_file, flags=re.M).group(1)
    quote = line[0] if line[0] in "'\"" else ""
    env_file = env_file.replace(f"DATABASE_URL={line}", f"DATABASE_URL={quote}{tls_url}{quote}")
    env_file = re.sub(r"<[^>]*>", "placeholder", env_file)  # SECRET_KEY=<python3 -c ...>
    (tmp_path / "shop.env").write_text(env_file)
    expected = {}
    for assignment in env_file.splitlines():
        if "=" in assignment and not assignment.startswith("#"):
            name, value = assignment.split("=", 1)
            expected[name] = value[1:-1] if value[:1] in "'\"" and value[-1:] == value[:1] \
                else value
    shown = subprocess.run(
        ["sh", "-c", f"set -a; . {tmp_path / 'shop.env'}; set +a; env"],
        env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True).stdout
    got = dict(item.split("=", 1) for item in shown.splitlines() if "=" in item)
    assert expected["DATABASE_URL"] == tls_url
    assert {name: got.get(name) for name in expected} == expected


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream(BaseHTTPRequestHandler):
    """Stands in for gunicorn: says which path and Host it was asked for."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = f"upstream {self.path} {self.headers.get('Host')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args) -> None:
        pass


def deploy_nginx_site(ports: dict[str, int], folder: Path, upstream: int) -> str:
    """The document's nginx blocks for /etc/nginx/sites-available/shop, on local ports."""
    doc = DEPLOY.read_text()
    after = doc.split("`/etc/nginx/sites-available/shop`", 1)[1]
    site = "".join(block.split("```", 1)[0] for block in after.split("```nginx\n")[1:]
                   if "shop_app" in block.split("```", 1)[0])
    site = re.sub(r"^\s*listen \[::\].*$", "", site, flags=re.M)
    site = re.sub(r"listen (?:[\d.]+:)?(\d+)",
                  lambda m: f"listen 127.0.0.1:{ports.setdefault(m.group(1), free_port())}", site)
    certs = "/etc/letsencrypt/live/shop.example.com/"
    return (site.replace("127.0.0.1:8000", f"127.0.0.1:{upstream}")
            .replace("allow 10.0.0.30;", "allow 127.0.0.1;")
            .replace(certs + "fullchain.pem", str(folder / "cert.pem"))
            .replace(certs + "privkey.pem", str(folder / "key.pem"))
            .replace("/var/log/nginx/", f"{folder}/")
            .replace("/var/www/letsencrypt", str(folder)))


def get(port: int, path: str, host: str, *, tls: bool, sni: str | None = None) -> str:
    """A raw HTTP/1.1 GET to 127.0.0.1:port with this Host (and TLS server name)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            raw = context.wrap_socket(raw, server_hostname=sni or host.split(":")[0])
        raw.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
                    f"Authorization: Bearer t\r\n\r\n".encode())
        data = b""
        while chunk := raw.recv(65536):
            data += chunk
        return data.decode(errors="replace")
    finally:
        raw.close()


@pytest.mark.slow
@pytest.mark.skipif(NGINX is None or not shutil.which("openssl"), reason="needs nginx and openssl")
def test_the_documented_nginx_site_loads_and_prometheus_can_scrape_as_documented(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=shop.example.com", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True)
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    ports: dict[str, int] = {}
    site = deploy_nginx_site(ports, tmp_path, upstream.server_address[1])
    temp = " ".join(f"{kind}_temp_path {tmp_path}/{kind};"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n{temp}\naccess_log {tmp_path}/access.log;\n{site}\n}}\n")
    command = [str(NGINX), "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    subprocess.run(command, check=True)
    try:
        # The shop by its name, over TLS.
        page = get(ports["443"], "/products", "shop.example.com", tls=True)
        assert page.startswith("HTTP/1.1 200") and "upstream /products" in page
        # Prometheus, as the scrape config in section 10 says: each target, its scheme.
        doc = DEPLOY.read_text()
        scrape = doc.split("scrape_configs:", 1)[1].split("```", 1)[0]
        tls = re.search(r"scheme:\s*https", scrape) is not None
        targets = re.findall(r'"([^"]+:\d+)"', re.search(r"targets:\s*\[([^\]]*)\]",
                                                          scrape).group(1))
        assert targets
        for target in targets:
            port = target.rsplit(":", 1)[1]
            assert port in ports, f"no nginx server listens on {target}'s port"
            try:
                answer = get(ports[port], "/metrics", target, tls=tls)
            except (ssl.SSLError, OSError) as exc:
                answer = f"refused: {exc}"
            assert answer.startswith("HTTP/1.1 200") and "upstream /metrics" in answer, \
                (target, answer[:200])
        # From outside, through the shop's name, /metrics is not served.
        assert not get(ports["443"], "/metrics", "shop.example.com", tls=True).startswith(
            "HTTP/1.1 200")
    finally:
        subprocess.run([*command, "-s", "stop"], capture_output=True)
        upstream.shutdown()


def test_prometheus_scrapes_the_worker_where_the_worker_serves_and_cron_counts_into_it():
    """Section 8's worker unit serves /metrics where section 10's `shop-worker` scrape job
    looks, and section 8's cron lines count into the worker's directory."""
    doc = DEPLOY.read_text()
    unit = doc.split("`/etc/systemd/system/shop-worker.service`", 1)[1].split("```", 2)[1]
    env = dict(re.findall(r"(\w+)=(\S+)", re.search(r"^Environment=(.*)$", unit,
                                                     flags=re.M).group(1)))
    assert "StateDirectory=shop-worker" in unit
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/var/lib/shop-worker/")
    scrape = doc.split("scrape_configs:", 1)[1].split("```", 1)[0]
    worker_job = scrape.split("job_name: shop-worker", 1)[1]
    targets = re.findall(r'"([^"]+:\d+)"', re.search(r"targets:\s*\[([^\]]*)\]",
                                                      worker_job).group(1))
    assert targets == [env["SHOP_WORKER_METRICS_BIND"]]
    cron = re.findall(r"^echo '(.*flask --app wsgi (?:expire-orders|cleanup))'", doc, flags=re.M)
    assert len(cron) == 2
    assert all(f"PROMETHEUS_MULTIPROC_DIR={env['PROMETHEUS_MULTIPROC_DIR']} " in line
               for line in cron)


def test_every_setting_the_shop_reads_is_documented_in_one_readable_table():
    """A setting read from the environment but named in no doc cannot be found by whoever
    runs the shop (SHOP_CACHE_KEY_PREFIX and SHOP_REMEMBER_DAYS were); and a paragraph left
    inside the README's table ended it there, so the rows after it showed as loose text."""
    config = (ROOT / "config.py").read_text()
    read = set(re.findall(r"\"((?:SHOP|DATABASE|REDIS|STRIPE|MAIL)_[A-Z0-9_]+)\"", config))
    read -= {"SHOP_TEST_RATELIMIT"}  # the test suite's own switch
    readme, deploy = (ROOT / "README.md").read_text(), DEPLOY.read_text()
    deploy_rows = "\n".join(line for line in deploy.splitlines() if line.startswith("|"))
    assert read and not {name for name in read if f"`{name}`" not in deploy_rows}
    assert not {name for name in read if f"`{name}`" not in readme}
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    block = section[section.index(rows[0]):section.index(rows[-1]) + len(rows[-1])]
    assert block.splitlines() == rows, "the configuration table is broken by other lines"


def test_every_test_security_md_cites_exists():
    """SECURITY.md answers each threat with the tests that prove it: a name there that no test
    has (one had been renamed) proves nothing. `test_register_*` stands for every test whose
    name starts so."""
    cited = set(re.findall(r"`(test_[a-z0-9_]+\*?)`", (ROOT / "docs" / "SECURITY.md").read_text()))
    defined = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        defined |= set(re.findall(r"^\s*def (test_[a-z0-9_]+)\(", path.read_text(), flags=re.M))
    assert cited
    missing = {name for name in cited
               if not (any(d.startswith(name[:-1]) for d in defined) if name.endswith("*")
                       else name in defined)}
    assert not missing, missing
