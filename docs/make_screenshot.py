"""Screenshot of the live supervisor page for the docs: `docs/live-page.png`.

Start a dispatcher with its demo floor first, then point this at it:

    .venv/bin/dispatcher dev --http-port 6081 &          # wait for "dispatcher ready on ..."
    .venv/bin/python docs/make_screenshot.py --url http://127.0.0.1:6081

The page keeps its chart history in the browser, so the script keeps it open for `--seconds`
(default 20) before the shot. It drives Debian's chromium (`make system-packages` installs it)
through Playwright; it never downloads a browser.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DEFAULT_OUT = Path(__file__).resolve().parent / "live-page.png"


def page_url(base_url: str, token: str | None, wall: bool) -> str:
    query = {key: value for key, value in (("access_token", token), ("wall", "1" if wall else None)) if value}
    return base_url.rstrip("/") + "/" + (f"?{urlencode(query)}" if query else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:6066", help="the dispatcher (default %(default)s)")
    parser.add_argument("--token", help="an API token, passed to the page as ?access_token=")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the page collects samples first")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--wall", action="store_true", help="the page's wall-display mode (?wall=1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write (default %(default)s)")
    args = parser.parse_args(argv)

    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: install Debian's chromium (`make system-packages`).", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(page_url(args.url, args.token, args.wall))
            page.wait_for_selector("#conn[data-state=live]", timeout=30_000)
            page.wait_for_selector("#reps [data-rep]", timeout=30_000)
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                page.wait_for_timeout(1000)
            total = page.get_attribute("#assigned-total", "data-value")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
        finally:
            browser.close()
    print(f"wrote {args.out} ({total} assigned so far)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
