"""PHP for the FastCGI tests: where php-cgi and php-fpm are, the scripts, a site
serving them, the php-cgi processes alive now."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.handlers.fastcgi.kit import processes, site
from tests.support.wait import PATIENCE, wait_for

PHP_CGI = shutil.which("php-cgi")
PHP_FPM = next(iter(sorted(glob.glob("/usr/sbin/php-fpm*"))), None) or shutil.which("php-fpm")


#: Skips a test module without php-cgi, saying how to get it.
NEEDS_PHP = pytest.mark.skipif(
    PHP_CGI is None, reason="php-cgi is not installed (make sysdeps installs it)"
)

SCRIPTS = {
    "form.php": """<?php
header('Content-Type: application/json');
echo json_encode(['post' => $_POST, 'get' => $_GET, 'method' => $_SERVER['REQUEST_METHOD']]);
""",
    "stream.php": """<?php
// hash_update_stream over php://input, as the issue asks
$ctx = hash_init('sha256');
$n = hash_update_stream($ctx, fopen('php://input', 'rb'));
echo $n, ' ', hash_final($ctx);
""",
    "download.php": """<?php
header('Content-Type: application/octet-stream');
$n = (int)$_GET['mib'];
$block = str_repeat('0123456789abcdef', 65536);  // 1 MiB
for ($i = 0; $i < $n; $i++) { echo $block; flush(); }
""",
    "session.php": """<?php
session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
echo $_SESSION['n'];
""",
    "headers.php": """<?php
http_response_code(201);
header('X-Powered-Test: yes');
setcookie('a', 'one');
setcookie('b', 'two', ['httponly' => true, 'path' => '/']);
echo 'made';
""",
    "redirect.php": """<?php
header('Location: /form.php?from=redirect');
""",
    "notfound.php": """<?php
header('Status: 404 Not Found');
echo 'gone';
""",
    "info.php": "<?php phpinfo();",
    "server.php": """<?php
header('Content-Type: application/json');
echo json_encode(['server' => $_SERVER, 'pid' => getmypid()]);
""",
    "fatal.php": "<?php undefined_function_here();",
}


def make_tree(base: Path) -> Path:
    www = base / "www"
    (www / "uploads").mkdir(parents=True, exist_ok=True)
    for name, text in SCRIPTS.items():
        (www / name).write_text(text)
    (www / "uploads" / "evil.jpg").write_text("<?php echo 'executed'; ?>")
    (base / "sessions").mkdir(exist_ok=True)
    return base


def php_cgi(base: Path, **more: Any) -> dict[str, Any]:
    assert PHP_CGI is not None
    return {
        "program": PHP_CGI,
        "arguments": [
            "-d",
            f"session.save_path={base / 'sessions'}",
            "-d",
            "output_buffering=0",
            "-d",
            "post_max_size=0",
            "-d",
            "display_errors=0",
            "-d",
            "log_errors=1",
        ],
        "max_instances": 2,
        **more,
    }


def config(app: dict[str, Any]) -> dict[str, Any]:
    return site(app, {"path": "*.php", "handler": "handler.fastcgi", "resource_type": "file"})


def php_pids() -> set[int]:
    return processes(lambda pid: "php-cgi" in os.readlink(f"/proc/{pid}/exe"))


@contextlib.contextmanager
def php_fpm(folder: Path, children: int = 2) -> Iterator[Path]:
    """php-fpm with a configuration of its own in ``folder``, listening on a Unix
    socket there (yielded); skips the test where php-fpm is missing."""
    if PHP_FPM is None:
        pytest.skip("php-fpm is not installed (make sysdeps installs it)")
    sock = folder / "fpm.sock"
    conf = folder / "fpm.conf"
    conf.write_text(
        f"""[global]
error_log = {folder / "fpm.log"}
daemonize = no
pid = {folder / "fpm.pid"}

[test]
listen = {sock}
user = root
group = root
pm = static
pm.max_children = {children}
"""
    )
    proc = subprocess.Popen([PHP_FPM, "-n", "-R", "-y", str(conf), "-F"])
    try:
        wait_for(lambda: sock.exists() or proc.poll() is not None, PATIENCE, "php-fpm listening")
        assert proc.poll() is None, (folder / "fpm.log").read_text()
        yield sock
    finally:
        proc.terminate()
        proc.wait(PATIENCE)
