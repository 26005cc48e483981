"""Issue #26 item 3: another user binds llmtray's port first and answers /v1/health like llmtray.
`llmtray serve` must not take it for "llmtray already running" (the user's proxy clients would
send it `Authorization: Bearer sk-…`): it says plainly whose it is, and the app's onboarding
refuses to point clients at it. Real processes: the squatter runs as another uid (needs root)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from llmtray.ingest.portowner import listener_uid

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/net/tcp")
ROOT = os.geteuid() == 0

SQUATTER = textwrap.dedent("""
    import encodings.idna, json, os, sys  # all loaded before the switch to a user who cannot read them
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "ok", "version": "0.9.0"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    os.setgid(65534); os.setuid(65534)  # another user ("nobody") from here on
    server = HTTPServer(("127.0.0.1", 0), Health)
    print(server.server_address[1], flush=True)
    server.serve_forever()
""")


def test_the_listener_of_a_port_is_known_by_uid():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert listener_uid(s.getsockname()[1]) == os.geteuid()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: nobody to connect to
        assert listener_uid(s.getsockname()[1]) is None


@pytest.mark.skipif(not ROOT, reason="running the squatter as another user needs root")
def test_serve_names_another_users_program_on_its_port_instead_of_handing_over(data_dir):
    squatter = subprocess.Popen([sys.executable, "-c", SQUATTER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(squatter.stdout.readline())
        assert listener_uid(port) == 65534
        done = subprocess.run([sys.executable, "-m", "llmtray", "--data-dir", str(data_dir), "serve", "--port",
                               str(port)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert (f"another user's program (uid 65534) holds port {port} on 127.0.0.1 — your proxy clients would "
                "send it their API keys") in done.stderr
        assert "already running" not in done.stderr
        assert not (data_dir / "ingest.json").exists()  # nothing announces the squatter to the hooks
    finally:
        squatter.kill()
        squatter.communicate()


def test_onboarding_refuses_to_show_a_squatted_port(qtbot):
    from llmtray.gui.onboarding import Onboarding

    panel = Onboarding(None, can_import=True)
    qtbot.addWidget(panel)
    panel.resize(900, 420)
    panel.show()
    text = panel.proxy.text.text()
    assert text.startswith("Not available: another user's program holds llmtray's port")
    assert "http" not in text and not panel.proxy.copy.isEnabled()
    panel.grab().save("/tmp/llmtray-onboarding-squatted.png")
    panel.set_base_url("http://127.0.0.1:8801")
    assert "http://127.0.0.1:8801/proxy/openai/v1" in panel.proxy.text.text() and panel.proxy.copy.isEnabled()
