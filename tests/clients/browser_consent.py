#!/usr/bin/env python3
"""A tenant admin grants consent to a multi-tenant app in a real browser (seed 002's story).

Run by emulator/tests/browser_and_msal_user_flows.rs (through scripts/test.sh, which installs
Debian's chromium + chromium-driver and the pinned Selenium of tests/clients/requirements.txt).
Headless Chromium, driven by Selenium through the given chromedriver: Selenium Manager never
runs and nothing is downloaded.

The browser talks to the emulator's plain-HTTP listener. The sign-in and consent pages work
over http too (the session cookie then carries no Secure flag), so the browser needs neither
the emulator's CA in an NSS store nor --ignore-certificate-errors; the token and control-plane
calls of the test itself go over HTTPS, trusting the emulator's CA.

Inputs, all from the environment:

  M365EMU_HTTP_URL        emulator plain-HTTP base URL, e.g. http://127.0.0.1:41235
  M365EMU_CLIENT_ID       the app asking for consent (the audit collector)
  M365EMU_RESOURCE        the v1 resource, e.g. https://manage.office.com
  M365EMU_REDIRECT_URI    a registered reply URL served by the test (http://127.0.0.1:N/callback)
  M365EMU_STATE           the state value to send and expect back
  M365EMU_USERNAME        the admin's UPN
  M365EMU_PASSWORD        the admin's password
  M365EMU_APP_NAME        the display name the consent page must show
  M365EMU_PERMISSIONS     comma-separated permission names the consent page must list
  M365EMU_SCREENSHOT      where to save a PNG of the consent page
  M365EMU_CHROMIUM        the browser binary (/usr/bin/chromium)
  M365EMU_CHROMEDRIVER    its driver (/usr/bin/chromedriver)

Prints JSON lines: {"versions": …}, {"step": …} progress, and finally
{"callback": <URL>, "query": {…}, "permissions": [...], "app_name": …, "screenshot": <path>}.
Exit status 1, with the reason (current URL, page text, chromedriver log tail) on stderr, on
any failure.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import urllib.parse

import selenium
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from common import env, print_versions

PAGE_TIMEOUT = 30
WAIT = 20


class Failed(Exception):
    pass


def step(name: str, **details) -> None:
    print(json.dumps({"step": name, **details}), flush=True)


def page_text(driver) -> str:
    try:
        return driver.find_element(By.TAG_NAME, "body").text[:2000]
    except WebDriverException:
        return "(no page)"


def wait_for(driver, condition, what: str):
    try:
        return WebDriverWait(driver, WAIT).until(condition)
    except TimeoutException:
        raise Failed(
            f"timed out after {WAIT}s waiting for {what}; the browser is at {driver.current_url}\n"
            f"--- page text ---\n{page_text(driver)}"
        ) from None


def new_driver(chromium: str, chromedriver: str, profile: str, driver_log: str):
    options = Options()
    # Debian's binary, not one Selenium Manager would fetch.
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root in a container: no user namespaces for the sandbox
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,1400",  # tall enough for the whole consent page
    ):
        options.add_argument(flag)
    # An explicit driver path: DriverFinder then skips Selenium Manager entirely.
    service = Service(executable_path=chromedriver, log_output=driver_log)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    return driver


def run(driver, out: dict) -> None:
    http_url = env("M365EMU_HTTP_URL").rstrip("/")
    client_id = env("M365EMU_CLIENT_ID")
    resource = env("M365EMU_RESOURCE")
    redirect_uri = env("M365EMU_REDIRECT_URI")
    state = env("M365EMU_STATE")
    username = env("M365EMU_USERNAME")
    password = env("M365EMU_PASSWORD")
    app_name = env("M365EMU_APP_NAME")
    wanted = [p for p in env("M365EMU_PERMISSIONS").split(",") if p]
    screenshot = env("M365EMU_SCREENSHOT")

    query = urllib.parse.urlencode({
        "response_type": "code",
        "resource": resource,
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "prompt": "admin_consent",
        "state": state,
    })
    authorize = f"{http_url}/common/oauth2/authorize?{query}"
    step("open_authorize", url=authorize)
    driver.get(authorize)

    user_box = wait_for(driver, EC.element_to_be_clickable((By.ID, "username")), "the sign-in page (#username)")
    step("sign_in_page", title=driver.title)
    user_box.clear()
    user_box.send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "idSIButton9").click()

    name_el = wait_for(driver, EC.visibility_of_element_located((By.ID, "app-name")), "the consent page (#app-name)")
    shown_name = name_el.text.strip()
    out["app_name"] = shown_name
    if shown_name != app_name:
        raise Failed(f"#app-name shows {shown_name!r}, want {app_name!r}\n--- page text ---\n{page_text(driver)}")
    items = driver.find_elements(By.CSS_SELECTOR, "#permissions li")
    listed = []
    for li in items:
        strong = li.find_elements(By.TAG_NAME, "strong")
        listed.append((strong[0].text if strong else li.text).strip())
    out["permissions"] = listed
    missing = [p for p in wanted if p not in listed]
    if missing:
        raise Failed(f"#permissions lacks {missing}; it lists {listed}\n--- page text ---\n{page_text(driver)}")
    step("consent_page", app_name=shown_name, permissions=listed)

    os.makedirs(os.path.dirname(os.path.abspath(screenshot)), exist_ok=True)
    if not driver.save_screenshot(screenshot):
        raise Failed(f"the screenshot could not be written to {screenshot}")
    out["screenshot"] = screenshot
    step("screenshot", path=screenshot, bytes=os.path.getsize(screenshot))

    driver.find_element(By.ID, "accept").click()
    wait_for(driver, lambda d: d.current_url.startswith(redirect_uri), f"the redirect to {redirect_uri}")
    landed = driver.current_url
    parsed = urllib.parse.urlsplit(landed)
    out["callback"] = landed
    out["query"] = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
    if parsed.fragment:
        out["fragment"] = parsed.fragment
    step("callback", url=landed, page=page_text(driver)[:200])


def main() -> int:
    chromium = env("M365EMU_CHROMIUM")
    chromedriver = env("M365EMU_CHROMEDRIVER")
    for path in (chromium, chromedriver):
        if not os.access(path, os.X_OK):
            print(f"browser_consent.py: {path} is missing or not executable "
                  "(scripts/test.sh installs chromium and chromium-driver)", file=sys.stderr)
            return 1
    print_versions({"selenium": selenium})

    profile = tempfile.mkdtemp(prefix="m365emu-chromium-")
    driver_log = os.path.join(profile, "chromedriver.log")
    out: dict = {}
    driver = None
    failure = None
    started = time.monotonic()
    try:
        driver = new_driver(chromium, chromedriver, profile + "/profile", driver_log)
        caps = driver.capabilities
        step("browser", browser=caps.get("browserVersion"),
             chromedriver=(caps.get("chrome") or {}).get("chromedriverVersion", "").split(" ")[0])
        run(driver, out)
    except Failed as e:
        failure = str(e)
    except Exception as e:  # Selenium or the browser raised: report it as the failure
        failure = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
        if driver is not None:
            failure += f"\nthe browser is at {driver.current_url}\n--- page text ---\n{page_text(driver)}"
    finally:
        if driver is not None:
            try:
                driver.quit()
            except Exception:
                pass
        if failure is not None:
            try:
                with open(driver_log, encoding="utf-8", errors="replace") as f:
                    tail = f.read()[-4000:]
                failure += f"\n--- chromedriver log (tail) ---\n{tail}"
            except OSError:
                pass
        shutil.rmtree(profile, ignore_errors=True)

    out["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(out), flush=True)
    if failure is not None:
        print(f"browser_consent.py: FAILED\n{failure}", file=sys.stderr)
        return 1
    print("browser_consent.py: consent granted in the browser", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
