"""A small headless-Chromium driver over the DevTools protocol, for the site's and the lab's browser tests.

It uses the system's Chromium (Debian's ``chromium`` package, ``/usr/bin/chromium``; ``.ci/run`` installs it)
and talks to it over a websocket (``websocket-client``), so nothing downloads a browser and nothing needs the
network. Typical use::

    with serve_directory(Path("build/site")) as base_url, Chromium() as browser:
        page = browser.open(base_url + "index.html")
        page.evaluate("document.title")
        page.screenshot(Path("build/screenshots/index.png"))
        page.console_errors  # JS exceptions, console.error(...), failed loads
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import websocket

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",  # Chromium picks a free port and writes it to DevToolsActivePort
)
WINDOW = (
    1280,
    1600,
)  # CSS pixels of the viewport: wide enough for the site's content column and its sidebars


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or a DevTools command failed or timed out."""


def find_chromium() -> str | None:
    """The path of a Chromium executable, or ``None``."""
    for candidate in CHROMIUM_CANDIDATES:
        path = shutil.which(candidate)
        if path:
            return path
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on a free localhost port (a thread); yields the base URL ending in ``/``."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class Page:
    """One tab: navigate, evaluate JavaScript, type, screenshot; collects console errors as they come."""

    def __init__(self, ws_url: str, timeout: float) -> None:
        self.timeout = timeout
        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self.console_errors: list[str] = []
        self.requests: list[str] = []  # every URL the page asked for since the last goto()
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1], deviceScaleFactor=1,
                  mobile=False)  # fmt: skip

    # -------------------------------------------------------------------------------------------- protocol
    def _receive(self, deadline: float) -> dict[str, Any]:
        self.ws.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            message = json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException as error:
            raise BrowserError("no answer from Chromium in time") from error
        if "method" in message:
            self._note(message)
        return message

    def _note(self, event: dict[str, Any]) -> None:
        """Keep an event; turn exceptions, console errors and failed loads into ``console_errors``."""
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
            return
        if method.startswith("Network."):
            return
        self.events.append(event)
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.console_errors.append(f"uncaught exception: {text.splitlines()[0] if text else '?'}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console_errors.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.console_errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip())

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; returns its result (events that arrive meanwhile are kept)."""
        command_id = next(self.ids)
        self.ws.send(json.dumps({"id": command_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == command_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        """The first event ``method`` not yet consumed (waits for it)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for index, event in enumerate(self.events):
                if event["method"] == method:
                    return self.events.pop(index)
            if time.monotonic() > deadline:
                raise BrowserError(f"no {method} event within {timeout or self.timeout:.0f} s")
            with contextlib.suppress(BrowserError):
                self._receive(min(deadline, time.monotonic() + 0.5))

    # ------------------------------------------------------------------------------------------- actions
    def goto(self, url: str) -> None:
        """Navigate and wait for the load event (all images, scripts and stylesheets of the page)."""
        self.events.clear()
        self.console_errors.clear()
        self.requests.clear()
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"{url}: {result['errorText']}")
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str, timeout: float | None = None) -> Any:
        """The JSON value of a JavaScript expression (promises are awaited); exceptions raise BrowserError."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True,
                           timeout=int(1000 * (timeout or self.timeout)))  # fmt: skip
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript error in {expression[:80]!r}…: {text}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None, interval: float = 0.2) -> Any:
        """Poll ``expression`` until it is truthy; returns its value (``BrowserError`` after ``timeout``)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"still false after {timeout or self.timeout:.0f} s: {expression}")
            time.sleep(interval)

    def type_text(self, text: str) -> None:
        """Type into the focused element, key by key (the keydown/input/keyup events a person's typing fires)."""
        for char in text:
            self.send("Input.dispatchKeyEvent", type="keyDown", text=char, key=char)
            self.send("Input.dispatchKeyEvent", type="keyUp", key=char)

    def double_click(self, x: float, y: float) -> None:
        """A double click at viewport coordinates ``(x, y)``."""
        for count in (1, 2):
            for kind in ("mousePressed", "mouseReleased"):
                self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=count)

    def block_urls(self, patterns: list[str]) -> None:
        """Make requests matching ``patterns`` (``*`` wildcards) fail, as if their host were unreachable."""
        self.send("Network.setBlockedURLs", urls=patterns)

    def screenshot(self, path: Path) -> Path:
        """A PNG of the viewport."""
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self.ws.close()


class Chromium:
    """A headless Chromium process with a throw-away profile; ``open(url)`` gives a :class:`Page`."""

    def __init__(self, executable: str | None = None, timeout: float = 30.0) -> None:
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise BrowserError(
                "Chromium not found (looked for /usr/bin/chromium): install it with "
                "`apt-get update && apt-get install -y chromium` (.ci/run does this on a fresh machine)"
            )
        self.timeout = timeout
        # Chromium's helper processes may still write there for a moment after it exits: cleanup errors are ignored
        self.profile = tempfile.TemporaryDirectory(prefix="chromium-profile-", ignore_cleanup_errors=True)
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self.pages: list[Page] = []

    def __enter__(self) -> Chromium:
        command = [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile.name}",
                   f"--window-size={WINDOW[0]},{WINDOW[1]}", "about:blank"]  # fmt: skip
        log = Path(self.profile.name) / "chromium.log"  # a file, not a pipe: a full pipe would block Chromium
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        port_file = Path(self.profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                message = log.read_text(errors="replace")[-2000:]
                self.__exit__(None, None, None)
                raise BrowserError(f"{self.executable} did not start its DevTools server: {message}")
            time.sleep(0.05)
        self.port = int(port_file.read_text().split()[0])
        return self

    def open(self, url: str = "about:blank") -> Page:
        """A new tab on ``url`` (waits for its load event)."""
        with _urlopen(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT") as response:
            target = json.loads(response.read())
        page = Page(target["webSocketDebuggerUrl"], self.timeout)
        self.pages.append(page)
        if url != "about:blank":
            page.goto(url)
        return page

    def __exit__(self, *exc_info: Any) -> None:
        for page in self.pages:
            with contextlib.suppress(Exception):
                page.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.profile.cleanup()


def _urlopen(url: str, method: str = "GET"):
    import urllib.request

    return urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10)


def wait_for_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers (any HTTP status); fails early if ``process`` exits."""
    import urllib.error

    deadline = time.monotonic() + timeout
    while True:
        try:
            with _urlopen(url):
                return
        except urllib.error.HTTPError:
            return
        except OSError as error:
            if process is not None and process.poll() is not None:
                raise BrowserError(f"the server for {url} exited with code {process.returncode}") from error
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not answer within {timeout:.0f} s ({error})") from error
            time.sleep(0.3)
