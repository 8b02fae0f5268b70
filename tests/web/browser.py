"""The browser for web console tests (issue 21): Debian's chromium, headless, driven by
selenium through chromium-driver (both installed by .ci/run), against a real App.

`browser` (a pytest fixture; import it into a test module or use it through
tests/web/conftest.py) gives a `Browser` with a fresh profile per test. The browser
trusts exactly the test server's certificate (`--ignore-certificate-errors-spki-list`
with its key's SHA-256, nothing else), so Secure/`__Host-` cookies work as in production.
`Browser.screenshot(name)` writes test-output/screenshots/NAME.png at the repository
root, for a person to look at (README "Web console").
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.server import AppThread

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-output" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT = 20.0  # seconds a page may take to appear (a loaded CI machine)


def spki_hash(cert_path: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of the first certificate in `cert_path`."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class Browser:
    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver
        self.base = ""

    def use(self, app: AppThread) -> Browser:
        self.base = f"https://127.0.0.1:{app.port('web')}"
        return self

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    @property
    def path(self) -> str:
        url = self.driver.current_url
        return url[len(self.base):] if url.startswith(self.base) else url

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def finds(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def fill(self, fields: dict[str, str]) -> None:
        """Type into the inputs named by the keys (cleared first)."""
        for name, value in fields.items():
            element = self.find(f'[name="{name}"]')
            element.clear()
            element.send_keys(value)

    def submit(self, css: str = "main form button[type=submit]") -> None:
        """Click a submit button and wait for the next page."""
        old = self.find("html")
        self.find(css).click()
        WebDriverWait(self.driver, WAIT).until(lambda _: _is_stale(old))

    def text(self) -> str:
        return self.find("body").text

    def login(self, address: str, password: str) -> None:
        self.open("/login")
        self.fill({"address": address, "password": password})
        self.submit()

    def console_errors(self) -> list[str]:
        """The browser console's errors since the last call: a Content-Security-Policy
        violation (an inline script or style slipped into a template) shows up here."""
        return [entry["message"] for entry in self.driver.get_log("browser")
                if entry["level"] == "SEVERE"]

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        return path


def _is_stale(element: WebElement) -> bool:
    try:
        element.is_enabled()
    except Exception:  # StaleElementReferenceException: the page was replaced
        return True
    return False


@pytest.fixture
def browser(server_cert: tuple[Path, Path], tmp_path: Path) -> Iterator[Browser]:
    """A headless chromium with its own profile, trusting the test server certificate."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900",
                     "--no-first-run", "--disable-extensions",
                     f"--user-data-dir={tmp_path / 'chromium-profile'}",
                     f"--ignore-certificate-errors-spki-list={spki_hash(server_cert[0])}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield Browser(driver)
    finally:
        driver.quit()
