"""The web page in a real browser: Playwright drives Debian's Chromium (``/usr/bin/chromium``;
``make setup`` installs it) against a real ``livewatch run`` on a folder an encoder writes into,
with a model whose labels are markup (``<img src=x onerror=alert(1)>``): the overview lists the
stream, a new detection shows up within 2 s of being stored without a reload, the timeline shows
bands in time order, the label is shown as text and runs nothing, axe-core finds no serious or
critical accessibility violation on any view, no view is wider than a phone (390 px), and the
page comes back by itself after the daemon restarts. ``LIVEWATCH_SCREENSHOTS=docs`` keeps its
screenshots there. A second test opens `livewatch ui --dynamodb` over what the dynamodb sink
wrote to moto (over HTTP): the same page, the same checks. A third clicks an event of a local
store in `livewatch ui`: the timeline marks where it starts and its first segment plays from there."""
import asyncio
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest

from livewatch.contract import Detection, Label, WindowResult
from livewatch.sinks.dynamodb import DynamoDBOptions, DynamoDBSink
from livewatch.sinks.local import LocalStore
from livewatch.testing.aws import free_port
from livewatch.testing.daemon_process import LIVEWATCH, RunningDaemon, store_rows, wait_for
from livewatch.testing.media import HlsWriter

from test_dynamodb_sink import make_table
from test_ui_api import detection

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def browser():
    assert Path(CHROMIUM).exists(), (f"{CHROMIUM} is missing: `apt-get install -y chromium` "
                                     "(make setup installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def xss_model(tiny_i3d_dir: Path, directory: Path) -> Path:
    """The tiny model with every label markup: whichever it picks is an attack."""
    shutil.copytree(tiny_i3d_dir, directory)
    classes = (directory / "classes.txt").read_text().split()
    labels = [XSS] + [f"<b onmouseover=alert({n})>{n}</b>" for n in range(1, len(classes))]
    (directory / "classes.txt").write_text("\n".join(labels) + "\n")
    return directory


def serious_violations(page) -> list[str]:
    """axe-core's serious and critical accessibility violations on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def open_overview(browser, port: int, stream: str):
    """The overview in a laptop-sized page, once `stream`'s card is on it; every dialog the page
    opens (an injected script's alert would) is recorded and dismissed."""
    page = browser.new_page(viewport={"width": 1100, "height": 700})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"http://127.0.0.1:{port}/")
    card = page.locator(f'li.card[data-stream="{stream}"]')
    card.wait_for(timeout=10_000)
    return page, dialogs, card


def test_the_page_shows_a_live_stream_as_text(tmp_path, tiny_i3d_dir, browser):
    live, db, port = tmp_path / "live", tmp_path / "detections.db", free_port()
    model = xss_model(tiny_i3d_dir, tmp_path / "xss-model")
    config = tmp_path / "livewatch.toml"
    config.write_text(f"""
[daemon]
health_listen = "127.0.0.1:{port}"

[classifier]
type = "i3d"
model = "{model}"
windows = 2

[[sources]]
type = "folder"
path = "{live}"
settle_seconds = 0.5
poll_interval = 0.5

[[sinks]]
type = "local"
path = "{db}"
""")
    cam = HlsWriter(live / "cam", name="cam", seconds=2.0, size=(320, 180))
    for _ in range(3):
        cam.write_segment()
    shots = Path(os.environ.get("LIVEWATCH_SCREENSHOTS") or tmp_path)
    daemon = RunningDaemon(tmp_path, config)
    try:
        wait_for(lambda: len(store_rows(db)) == 3, daemon)
        page, dialogs, card = open_overview(browser, port, "cam")
        page.get_by_text("live", exact=True).wait_for(timeout=10_000)
        assert "3 classified" in card.inner_text()

        page.evaluate("window.__noReload = true")
        cam.write_segment()
        wait_for(lambda: len(store_rows(db)) == 4, daemon, interval=0.05)
        stored = time.monotonic()
        page.wait_for_function(
            """() => document.querySelector('li.card[data-stream="cam"]').textContent
                     .includes('4 classified')""", timeout=2_000)
        assert time.monotonic() - stored < 2.0
        assert page.evaluate("window.__noReload") is True  # the same page, updated in place

        page.wait_for_function(  # the latest segment's thumbnail on its card
            """() => { const i = document.querySelector('li.card img.thumb');
                       return i && i.complete && i.naturalWidth > 0; }""", timeout=5_000)
        label = card.locator(".label").inner_text()
        assert label.startswith("<") and "alert(" in label  # the markup, as characters
        page.screenshot(path=str(shots / "ui-overview.png"))
        assert serious_violations(page) == []

        card.get_by_role("link", name="cam").click()
        bands = page.locator("#timeline .band")
        bands.first.wait_for(timeout=10_000)
        assert bands.count() == 8  # 4 segments x 2 windows, at window resolution
        starts = [bands.nth(i).get_attribute("data-from") for i in range(bands.count())]
        assert starts == sorted(starts)
        lefts = [float(bands.nth(i).evaluate("b => parseFloat(b.style.left)")) for i in range(8)]
        assert lefts == sorted(lefts) and lefts[0] < lefts[-1]
        colours = {bands.nth(i).get_attribute("data-label"): bands.nth(i).evaluate(
            "b => getComputedStyle(b).backgroundColor") for i in range(8)}
        assert all(c.startswith("rgb(") for c in colours.values())
        assert len(set(colours.values())) == len(colours)  # one colour per label
        page.select_option("#zoom", "600")
        bands.last.click()
        page.locator("#details-list").get_by_text("seg").first.wait_for(timeout=5_000)
        assert str(live / "cam") in page.locator("#details-list").inner_text()
        thumb = page.locator("#details-thumbs img.thumb")
        thumb.wait_for(timeout=5_000)  # the window's middle frame, from the store
        page.wait_for_function("() => document.querySelector('#details-thumbs img').naturalWidth > 0",
                               timeout=5_000)
        page.wait_for_function(  # the segment itself, remuxed to MP4, playable in the page
            """() => { const v = document.querySelector('#details-thumbs video');
                       return v && v.readyState >= 1 && v.duration > 1.5; }""", timeout=10_000)
        page.screenshot(path=str(shots / "ui-timeline.png"), full_page=True)
        assert serious_violations(page) == []
        page.get_by_role("link", name="Errors").click()
        page.locator("#no-errors").wait_for(timeout=5_000)  # none in this run: it says so
        assert serious_violations(page) == []
        page.go_back()  # to the stream's timeline, the same page (no reload)
        bands.first.wait_for(timeout=10_000)
        page.set_viewport_size({"width": 390, "height": 800})  # a phone: nothing wider than it
        for view, section in (("#/stream/cam", "#stream"), ("#/", "#overview"), ("#/errors", "#errors")):
            page.evaluate(f"location.hash = '{view}'")
            page.locator(section).wait_for(state="visible", timeout=5_000)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, view
        page.go_back()  # to the overview, then the stream's timeline
        page.go_back()
        page.set_viewport_size({"width": 1100, "height": 700})
        bands.first.wait_for(timeout=10_000)

        # markup in labels stayed text: no element was made of it, and nothing ran
        assert page.locator("img:not(.thumb)").count() == 0 and page.locator("#main b").count() == 0
        assert all(src.startswith("api/thumbnail?") for src in page.eval_on_selector_all(
            "img", "imgs => imgs.map(i => i.getAttribute('src'))"))
        assert XSS in page.content().replace("&lt;", "<").replace("&gt;", ">")
        assert dialogs == []

        # the daemon restarts: the page says so, then picks up where it was by itself
        assert daemon.stop() == 0
        page.get_by_text("reconnecting…").wait_for(timeout=10_000)
        daemon = RunningDaemon(tmp_path, config)
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/livez"), daemon)
        page.get_by_text("live", exact=True).wait_for(timeout=15_000)
        cam.write_segment()
        wait_for(lambda: len(store_rows(db)) == 5, daemon, interval=0.05)
        page.wait_for_function("() => document.querySelectorAll('#timeline .band').length === 10",
                               timeout=5_000)
        assert page.evaluate("window.__noReload") is True
        assert dialogs == []
    finally:
        if daemon.proc.poll() is None:
            daemon.stop()


async def write_items(table: str) -> None:
    sink = DynamoDBSink(DynamoDBOptions(table=table))
    await sink.start()
    try:
        for n in range(3):
            await sink.write(detection(n, label=XSS))
        await sink.write(detection(3, error="cannot decode: no video stream"))
    finally:
        await sink.close()


def test_the_page_over_the_results_table(tmp_path, aws_env, moto_server, browser):
    """``livewatch ui --dynamodb`` shows what the dynamodb sink wrote, as the daemon's page does."""
    table = make_table(boto3.client("dynamodb", endpoint_url=moto_server.endpoint_url))
    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API holds this thread's loop
        thread.submit(asyncio.run, write_items(table)).result()
    port = free_port()
    proc = subprocess.Popen([LIVEWATCH, "ui", "--dynamodb", table, "--listen", f"127.0.0.1:{port}"],
                            cwd=tmp_path, env={**os.environ, **aws_env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not answers(f"http://127.0.0.1:{port}/ui/"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.1)
        page, dialogs, card = open_overview(browser, port, "cam")
        assert "3 classified, 1 errors" in card.inner_text() and "error" in card.get_attribute("class")
        card.get_by_role("link", name="cam").click()
        bands = page.locator("#timeline .band")
        page.wait_for_function("() => document.querySelectorAll('#timeline .band').length === 7")
        starts = [bands.nth(i).get_attribute("data-from") for i in range(7)]
        assert starts == sorted(starts)  # 3 segments x 2 windows, then the error segment
        assert "error" in bands.nth(6).get_attribute("class")
        page.get_by_role("link", name="Errors").click()
        page.locator("#error-list").get_by_text("cannot decode: no video stream").wait_for(timeout=5_000)
        assert page.locator("img:not(.thumb)").count() == 0 and dialogs == []
        assert serious_violations(page) == []
    finally:
        proc.terminate()
        proc.wait(30)


def serve_ui(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, int]:
    """`livewatch ui ARGS` on a free loopback port, once it answers."""
    port = free_port()
    proc = subprocess.Popen([LIVEWATCH, "ui", *args, "--listen", f"127.0.0.1:{port}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not answers(f"http://127.0.0.1:{port}/ui/"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.1)
    return proc, port


def test_clicking_an_event_moves_the_timeline_and_the_player_to_its_start(tmp_path, browser):
    """An event that begins half-way into a segment, five seconds before the page's 10-minute span
    (it is listed because it lasts into it): clicking it widens the span to show its start, marks
    the window band where it starts, and plays its first segment from that second on."""
    live, db = tmp_path / "live", tmp_path / "detections.db"
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=605 + 3)  # walk: now - 605 s
    cam = HlsWriter(live / "cam", name="cam", seconds=2.0, size=(320, 180), start_time=t0)
    played = [cam.write_segment(), cam.write_segment()]  # the rest are stored detections only
    labels = [("run", "run"), ("run", "walk")] + [("walk", "walk")] * 98  # walk: t0+3 s to t0+200 s
    store = LocalStore(db)
    for n, pair in enumerate(labels):
        uri = str(played[n]) if n < len(played) else str(live / "cam" / f"cam{n:05d}.ts")
        store.write(Detection(
            uri=uri, stream="cam", sequence=n, start=t0 + timedelta(seconds=2 * n), duration=2,
            label=pair[0], probability=0.8, top_k=[Label(label=pair[0], probability=0.8)],
            windows=[WindowResult(start=i, end=i + 1, frames=[25 * i, 25 * i + 24], label=label,
                                  probability=0.8) for i, label in enumerate(pair)]))
    [walk] = [e for e in store.events(stream="cam") if e["label"] == "walk"]
    store.close()
    start = datetime.fromisoformat(walk["start"].replace("Z", "+00:00"))
    assert start == t0 + timedelta(seconds=3) and walk["segments"][0] == str(played[1])

    proc, port = serve_ui(tmp_path, "--store", str(db), "--media", str(live))
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 700})
        page.goto(f"http://127.0.0.1:{port}/#/stream/cam")
        page.locator("#timeline .band").first.wait_for(timeout=10_000)
        page.select_option("#zoom", "600")
        event = page.locator("#events button")
        page.wait_for_function(  # only walk lasts into the last 10 minutes; its start is before them
            """() => { const b = document.querySelectorAll('#events button');
                       return b.length === 1 && b[0].textContent.includes('walk'); }""", timeout=10_000)
        assert page.locator("#timeline .band.selected").count() == 0

        event.click()
        marked = page.locator('#timeline .band[aria-current="true"]')
        marked.wait_for(timeout=10_000)
        assert page.input_value("#zoom") == "1800"  # widened to the shortest span showing the start
        assert marked.count() == 1 and page.locator("#timeline .band.selected").count() == 1
        assert marked.get_attribute("data-label") == "walk"
        assert datetime.fromisoformat(marked.get_attribute("data-from").replace("Z", "+00:00")) == start
        details = page.locator("#details-list").inner_text()
        assert walk["id"] in details and "walk" in details
        video = page.locator("#details-thumbs video")
        video.wait_for(timeout=5_000)
        assert "uri=" + urllib.parse.quote_plus(str(played[1])) in video.get_attribute("src")
        page.wait_for_function(  # seeked to 1 s into the segment, then played: nothing before it
            """() => { const v = document.querySelector('#details-thumbs video');
                       return v && v.readyState >= 1 && v.played.length > 0; }""", timeout=10_000)
        played_ranges = page.evaluate("""() => { const p = document.querySelector('#details-thumbs video').played;
                                            return [...Array(p.length).keys()].map(i => [p.start(i), p.end(i)]); }""")
        assert played_ranges and all(0.95 <= begin <= 1.05 for begin, _ in played_ranges), played_ranges
        assert serious_violations(page) == []

        # a band clicked afterwards is the selection instead
        other = page.locator("#timeline .band:not(.selected)").last
        other_from = other.get_attribute("data-from")
        other.click()
        page.wait_for_function("""(from) => { const s = document.querySelectorAll('#timeline .band.selected');
                                              return s.length === 1 && s[0].dataset.from === from; }""",
                               arg=other_from, timeout=5_000)
    finally:
        proc.terminate()
        proc.wait(30)
